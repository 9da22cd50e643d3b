"""Architecture profile ``official``: the released CGCompass network, forward as published.

The official code (epang-ucas/Cell-Graph-Compass, ``src/models/gene_model.py`` and
``src/models/gene_gnn.py``) differs from :class:`cgc.model.CGCModel` in ways that change
every number, so released weights run through this module, not through ``CGCModel``:

* **node encoder** — ``LayerNorm(emb(token)) + LayerNorm(lin2(relu(lin1(min(v, 512)))))``
  (+ ``relu(lin(text))``, the summary-embedding encoder, no norm), then a **BatchNorm1d**
  (``eps=6.1e-5``, running statistics in eval) over the sum; values are the raw bin numbers;
* **edge encoder** — ``LayerNorm(emb_tftg) + LayerNorm(lin2(relu(lin1(corr))))
  + LayerNorm(emb_pos)`` where the position table has ``2·max_dis + 2 = 102`` rows and is
  indexed by the float attribute truncated to ``int``; there is no edge-kind embedding;
* **graph layer** (``GeneConvLayer``) — the edge is updated *first*,
  ``e' = LN(e + mlp_e([x_src ‖ e ‖ x_dst]))``, then the message uses the *updated* edge in
  the order ``[x_j ‖ e' ‖ x_i]`` (source, edge, target), mean over incoming edges (0 without),
  ``x' = LN(x + mean)``; MLPs are ``Linear``/``ReLU`` stacks of ``n_message`` /
  ``n_edge_layers`` layers (release: 1 each), no feed-forward;
* **Transformer** — post-norm blocks ``LN(x + attn(x))``, ``LN(x + lin2(relu(lin1(x))))``,
  attention weights packed as FlashMHA's ``Wqkv`` (``[q; k; v]`` rows, heads contiguous);
* **cell embedding** — the output at position 0 (``<cls>``);
* **dropout** (training only; the official ``ScModel`` default 0.2) where the official modules
  put it: after the value encoder, after the correlation branch of the edge encoder, on the
  edge and node updates of every graph layer, on the attention probabilities (FlashMHA
  ``attention_dropout``), after attention, inside and after the feed-forward. In eval mode
  (embeddings, predictions) the forward is the one above.

Inputs are padded ``[B, L]`` tensors as the official collater builds them; ``edge_index``
addresses the flattened ``B·L`` nodes (cell ``b``'s node ``i`` is ``b·L + i``).
Parameter names follow the cgcbench style; :mod:`cgc.official_weights` maps every official
name onto them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

BN_EPS = 6.1e-5
VALUE_MAX = 512.0


@dataclass(frozen=True)
class OfficialConfig:
    """Sizes and switches of an official GeneModel (read from the weights' shapes).

    Attributes mirror the official constructor arguments: ``ntoken``, ``d_model``,
    ``nhead``, ``d_hid``, ``nlayers``, ``use_gnn``, ``nlayers_gnn``, ``n_message``,
    ``n_edge_layers``, ``n_feedforward``, ``gnn_layernorm``, ``max_dis``, ``use_embed``,
    ``text_dim``, ``fast_transformer`` (``Wqkv`` names), ``n_domains`` (domain-specific
    batch norm; 0 = one ``BatchNorm1d``), ``n_batch_labels`` (batch encoder; 0 = none) and
    the decoders present (``expr_decoder``, ``expr_zero``, ``mvc_decoder``, ``mvc_zero``,
    ``n_cls``, ``nlayers_cls``, ``n_dab``, ``nlayers_dab``, ``batch_in_decoder``);
    ``dropout`` is the training-time rate of every dropout layer (official default 0.2; it is
    not stored in the weights).
    """

    ntoken: int
    d_model: int
    nhead: int
    d_hid: int
    nlayers: int
    use_gnn: bool = True
    nlayers_gnn: int = 3
    n_message: int = 1
    n_edge_layers: int = 1
    n_feedforward: int = 0
    gnn_layernorm: bool = True
    max_dis: int = 50
    use_embed: bool = True
    text_dim: int = 768
    fast_transformer: bool = True
    n_domains: int = 0
    n_batch_labels: int = 0
    expr_decoder: bool = False
    expr_zero: bool = False
    mvc_decoder: bool = False
    mvc_zero: bool = False
    n_cls: int = 0
    nlayers_cls: int = 3
    n_dab: int = 0
    nlayers_dab: int = 3
    batch_in_decoder: bool = False
    dropout: float = 0.2

    def to_dict(self) -> dict[str, int | bool]:
        """Plain dict (for records)."""
        return asdict(self)


def _relu_stack(n_layers: int, d_in: int, d_out: int) -> nn.Sequential:
    """``Linear(d_in, d_out)`` then ``(ReLU, Linear(d_out, d_out))`` × (n_layers - 1)."""
    layers: list[nn.Module] = [nn.Linear(d_in, d_out)]
    for _ in range(n_layers - 1):
        layers += [nn.ReLU(), nn.Linear(d_out, d_out)]
    return nn.Sequential(*layers) if n_layers > 0 else nn.Sequential()


class OfficialNodeEncoder(nn.Module):
    """Token, value and summary-embedding encoders plus the batch norm over their sum."""

    def __init__(self, c: OfficialConfig) -> None:
        super().__init__()
        d = c.d_model
        self.emb_g = nn.Embedding(c.ntoken, d)
        self.norm_g = nn.LayerNorm(d)
        self.value_lin1 = nn.Linear(1, d)
        self.value_lin2 = nn.Linear(d, d)
        self.norm_v = nn.LayerNorm(d)
        self.drop_v = nn.Dropout(c.dropout)
        self.text_lin = nn.Linear(c.text_dim, d) if c.use_embed else None
        self.bn = nn.BatchNorm1d(d, eps=BN_EPS) if c.n_domains == 0 else None
        self.dsbn = (
            nn.ModuleList(nn.BatchNorm1d(d, eps=BN_EPS) for _ in range(c.n_domains)) if c.n_domains else None
        )

    def token(self, gene: Tensor) -> Tensor:
        """``LayerNorm(emb(gene))`` — the official ``gene_encoder`` output."""
        return self.norm_g(self.emb_g(gene))

    def forward(self, gene: Tensor, value: Tensor, text: Tensor | None, domain: int | None = None) -> Tensor:
        """Return ``BN(token + value + text)`` of shape ``[B, L, d]``."""
        v = value.unsqueeze(-1).clamp(max=VALUE_MAX).to(self.value_lin1.weight.dtype)
        x = self.token(gene) + self.drop_v(self.norm_v(self.value_lin2(F.relu(self.value_lin1(v)))))
        if self.text_lin is not None:
            if text is None:
                raise ValueError("this official model has a summary-embedding encoder: pass text")
            x = x + F.relu(self.text_lin(text.to(x.dtype)))
        if self.dsbn is not None:
            if domain is None:
                raise ValueError("this official model uses domain-specific batch norm: pass domain")
            bn = self.dsbn[domain]
        else:
            assert self.bn is not None
            bn = self.bn
        return bn(x.transpose(1, 2)).transpose(1, 2)


class OfficialEdgeEncoder(nn.Module):
    """``LN(emb_tftg) + LN(mlp_corr) + LN(emb_pos)`` of the three official edge attributes."""

    def __init__(self, c: OfficialConfig) -> None:
        super().__init__()
        d = c.d_model
        self.emb_tftg = nn.Embedding(2, d)
        self.norm_tftg = nn.LayerNorm(d)
        self.corr_lin1 = nn.Linear(1, d)
        self.corr_lin2 = nn.Linear(d, d)
        self.norm_corr = nn.LayerNorm(d)
        self.drop_corr = nn.Dropout(c.dropout)
        self.emb_pos = nn.Embedding(2 * c.max_dis + 2, d)
        self.norm_pos = nn.LayerNorm(d)

    def forward(self, edge_attr: Tensor) -> Tensor:
        """``edge_attr``: ``[3, E]`` rows (TF–target flag, correlation, position index)."""
        tftg = self.norm_tftg(self.emb_tftg(edge_attr[0].to(torch.int)))
        corr = self.drop_corr(
            self.norm_corr(self.corr_lin2(F.relu(self.corr_lin1(edge_attr[1].unsqueeze(-1)))))
        )
        pos = self.norm_pos(self.emb_pos(edge_attr[2].to(torch.int)))
        return tftg + corr + pos


class OfficialGraphLayer(nn.Module):
    """One ``GeneConvLayer``: edge update first, then mean messages ``[x_j ‖ e' ‖ x_i]``."""

    def __init__(self, c: OfficialConfig) -> None:
        super().__init__()
        d = c.d_model
        self.msg = _relu_stack(c.n_message, 3 * d, d)
        self.edge_msg = _relu_stack(c.n_edge_layers, 3 * d, d)
        self.node_norm = nn.LayerNorm(d) if c.gnn_layernorm else nn.Identity()
        self.ff_norm = nn.LayerNorm(d) if c.gnn_layernorm else nn.Identity()
        self.edge_norm = nn.LayerNorm(d) if c.gnn_layernorm else nn.Identity()
        self.drop_edge = nn.Dropout(c.dropout)
        self.drop_node = nn.Dropout(c.dropout)
        self.drop_ff = nn.Dropout(c.dropout)
        hid = 4 * d
        ff: list[nn.Module] = []
        if c.n_feedforward == 1:
            ff = [nn.Linear(d, d)]
        elif c.n_feedforward > 1:
            ff = [nn.Linear(d, hid), nn.ReLU()]
            for _ in range(c.n_feedforward - 2):
                ff += [nn.Linear(hid, hid), nn.ReLU()]
            ff.append(nn.Linear(hid, d))
        self.ff = nn.Sequential(*ff)

    def forward(self, x: Tensor, edge_index: Tensor, e: Tensor) -> tuple[Tensor, Tensor]:
        """Return updated node ``[N, d]`` and edge ``[E, d]`` states."""
        src, dst = edge_index
        if len(self.edge_msg):
            e = self.edge_norm(e + self.drop_edge(self.edge_msg(torch.cat([x[src], e, x[dst]], dim=-1))))
        m = self.msg(torch.cat([x[src], e, x[dst]], dim=-1))  # PyG: x_j = source, x_i = target
        agg = torch.zeros_like(x).index_add_(0, dst, m)
        cnt = torch.zeros(x.shape[0], 1, dtype=x.dtype, device=x.device).index_add_(
            0, dst, torch.ones_like(m[:, :1])
        )
        x = self.node_norm(x + self.drop_node(agg / cnt.clamp(min=1)))
        if len(self.ff):
            x = self.ff_norm(x + self.drop_ff(self.ff(x)))
        return x, e


class OfficialBlock(nn.Module):
    """Post-norm Transformer block with FlashMHA-packed ``qkv`` weights."""

    def __init__(self, c: OfficialConfig) -> None:
        super().__init__()
        d = c.d_model
        self.nhead = c.nhead
        self.qkv = nn.Linear(d, 3 * d)
        self.out = nn.Linear(d, d)
        self.ff1 = nn.Linear(d, c.d_hid)
        self.ff2 = nn.Linear(c.d_hid, d)
        self.norm1 = nn.LayerNorm(d)
        self.norm2 = nn.LayerNorm(d)
        self.p = c.dropout
        self.drop_attn = nn.Dropout(c.dropout)
        self.drop_hid = nn.Dropout(c.dropout)
        self.drop_ff = nn.Dropout(c.dropout)

    def attention(self, x: Tensor, pad: Tensor | None) -> Tensor:
        """Multi-head self-attention; ``pad`` ``[B, L]`` is ``True`` at padding keys."""
        b, n, d = x.shape
        h = self.nhead
        q, k, v = self.qkv(x).view(b, n, 3, h, d // h).permute(2, 0, 3, 1, 4)
        mask = None if pad is None or not bool(pad.any()) else ~pad[:, None, None, :]
        p = self.p if self.training else 0.0
        o = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p)
        return self.out(o.transpose(1, 2).reshape(b, n, d))

    def forward(self, x: Tensor, pad: Tensor | None) -> Tensor:
        """``LN(x + attn)`` then ``LN(x + ff)``."""
        x = self.norm1(x + self.drop_attn(self.attention(x, pad)))
        return self.norm2(x + self.drop_ff(self.ff2(self.drop_hid(F.relu(self.ff1(x))))))


class _Mlp(nn.Module):
    """Official ``ClsDecoder`` / ``AdversarialDiscriminator`` layout (Linear, act, LayerNorm)×(n-1)."""

    def __init__(self, d: int, n_out: int, n_layers: int, act: type[nn.Module]) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for _ in range(n_layers - 1):
            layers += [nn.Linear(d, d), act(), nn.LayerNorm(d)]
        self.layers = nn.ModuleList(layers)
        self.out = nn.Linear(d, n_out)

    def forward(self, x: Tensor) -> Tensor:
        for layer in self.layers:
            x = layer(x)
        return self.out(x)


def official_cls_decoder(d_model: int, n_cls: int, nlayers: int = 3) -> nn.Module:
    """The official ``ClsDecoder`` (``nlayers_cls`` 3): ``(Linear, ReLU, LayerNorm) × 2`` then ``Linear``.

    Parameters
    ----------
    d_model
        Width of the cell embedding (the ``<cls>`` output) it reads.
    n_cls
        Number of classes.
    nlayers
        Linear layers (official default 3).

    """
    return _Mlp(d_model, n_cls, nlayers, nn.ReLU)


class OfficialCGC(nn.Module):
    """The released CGCompass ``GeneModel`` (profile ``official``), inference forward.

    Parameters
    ----------
    config
        Sizes and switches (:func:`cgc.official_weights.config_from_state` reads them from a
        released state dict).

    """

    def __init__(self, config: OfficialConfig) -> None:
        super().__init__()
        c = config
        self.config = c
        d = c.d_model
        self.node = OfficialNodeEncoder(c)
        self.edge = OfficialEdgeEncoder(c) if c.use_gnn else None
        self.gnn = nn.ModuleList(OfficialGraphLayer(c) for _ in range(c.nlayers_gnn)) if c.use_gnn else None
        self.transformer = nn.ModuleList(OfficialBlock(c) for _ in range(c.nlayers))
        self.batch_emb = nn.Embedding(c.n_batch_labels, d) if c.n_batch_labels else None
        self.batch_norm = nn.LayerNorm(d) if c.n_batch_labels else None
        d_dec = 2 * d if c.batch_in_decoder else d

        def expr() -> nn.Sequential:
            return nn.Sequential(
                nn.Linear(d_dec, d), nn.LeakyReLU(), nn.Linear(d, d), nn.LeakyReLU(), nn.Linear(d, 1)
            )

        self.expr = expr() if c.expr_decoder else None
        self.expr_zero = expr() if c.expr_zero else None
        self.mvc_query = nn.Linear(d, d) if c.mvc_decoder else None
        self.mvc_W = nn.Linear(d, d_dec, bias=False) if c.mvc_decoder else None
        self.mvc_W_zero = nn.Linear(d, d_dec) if c.mvc_zero else None
        self.cls = _Mlp(d, c.n_cls, c.nlayers_cls, nn.ReLU) if c.n_cls else None
        self.dab = _Mlp(d, c.n_dab, c.nlayers_dab, nn.LeakyReLU) if c.n_dab else None

    def encode(
        self,
        gene: Tensor,
        value: Tensor,
        text: Tensor | None = None,
        pad: Tensor | None = None,
        edge_index: Tensor | None = None,
        edge_attr: Tensor | None = None,
        domain: int | None = None,
    ) -> Tensor:
        """Return the Transformer output ``[B, L, d]`` (official ``GeneModel._encode``).

        Parameters
        ----------
        gene, value
            ``[B, L]`` token ids and values (bin numbers; ``<cls>`` first).
        text
            ``[B, L, text_dim]`` gene summary embeddings (models with ``use_embed``).
        pad
            ``[B, L]`` bool, ``True`` at padding.
        edge_index, edge_attr
            ``[2, E]`` edges over the flattened ``B·L`` nodes and their ``[3, E]`` attributes.
        domain
            Batch label for domain-specific batch norm.

        """
        x = self.node(gene, value, text, domain)
        if self.gnn is not None:
            if edge_index is None or edge_attr is None:
                raise ValueError("this official model has a GNN encoder: pass edge_index and edge_attr")
            assert self.edge is not None
            e = self.edge(edge_attr.to(x.dtype))
            flat = x.flatten(0, 1)
            for layer in self.gnn:
                flat, e = layer(flat, edge_index, e)
            x = flat.view_as(x)
        for block in self.transformer:
            x = block(x, pad)
        return x

    def forward(self, gene: Tensor, value: Tensor, **kwargs: object) -> Tensor:
        """Cell embeddings ``[B, d]``: the ``<cls>`` (position 0) output."""
        return self.encode(gene, value, **kwargs)[:, 0, :]  # type: ignore[arg-type]
