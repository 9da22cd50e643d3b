"""Node (eq. 1) and edge (eq. 2) encoders."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from cgc.config import CGCConfig


def per_unique(fn: Callable[[Tensor], Tensor], keys: Tensor, rows: Tensor | None = None) -> Tensor:
    """Compute a row-wise ``fn`` once per distinct key and gather it back to every row.

    ``fn(rows)[i]`` must depend on row ``i`` only (an MLP, a linear map): then
    ``per_unique(fn, keys, rows)`` equals ``fn(rows)`` up to floating-point rounding while
    doing the work once per distinct key. Gene ids repeat across the cells of a batch and a
    scalar edge or node attribute takes few distinct values, so this removes most of the
    encoders' matrix products.

    Parameters
    ----------
    fn
        Row-wise function of a ``[U, ...]`` tensor.
    keys
        ``[N]`` keys; rows with equal keys must have equal ``rows``.
    rows
        ``[N, ...]`` inputs of ``fn`` (default: ``keys`` itself).

    Returns
    -------
    torch.Tensor
        ``fn(rows)`` for every row, ``[N, ...]``.

    """
    first, inverse = distinct_rows(keys)
    return fn((keys if rows is None else rows).index_select(0, first)).index_select(0, inverse)


def distinct_rows(keys: Tensor) -> tuple[Tensor, Tensor]:
    """Index of the first row holding each distinct key, and each row's distinct key.

    Returns
    -------
    first : torch.Tensor
        ``[U]`` row of the first occurrence of every distinct key (keys in sorted order).
    inverse : torch.Tensor
        ``[N]`` position in ``first`` of every row's key: ``keys[first][inverse] == keys``.

    """
    uniq, inverse = torch.unique(keys, sorted=True, return_inverse=True)
    n = keys.numel()
    first = torch.full((uniq.numel(),), n, dtype=torch.long, device=keys.device)
    first.scatter_reduce_(0, inverse, torch.arange(n, device=keys.device), reduce="amin")
    return first, inverse


class MLP3(nn.Sequential):
    """Three-layer perceptron ``Linear → GELU → Linear → GELU → Linear``.

    Parameters
    ----------
    d_in, d_hidden, d_out
        Input, hidden and output widths.

    """

    def __init__(self, d_in: int, d_hidden: int, d_out: int) -> None:
        super().__init__(
            nn.Linear(d_in, d_hidden), nn.GELU(), nn.Linear(d_hidden, d_hidden), nn.GELU(),
            nn.Linear(d_hidden, d_out),
        )

    def reset_parameters(self) -> None:
        """Re-initialise all linear layers."""
        for m in self:
            if isinstance(m, nn.Linear):
                m.reset_parameters()


class NodeEncoder(nn.Module):
    r"""Node embedding of eq. 1.

    .. math::
        x_i = \mathrm{emb}_g(g_i) + \mathrm{mlp}_t(t_i) + \mathrm{mlp}_v(v_i)
              + \mathrm{emb}_s(s_i)

    Terms not listed in ``config.node_features`` are left out (ablations).

    **Deviation from the paper** (``config.node_norm=True``, the default): each term is
    layer-normalised before the sum, :math:`v_i` enters as ``bin / (n_bins - 1)`` in
    ``[0, 1]``, a masked value is replaced by a learned mask embedding instead of a
    sentinel number, and the sum is layer-normalised once more. Taken literally, eq. 1 adds
    an ``emb_g`` row (init std 0.02, norm ≈ 0.16 at ``d = 64``) to an MLP of the raw bin
    number (norm ≈ 37 at bin 50): the value term outweighs gene identity ~100:1, every
    cell's ``h_c`` had cosine ≈ 0.998 to every other, and annotation fell to the level of
    a classifier on the bin histogram alone (0.41 on pbmc68k_reduced). The official
    implementation normalises its encoders too (a LayerNorm after the token embedding and
    after the value encoder, a BatchNorm after the sum). ``node_norm=False`` keeps the
    literal eq. 1 for comparison.

    Parameters
    ----------
    config
        Model configuration.
    n_genes
        Vocabulary size (rows of ``emb_g``).
    text_dim
        Width of the gene text embeddings ``t_i``.

    """

    def __init__(self, config: CGCConfig, n_genes: int, text_dim: int) -> None:
        super().__init__()
        d = config.d_model
        feats = set(config.node_features)
        self.normalize = bool(config.node_norm)
        self.value_scale = 1.0 / (config.n_bins - 1) if self.normalize else 1.0
        # emb_g always exists: eq. 11 and gene_embeddings() read it.
        self.emb_g = nn.Embedding(n_genes, d)
        self.use_token = "token" in feats
        self.mlp_t = MLP3(text_dim, d, d) if "text" in feats else None
        self.mlp_v = MLP3(1, d, d) if "value" in feats else None
        self.emb_s = nn.Embedding(config.n_special, d) if "special" in feats else None

        def norm() -> nn.Module:
            return nn.LayerNorm(d) if self.normalize else nn.Identity()

        self.norm_g, self.norm_t, self.norm_v, self.norm_out = norm(), norm(), norm(), norm()
        self.mask_emb = nn.Parameter(torch.zeros(d)) if self.normalize else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Re-initialise embeddings (N(0, 0.02)), MLPs and norms."""
        nn.init.normal_(self.emb_g.weight, std=0.02)
        if self.emb_s is not None:
            nn.init.normal_(self.emb_s.weight, std=0.02)
        if self.mask_emb is not None:
            nn.init.normal_(self.mask_emb, std=0.02)
        for m in (self.mlp_t, self.mlp_v, self.norm_g, self.norm_t, self.norm_v, self.norm_out):
            if m is not None and hasattr(m, "reset_parameters"):
                m.reset_parameters()

    def terms(self, gene: Tensor, value: Tensor, special: Tensor, text: Tensor | None,
              mask: Tensor | None = None) -> dict[str, Tensor]:
        """Return the (normalised) terms of eq. 1 by name, each ``[N, d]``.

        Parameters
        ----------
        gene, value, special
            Token ids, values (bin numbers) and special tokens of the nodes.
        text
            Text embeddings of the nodes' genes, or ``None``.
        mask
            ``[N]`` bool, nodes whose value is hidden (masked pre-training).

        """
        out: dict[str, Tensor] = {}
        if self.use_token:
            out["token"] = self.norm_g(self.emb_g(gene))
        if self.mlp_t is not None and text is not None:  # a gene's text row is the same in every cell
            out["text"] = self.norm_t(per_unique(self.mlp_t, gene, text))
        if self.mlp_v is not None:
            dtype = self.emb_g.weight.dtype
            v = per_unique(lambda u: self.mlp_v((u * self.value_scale).unsqueeze(-1).to(dtype)), value)
            if self.mask_emb is not None and mask is not None:
                v = torch.where(mask.unsqueeze(-1), self.mask_emb.to(v.dtype), v)
            out["value"] = self.norm_v(v)
        if self.emb_s is not None:
            out["special"] = self.emb_s(special)
        return out

    def forward(self, gene: Tensor, value: Tensor, special: Tensor, text: Tensor | None,
                mask: Tensor | None = None) -> Tensor:
        """Return node embeddings ``[N, d]`` from token ids, values, specials and texts."""
        x = torch.zeros(gene.shape[0], self.emb_g.embedding_dim, device=gene.device,
                        dtype=self.emb_g.weight.dtype)
        for t in self.terms(gene, value, special, text, mask).values():
            x = x + t
        return self.norm_out(x)


