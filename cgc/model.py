"""The Cell-Graph Compass network (SPEC §3)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.data import Batch

from cgc.config import CGCConfig
from cgc.errors import ConfigError
from cgc.nn.encoders import EdgeEncoder, NodeEncoder
from cgc.nn.gnn_conv import CGCConv, dense_edges
from cgc.nn.heads import CellValueHead, GeneValueHead
from cgc.nn.transformer import CellTransformer, PackedLayout
from cgc.priors.bundle import GenePriors
from cgc.priors.vocab import SPECIAL_TOKENS


@dataclass
class CGCOutput:
    """Output of :meth:`CGCModel.forward`.

    Attributes
    ----------
    h
        ``[N, d]`` final state of every node (packed, PyG order; node 0 of each cell is the
        cell node).
    h_cell
        ``[B, d]`` cell embedding ``h_c`` (state of each cell node).
    layout
        Packed ↔ padded layout of the batch.
    is_cell
        ``[N]`` bool, cell nodes.

    """

    h: Tensor
    h_cell: Tensor
    layout: PackedLayout
    is_cell: Tensor


class CGCModel(nn.Module):
    """Cell-Graph Compass: node/edge encoders, GNN (eq. 5–6), Transformer, heads.

    Parameters
    ----------
    config
        Architecture and ablation switches.
    priors
        Gene priors bundle (vocabulary size, text embeddings); its
        :attr:`~cgc.priors.GenePriors.content_hash` is recorded in :attr:`priors_hash`.

    Notes
    -----
    ``forward`` takes a PyG :class:`~torch_geometric.data.Batch` built by
    :class:`cgc.graph.CellGraphBuilder` and returns per-node states (for per-gene heads such
    as perturbation decoders; the special tokens ``s_i`` enter through ``batch.special``)
    and the cell states ``h_c``. Downstream heads can be added on top of
    :class:`CGCOutput` without touching this class.

    """

    def __init__(self, config: CGCConfig, priors: GenePriors) -> None:
        super().__init__()
        if "text" in config.node_features and priors.text_dim == 0:
            raise ConfigError(
                "node_features includes 'text' but the priors bundle has no text embeddings; "
                "build GenePriors with a text_encoder, or drop 'text' from node_features"
            )
        self.config = config
        self.priors = priors
        self.priors_hash = priors.content_hash
        text = torch.from_numpy(np.ascontiguousarray(priors.arrays["text"], dtype=np.float16))
        self.register_buffer("text_table", text, persistent=False)
        d = config.d_model
        self.node_encoder = NodeEncoder(config, priors.n_genes, max(priors.text_dim, 1))
        if config.use_graph:
            self.edge_encoder: EdgeEncoder | None = EdgeEncoder(config)
            n = config.n_gnn_layers
            # The last layer's edge update (eq. 6) would never be read: skip it.
            self.convs = nn.ModuleList(CGCConv(d, update_edges=k < n - 1) for k in range(n))
            self.node_norms = nn.ModuleList(nn.LayerNorm(d) for _ in range(n))
            self.edge_norms = nn.ModuleList(nn.LayerNorm(d) for _ in range(max(n - 1, 0)))
        else:
            self.edge_encoder = None
            self.convs = nn.ModuleList()
            self.node_norms = nn.ModuleList()
            self.edge_norms = nn.ModuleList()
        self.transformer = CellTransformer(d, config.n_transformer_layers, config.n_heads,
                                           config.d_ff, config.dropout, config.attn_dropout)
        self.gene_head = GeneValueHead(d)
        self.cell_head = CellValueHead(d)

    # ------------------------------------------------------------------ forward
    def encode_nodes(self, batch: Batch) -> Tensor:
        """Return eq. 1 node embeddings ``[N, d]``."""
        text = None
        if self.node_encoder.mlp_t is not None:
            text = self.text_table[batch.gene].to(self.node_encoder.emb_g.weight.dtype)
        mask = batch.mask if "mask" in batch else None
        return self.node_encoder(batch.gene, batch.value, batch.special, text, mask)

    def forward(self, batch: Batch) -> CGCOutput:
        """Run encoders, the GNN (unless ``use_graph=False``) and the Transformer.

        Parameters
        ----------
        batch
            Collated cell graphs from :class:`cgc.graph.CellGraphBuilder`.

        Returns
        -------
        CGCOutput
            Node states ``h`` and cell states ``h_c``.

        """
        x = self.encode_nodes(batch)
        if self.edge_encoder is not None and batch.edge_index.numel():
            # eq. 2 once per distinct edge attribute; the first layer projects those rows only
            e: Tensor | tuple[Tensor, Tensor] = self.edge_encoder.factored(
                batch.edge_tftg, batch.edge_corr, batch.edge_pos, batch.edge_kind)
            last = len(self.convs) - 1
            for k, (conv, norm) in enumerate(zip(self.convs, self.node_norms, strict=True)):
                x_new, e_new = conv(x, batch.edge_index, e)
                res = self.config.gnn_residual
                x = norm(x + x_new) if res else x_new
                if k < last:
                    e = self.edge_norms[k](dense_edges(e) + e_new) if res else e_new
        layout = PackedLayout.from_ptr(batch.ptr)
        h = self.transformer(x, layout)
        return CGCOutput(h=h, h_cell=h[batch.ptr[:-1]], layout=layout, is_cell=batch.is_cell)

    def pretrain_loss(self, batch: Batch, out: CGCOutput | None = None,
                      cell_offset: Tensor | None = None) -> tuple[Tensor, dict[str, float]]:
        """Masked-value loss: eq. 10 on masked genes plus eq. 11 on all genes.

        ``cell_offset`` (``[n_cells, d]``, optional) is added to every node state and to
        ``h_c`` before the value heads only — the heads see it, the returned embeddings do
        not. Fine-tuning passes a learned per-batch vector here (scGPT's
        ``use_batch_labels``), so the reconstruction can explain batch effects through
        the batch vector instead of through ``h_c``.

        Returns
        -------
        loss : torch.Tensor
            ``gene_loss_weight · L_gene + cell_loss_weight · L_cell``.
        parts : dict
            Detached ``gene``, ``cell`` and ``loss`` values.

        """
        out = self(batch) if out is None else out
        genes = ~batch.is_cell
        masked = batch.mask & genes
        target = batch.target
        node_of = out.layout.batch
        h_nodes, h_cell = out.h, out.h_cell
        if cell_offset is not None:
            h_nodes = h_nodes + cell_offset[node_of]
            h_cell = h_cell + cell_offset
        if bool(masked.any()):
            pred = self.gene_head(h_nodes[masked])
            l_gene = F.mse_loss(pred.float(), target[masked].float())
        else:
            l_gene = out.h.sum() * 0.0
        emb = self.node_encoder.emb_g(batch.gene[genes])
        pred_c = self.cell_head(emb, h_cell[node_of[genes]])
        l_cell = F.mse_loss(pred_c.float(), target[genes].float())
        loss = self.config.gene_loss_weight * l_gene + self.config.cell_loss_weight * l_cell
        return loss, {"loss": float(loss.detach()), "gene": float(l_gene.detach()),
                      "cell": float(l_cell.detach())}

    # ------------------------------------------------------------------ embeddings
    def gene_embeddings(self) -> pd.DataFrame:
        """Return the learned gene token table ``emb_g`` (special tokens excluded).

        Returns
        -------
        pandas.DataFrame
            Index: gene symbols; columns ``0..d-1``.

        """
        w = self.node_encoder.emb_g.weight.detach().float().cpu().numpy()
        k = len(SPECIAL_TOKENS)
        return pd.DataFrame(w[k:], index=pd.Index(self.priors.vocab.tokens[k:], name="gene"))

    @torch.no_grad()
    def gene_features(self, ids: np.ndarray, readout: str = "node") -> np.ndarray:
        """Zero-shot gene embeddings of vocabulary ids ``ids`` (``[n, d]`` float32).

        ``readout``:

        * ``"token"`` — the learned token rows ``emb_g`` (the paper's gene embedding, SPEC
          §5.1). Rows of genes never seen in pre-training stay at their random init.
        * ``"text"`` — the text term of eq. 1, ``norm_t(mlp_t(t_i))``: the gene's description
          as the pre-trained model projects it (genes without a description fall back to
          their token term).
        * ``"node"`` — the gene's node encoding without a value: token term + text term of
          eq. 1 (each normalised as the model does).
        """
        enc = self.node_encoder
        g = torch.as_tensor(np.asarray(ids, dtype=np.int64), device=enc.emb_g.weight.device)
        if readout == "token":
            return enc.emb_g(g).float().cpu().numpy()
        if readout not in ("text", "node"):
            raise ConfigError(f"gene readout {readout!r}; use 'token', 'text' or 'node'")
        token = enc.norm_g(enc.emb_g(g)).float()
        if enc.mlp_t is None or self.priors.text_dim == 0:
            return token.cpu().numpy()
        has = torch.as_tensor(np.asarray(self.priors.arrays["text_mask"])[np.asarray(ids)],
                              device=g.device)
        text = enc.norm_t(enc.mlp_t(self.text_table[g].to(enc.emb_g.weight.dtype))).float()
        text = torch.where(has.unsqueeze(-1), text, torch.zeros_like(text))
        if readout == "text":
            return torch.where(has.unsqueeze(-1), text, token).cpu().numpy()
        return (token + text).cpu().numpy()

    def num_parameters(self) -> int:
        """Return the number of trainable parameters."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)
