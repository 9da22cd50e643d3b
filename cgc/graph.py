"""Per-cell graph construction from the global prior graph (SPEC §2).

For one cell with genes ``G``, the cell graph has node 0 = the cell node and nodes
``1..|G|`` = the genes; its edges are the edges of the global prior graph with both ends
in ``G`` (the induced sub-graph) plus edges between the cell node and every gene in both
directions. Node and edge lists are read from a CSR adjacency, so the cost grows with the
degrees of the cell's genes, never with the genome. When the cell has more than
``edge_budget × n_nodes`` edges, co-expression-only edges are subsampled (seeded); TF,
position and cell edges are always kept.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch_geometric.data import Batch, Data

from cgc.config import CGCConfig
from cgc.preprocess import Seed, as_rng
from cgc.priors.bundle import FLAG_COEXPR, FLAG_POS, FLAG_TFTG, GenePriors

EDGE_GENE, EDGE_TO_CELL, EDGE_FROM_CELL = 0, 1, 2
_FLAG_OF = {"tftg": FLAG_TFTG, "coexpr": FLAG_COEXPR, "pos": FLAG_POS}


class CellGraphBuilder:
    """Build PyG :class:`~torch_geometric.data.Data` cell graphs.

    Parameters
    ----------
    priors
        Gene priors bundle holding the global CSR adjacency.
    config
        Model configuration; ``edge_types``, ``edge_budget`` and ``pos_window`` are used.

    Notes
    -----
    Node fields: ``gene`` (token id; node 0 is ``<cls>``), ``value`` (model input),
    ``target`` (binned value), ``mask`` (bool, masked genes), ``special`` (special token
    ``s_i``), ``is_cell`` (bool). Edge fields: ``edge_index`` (row 0 source ``j``, row 1
    target ``i``), ``edge_tftg`` (0/1), ``edge_corr`` (float), ``edge_pos`` (offset +
    ``pos_window``, so 0..2·window), ``edge_kind`` (0 gene–gene, 1 gene→cell, 2 cell→gene).

    """

    def __init__(self, priors: GenePriors, config: CGCConfig) -> None:
        self.priors = priors
        self.config = config
        a = priors.arrays
        allowed = 0
        for t in config.edge_types:
            allowed |= _FLAG_OF[t]
        flags = np.asarray(a["flags"]) & allowed
        keep = flags != 0
        if keep.all():
            self._indptr = np.asarray(a["indptr"])
            self._indices = np.asarray(a["indices"])
        else:
            indptr = np.asarray(a["indptr"])
            rows = np.repeat(np.arange(priors.n_genes), np.diff(indptr))
            counts = np.bincount(rows[keep], minlength=priors.n_genes)
            self._indptr = np.concatenate([[0], np.cumsum(counts)])
            self._indices = np.asarray(a["indices"])[keep]
        self._flags = flags[keep]
        self._corr = np.where(self._flags & FLAG_COEXPR, np.asarray(a["corr"])[keep], 0)
        self._corr = self._corr.astype(np.float32)
        self._pos = np.where(self._flags & FLAG_POS, np.asarray(a["pos"])[keep], 0)
        self._pos = np.clip(self._pos, -config.pos_window, config.pos_window).astype(np.int64)
        self._local = np.full(priors.n_genes, -1, dtype=np.int64)

    def induced_edges(self, genes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Edges of the prior graph among ``genes``.

        Parameters
        ----------
        genes
            Distinct vocabulary ids.

        Returns
        -------
        src, dst : numpy.ndarray
            Local indices (positions in ``genes``) of each edge's endpoints.
        eid : numpy.ndarray
            Positions of the edges in the (filtered) global edge arrays.

        """
        genes = np.asarray(genes, dtype=np.int64)
        starts, ends = self._indptr[genes], self._indptr[genes + 1]
        lens = ends - starts
        total = int(lens.sum())
        if total == 0:
            e = np.zeros(0, np.int64)
            return e, e, e
        src = np.repeat(np.arange(len(genes)), lens)
        offs = np.arange(total) - np.repeat(np.cumsum(lens) - lens, lens)
        eid = np.repeat(starts, lens) + offs
        self._local[genes] = np.arange(len(genes))
        try:
            dst = self._local[self._indices[eid]]
        finally:
            self._local[genes] = -1
        ok = dst >= 0
        return src[ok], dst[ok], eid[ok]

    def build(
        self,
        genes: np.ndarray,
        values: np.ndarray,
        target: np.ndarray | None = None,
        mask: np.ndarray | None = None,
        special: np.ndarray | None = None,
        seed: Seed = 0,
    ) -> Data:
        """Build the graph of one cell.

        Parameters
        ----------
        genes
            Distinct vocabulary ids of the cell's genes.
        values
            Model input values per gene (e.g. binned and masked).
        target
            Optional regression targets per gene.
        mask
            Optional boolean mask of genes whose value is hidden.
        special
            Optional special tokens ``s_i`` per gene (default 0).
        seed
            Seed or Generator of the co-expression edge budget.

        Returns
        -------
        torch_geometric.data.Data
            The cell graph (node 0 is the cell node).

        """
        genes = np.asarray(genes, dtype=np.int64)
        n = len(genes)
        cfg = self.config
        src, dst, eid = self.induced_edges(genes)
        flags = self._flags[eid]
        n_nodes = n + 1
        budget = int(cfg.edge_budget * n_nodes)
        if len(eid) + 2 * n > budget:
            protected = (flags & (FLAG_TFTG | FLAG_POS)) != 0
            optional = np.flatnonzero(~protected)
            room = max(0, budget - 2 * n - int(protected.sum()))
            if room < len(optional):
                chosen = as_rng(seed).choice(optional, size=room, replace=False)
                keep = protected.copy()
                keep[chosen] = True
                src, dst, eid, flags = src[keep], dst[keep], eid[keep], flags[keep]
        m = len(eid)
        gene_nodes = np.arange(1, n_nodes)
        zeros = np.zeros(n, np.int64)
        edge_index = np.concatenate(
            [np.stack([src + 1, dst + 1]), np.stack([gene_nodes, zeros]),
             np.stack([zeros, gene_nodes])], axis=1
        )
        kind = np.concatenate([np.full(m, EDGE_GENE), np.full(n, EDGE_TO_CELL),
                               np.full(n, EDGE_FROM_CELL)])
        pad = np.zeros(2 * n, np.int64)
        tftg = np.concatenate([(flags & FLAG_TFTG) != 0, pad]).astype(np.int64)
        corr = np.concatenate([self._corr[eid], pad]).astype(np.float32)
        pos = np.concatenate([self._pos[eid], pad]) + cfg.pos_window

        def node(a: np.ndarray | None, fill: float, dtype: torch.dtype) -> torch.Tensor:
            out = torch.full((n_nodes,), fill, dtype=dtype)
            if a is not None:
                out[1:] = torch.as_tensor(np.asarray(a), dtype=dtype)
            return out

        return Data(
            gene=torch.as_tensor(np.concatenate([[self.priors.vocab.cls_id], genes])),
            value=node(values, 0.0, torch.float32),
            target=node(target, 0.0, torch.float32),
            mask=node(mask, False, torch.bool),
            special=node(special, 0, torch.long),
            is_cell=torch.arange(n_nodes) == 0,
            edge_index=torch.as_tensor(edge_index, dtype=torch.long),
            edge_tftg=torch.as_tensor(tftg),
            edge_corr=torch.as_tensor(corr),
            edge_pos=torch.as_tensor(pos, dtype=torch.long),
            edge_kind=torch.as_tensor(kind, dtype=torch.long),
            num_nodes=n_nodes,
        )

    @staticmethod
    def collate(graphs: Sequence[Data]) -> Batch:
        """Collate cell graphs into one PyG :class:`~torch_geometric.data.Batch`."""
        return Batch.from_data_list(list(graphs))