class EdgeEncoder(nn.Module):
    r"""Edge embedding of eq. 2, plus a learned embedding of the cell-node edges.

    .. math::
        e_{ij} = \mathrm{emb}_{tftg}(tftg_{ij}) + \mathrm{mlp}_{corr}(corr_{ij})
                 + \mathrm{emb}_{pos}(pos_{ij}) + \mathrm{emb}_{kind}(kind_{ij})

    ``kind`` distinguishes gene–gene, gene→cell and cell→gene edges: the learned weights
    of the cell node's connections. Terms of edge types not in ``config.edge_types`` are
    left out.

    Parameters
    ----------
    config
        Model configuration.

    """

    def __init__(self, config: CGCConfig) -> None:
        super().__init__()
        d = config.d_model
        types = set(config.edge_types)
        self.emb_tftg = nn.Embedding(2, d) if "tftg" in types else None
        self.mlp_corr = MLP3(1, d, d) if "coexpr" in types else None
        self.emb_pos = nn.Embedding(2 * config.pos_window + 1, d) if "pos" in types else None
        self.emb_kind = nn.Embedding(3, d)
        self.pos_window = config.pos_window
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Re-initialise embeddings (N(0, 0.02)) and the MLP."""
        for e in (self.emb_tftg, self.emb_pos, self.emb_kind):
            if e is not None:
                nn.init.normal_(e.weight, std=0.02)
        if self.mlp_corr is not None:
            self.mlp_corr.reset_parameters()

    def factored(self, tftg: Tensor, corr: Tensor, pos: Tensor, kind: Tensor
                 ) -> tuple[Tensor, Tensor]:
        """Return edge embeddings as a table of distinct rows and each edge's row.

        Edges with the same ``(kind, tftg, corr, pos)`` have the same embedding, and a batch
        has few distinct combinations (position edges dominate and carry ``corr = 0``), so
        eq. 2 is evaluated once per combination: ``forward(...) == table[index]``. The first
        GNN layer projects the table, not every edge (:class:`cgc.nn.gnn_conv.CGCConv`).

        Returns
        -------
        table : torch.Tensor
            ``[U, d]`` distinct edge embeddings.
        index : torch.Tensor
            ``[E]`` row of ``table`` of every edge.

        """
        _, corr_code = torch.unique(corr, sorted=True, return_inverse=True)
        n_pos = 2 * self.pos_window + 1
        key = ((corr_code * 3 + kind.long()) * 2 + tftg.long()) * n_pos + pos.long()
        first, index = distinct_rows(key)
        return self._encode(tftg[first], corr[first], pos[first], kind[first]), index

    def _encode(self, tftg: Tensor, corr: Tensor, pos: Tensor, kind: Tensor) -> Tensor:
        e = self.emb_kind(kind)
        if self.emb_tftg is not None:
            e = e + self.emb_tftg(tftg)
        if self.mlp_corr is not None:
            e = e + self.mlp_corr(corr.unsqueeze(-1).to(e.dtype))
        if self.emb_pos is not None:
            e = e + self.emb_pos(pos)
        return e

    def forward(self, tftg: Tensor, corr: Tensor, pos: Tensor, kind: Tensor) -> Tensor:
        """Return edge embeddings ``[E, d]``."""
        table, index = self.factored(tftg, corr, pos, kind)
        return table.index_select(0, index)
