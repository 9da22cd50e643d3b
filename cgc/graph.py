"""Per-cell graph construction from the global prior graph (SPEC §2).

For one cell with genes ``G``, the cell graph has node 0 = the cell node and nodes
``1..|G|`` = the genes; its edges are the edges of the global prior graph with both ends
in ``G`` (the induced sub-graph) plus edges between the cell node and every gene in both
directions. Node and edge lists are read from a CSR adjacency, so the cost grows with the
degrees of the cell's genes, never with the genome. When the cell has more than
``edge_budget × n_nodes`` edges, co-expression-only edges are subsampled (seeded); TF,
position and cell edges are always kept (``CGCConfig.edge_budget_types`` lets the budget drop
other types too).

:meth:`CellGraphBuilder.build_batch` builds many cells at once and returns one PyG
:class:`~torch_geometric.data.Batch` directly, identical to collating :meth:`build`'s graphs
(same edges, same order, same seeded budget). It does not read the position edges from the
CSR (99.7% of the prior edges): genes get their genome rank back from the stored offsets and a
cell's position edges are the pairs of its genes fewer than ``window`` ranks apart, found by a
binary search over the batch's genes sorted by rank. Only TF and co-expression edges are read
from the CSR. With ``use_graph=False`` no edges are built.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import torch
from torch_geometric.data import Batch, Data

from cgc.config import CGCConfig
from cgc.preprocess import Seed, as_rng
from cgc.priors.bundle import FLAG_COEXPR, FLAG_POS, FLAG_TFTG, GenePriors

EDGE_GENE, EDGE_TO_CELL, EDGE_FROM_CELL = 0, 1, 2
_FLAG_OF = {"tftg": FLAG_TFTG, "coexpr": FLAG_COEXPR, "pos": FLAG_POS}


class CellInput(NamedTuple):
    """One cell's node inputs for :meth:`CellGraphBuilder.build_batch` (as for ``build``)."""

    genes: np.ndarray
    values: np.ndarray
    target: np.ndarray | None = None
    mask: np.ndarray | None = None
    special: np.ndarray | None = None


def genome_keys(indptr: np.ndarray, indices: np.ndarray, flags: np.ndarray, pos: np.ndarray,
                n_genes: int) -> tuple[np.ndarray, int] | None:
    """Recover every gene's genome rank from the stored position edges.

    Position edges link genes ``0 < |rank_j - rank_i| < window`` apart on one chromosome
    with offset ``rank_j - rank_i`` (:func:`cgc.priors.positions.position_edges`). Following
    the ``+1`` offsets from each chromosome's first gene gives the ranks back.

    Returns
    -------
    (keys, window) or None
        ``keys[g]``: a sortable genome key (chromosomes separated by more than ``window``),
        ``-1`` for genes without position; ``window`` as stored. ``None`` when the stored
        position edges are not exactly the pairs these keys imply (then callers read them
        from the CSR).

    """
    is_pos = (flags & FLAG_POS) != 0
    n_pos = int(is_pos.sum())
    keys = np.full(n_genes, -1, dtype=np.int64)
    if n_pos == 0:
        return keys, 1
    window = int(np.abs(pos[is_pos].astype(np.int64)).max()) + 1
    rows = np.repeat(np.arange(n_genes), np.diff(indptr))
    step = is_pos & (pos == 1)
    succ = np.full(n_genes, -1, dtype=np.int64)
    succ[rows[step]] = indices[step]
    has_pos = np.zeros(n_genes, dtype=bool)
    has_pos[rows[is_pos]] = True
    has_pred = np.zeros(n_genes, dtype=bool)
    has_pred[indices[step]] = True
    cur = np.flatnonzero(has_pos & ~has_pred)
    base = np.arange(len(cur), dtype=np.int64) * (n_genes + 2 * window + 1)
    k = 0
    while len(cur):
        if (keys[cur] >= 0).any():  # a cycle: not a genome order
            return None
        keys[cur] = base + k
        nxt = succ[cur]
        ok = nxt >= 0
        cur, base, k = nxt[ok], base[ok], k + 1
    if (keys[has_pos] < 0).any():
        return None
    # The implied pairs must be exactly the stored ones (count and offsets).
    kp = keys[rows[is_pos]]
    kq = keys[indices[is_pos]]
    if (kp < 0).any() or (kq < 0).any() or not np.array_equal(kq - kp, pos[is_pos].astype(np.int64)):
        return None
    sk = np.sort(keys[keys >= 0])
    implied = 2 * int((np.searchsorted(sk, sk + window - 1, side="right")
                       - np.arange(len(sk)) - 1).sum())
    if implied != n_pos:
        return None
    return keys, window


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
        # an edge with any type the budget may not drop is kept
        self._kept_flags = 0
        for t in set(_FLAG_OF) - set(config.edge_budget_types):
            self._kept_flags |= _FLAG_OF[t]
        self._batch_index: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None,
                                 int] | None = None

    def _batch_tables(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None, int]:
        """CSR of the edges read from storage by :meth:`build_batch`, and genome keys.

        With position edges computed from genome ranks, the stored part holds only edges with
        a TF or co-expression flag (position-only edges are implied by the keys).
        """
        if self._batch_index is None:
            n = self.priors.n_genes
            flags = self._flags
            gk = None
            if "pos" in self.config.edge_types:
                a = self.priors.arrays
                allowed_pos = (np.asarray(a["flags"]) & FLAG_POS) != 0
                gk = genome_keys(np.asarray(a["indptr"]), np.asarray(a["indices"]),
                                 np.asarray(a["flags"]) & np.where(allowed_pos, FLAG_POS, 0),
                                 np.asarray(a["pos"]), n)
            if gk is None and "pos" in self.config.edge_types:
                keep = np.ones(len(flags), dtype=bool)  # read position edges from the CSR
                keys, window = None, 0
            elif gk is None:
                keep = np.ones(len(flags), dtype=bool)
                keys, window = None, 0
            else:
                keys, window = gk
                keep = (flags & (FLAG_TFTG | FLAG_COEXPR)) != 0
            rows = np.repeat(np.arange(n), np.diff(self._indptr))
            both = keep & ((flags & FLAG_POS) != 0) if keys is not None else np.zeros(len(flags), bool)
            self._both_gene = np.zeros(n, dtype=bool)  # genes with a stored position edge
            self._both_gene[rows[both]] = True
            self._both_gene[np.asarray(self._indices)[both]] = True
            counts = np.bincount(rows[keep], minlength=n)
            indptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
            self._batch_index = (indptr, np.asarray(self._indices)[keep].astype(np.int64),
                                 np.flatnonzero(keep), keys, window)
        return self._batch_index

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
        if cfg.use_graph:
            src, dst, eid = self.induced_edges(genes)
        else:  # the model reads no edges: build none
            src = dst = eid = np.zeros(0, np.int64)
        flags = self._flags[eid]
        n_nodes = n + 1
        budget = int(cfg.edge_budget * n_nodes)
        if len(eid) + 2 * n > budget:
            protected = (flags & self._kept_flags) != 0
            optional = np.flatnonzero(~protected)
            room = max(0, budget - 2 * n - int(protected.sum()))
            if room < len(optional):
                chosen = as_rng(seed).choice(optional, size=room, replace=False)
                keep = protected.copy()
                keep[chosen] = True
                src, dst, eid, flags = src[keep], dst[keep], eid[keep], flags[keep]
        m = len(eid)
        n_cell_edges = n if cfg.use_graph else 0
        gene_nodes = np.arange(1, n_cell_edges + 1)
        zeros = np.zeros(n_cell_edges, np.int64)
        edge_index = np.concatenate(
            [np.stack([src + 1, dst + 1]), np.stack([gene_nodes, zeros]),
             np.stack([zeros, gene_nodes])], axis=1
        )
        kind = np.concatenate([np.full(m, EDGE_GENE), np.full(n_cell_edges, EDGE_TO_CELL),
                               np.full(n_cell_edges, EDGE_FROM_CELL)])
        pad = np.zeros(2 * n_cell_edges, np.int64)
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

    def _batch_gene_edges(self, genes: np.ndarray, cell_of: np.ndarray
                          ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Gene–gene edges of every cell of a batch, in :meth:`build`'s order.

        ``genes`` are the batch's genes concatenated cell by cell, ``cell_of`` their cell.
        Returns ``src, dst`` (positions in ``genes``), ``flags``, ``corr`` and clipped
        ``pos`` per edge, sorted by source position, then target vocabulary id (the CSR
        order :meth:`induced_edges` reads them in).
        """
        indptr, indices, stored_eid, keys, window = self._batch_tables()
        n_vocab = np.int64(self.priors.n_genes)
        # stored edges (TF, co-expression; everything when positions are not implied)
        starts = indptr[genes]
        lens = indptr[genes + 1] - starts
        total = int(lens.sum())
        src = np.repeat(np.arange(len(genes)), lens)
        offs = np.arange(total) - np.repeat(np.cumsum(lens) - lens, lens)
        eid = np.repeat(starts, lens) + offs
        ck = cell_of * n_vocab + genes
        order = np.argsort(ck, kind="stable")
        sck = ck[order]
        q = cell_of[src] * n_vocab + indices[eid]
        at = np.minimum(np.searchsorted(sck, q), max(len(sck) - 1, 0))
        found = sck[at] == q if len(sck) else np.zeros(0, bool)
        src, dst, eid = src[found], order[at[found]], stored_eid[eid[found]]
        flags, corr, pos = self._flags[eid], self._corr[eid], self._pos[eid]
        if keys is not None and len(genes):
            k = keys[genes]
            idx = np.flatnonzero(k >= 0)  # genes with a position, in batch order
            stride = np.int64(keys.max() + window + 1)
            kk = cell_of[idx] * stride + k[idx]
            o = np.argsort(kk)
            sk, sidx = kk[o], idx[o]
            lo = np.searchsorted(sk, sk - (window - 1), side="left")
            hi = np.searchsorted(sk, sk + (window - 1), side="right")
            rank = np.empty(len(o), dtype=np.int64)
            rank[o] = np.arange(len(o))
            lo, hi = lo[rank], hi[rank]  # per gene of idx, in batch order
            cnt = hi - lo - 1
            n_pairs = int(cnt.sum())
            ps = np.repeat(idx, cnt)  # grouped by source in batch order
            at = np.repeat(lo - np.cumsum(cnt) + cnt, cnt) + np.arange(n_pairs)
            self_at = np.repeat(rank, cnt)
            at += at >= self_at  # skip the gene itself
            pd_ = sidx[at]
            po = np.clip(sk[at] - sk[self_at], -self.config.pos_window, self.config.pos_window)
            both = (flags & FLAG_POS) != 0  # stored edges that are position edges too
            if both.any():
                g = np.int64(len(genes))
                cand = np.flatnonzero(self._both_gene[genes[ps]] & self._both_gene[genes[pd_]])
                dup = cand[np.isin(ps[cand] * g + pd_[cand], src[both] * g + dst[both])]
                keep = np.ones(len(ps), dtype=bool)
                keep[dup] = False
                ps, pd_, po = ps[keep], pd_[keep], po[keep]
            src = np.concatenate([src, ps])
            dst = np.concatenate([dst, pd_])
            flags = np.concatenate([flags, np.full(len(ps), FLAG_POS, flags.dtype)])
            corr = np.concatenate([corr, np.zeros(len(ps), corr.dtype)])
            pos = np.concatenate([pos, po])
        o = np.argsort(src * n_vocab + genes[dst], kind="stable")
        return src[o], dst[o], flags[o], corr[o], pos[o]

    def build_batch(self, cells: Sequence[CellInput], seeds: Sequence[Seed] | None = None
                    ) -> Batch:
        """Build the graphs of many cells at once as one PyG :class:`Batch`.

        Equal, field by field and edge by edge, to ``collate([build(*cell, seed=s) ...])``:
        the same edges in the same order, the same seeded co-expression budget per cell.

        Parameters
        ----------
        cells
            Each cell's genes (distinct vocabulary ids), values and optional target, mask
            and special tokens (:class:`CellInput`).
        seeds
            Per-cell seed or Generator of the edge budget (default: 0 for every cell).

        Returns
        -------
        torch_geometric.data.Batch
            The batched graphs; node 0 of each cell is its cell node.

        """
        cfg = self.config
        n_cells = len(cells)
        seeds = [0] * n_cells if seeds is None else list(seeds)
        if len(seeds) != n_cells:
            raise ValueError(f"build_batch: {n_cells} cells but {len(seeds)} seeds")
        n = np.array([len(c.genes) for c in cells], dtype=np.int64)
        genes = (np.concatenate([np.asarray(c.genes, dtype=np.int64) for c in cells])
                 if n_cells else np.zeros(0, np.int64))
        cell_of = np.repeat(np.arange(n_cells, dtype=np.int64), n)
        gstart = np.cumsum(n) - n
        node_ptr = np.concatenate([[0], np.cumsum(n + 1)]).astype(np.int64)
        local = np.arange(len(genes), dtype=np.int64) - np.repeat(gstart, n)
        gnode = node_ptr[cell_of] + 1 + local
        n_nodes = int(node_ptr[-1])
        if cfg.use_graph:
            src, dst, flags, corr, pos = self._batch_gene_edges(genes, cell_of)
            m = np.bincount(cell_of[src], minlength=n_cells).astype(np.int64)
            budget = (cfg.edge_budget * (n + 1)).astype(np.int64)
            over = np.flatnonzero(m + 2 * n > budget)
            if len(over):
                keep = np.ones(len(src), dtype=bool)
                mstart = np.cumsum(m) - m
                for c in over:
                    sl = slice(int(mstart[c]), int(mstart[c] + m[c]))
                    protected = (flags[sl] & self._kept_flags) != 0
                    optional = np.flatnonzero(~protected)
                    room = max(0, int(budget[c]) - 2 * int(n[c]) - int(protected.sum()))
                    if room < len(optional):
                        chosen = as_rng(seeds[c]).choice(optional, size=room, replace=False)
                        k = protected.copy()
                        k[chosen] = True
                        keep[sl] = k
                src, dst, flags, corr, pos = (x[keep] for x in (src, dst, flags, corr, pos))
                m = np.bincount(cell_of[src], minlength=n_cells).astype(np.int64)
            e = m + 2 * n
            eptr = np.concatenate([[0], np.cumsum(e)]).astype(np.int64)
            mstart = np.cumsum(m) - m
            ecell = cell_of[src]
            p_gene = eptr[ecell] + np.arange(len(src)) - mstart[ecell]
            p_to = eptr[cell_of] + m[cell_of] + local
            p_from = p_to + n[cell_of]
            n_edges = int(eptr[-1])
            ei = np.empty((2, n_edges), dtype=np.int64)
            ei[0, p_gene], ei[1, p_gene] = gnode[src], gnode[dst]
            cnode = node_ptr[cell_of]
            ei[0, p_to], ei[1, p_to] = gnode, cnode
            ei[0, p_from], ei[1, p_from] = cnode, gnode
            kind = np.empty(n_edges, dtype=np.int64)
            kind[p_gene], kind[p_to], kind[p_from] = EDGE_GENE, EDGE_TO_CELL, EDGE_FROM_CELL
            tftg = np.zeros(n_edges, dtype=np.int64)
            tftg[p_gene] = (flags & FLAG_TFTG) != 0
            ecorr = np.zeros(n_edges, dtype=np.float32)
            ecorr[p_gene] = corr
            epos = np.full(n_edges, cfg.pos_window, dtype=np.int64)
            epos[p_gene] = pos + cfg.pos_window
        else:
            eptr = np.zeros(n_cells + 1, dtype=np.int64)
            ei = np.zeros((2, 0), dtype=np.int64)
            kind = tftg = epos = np.zeros(0, dtype=np.int64)
            ecorr = np.zeros(0, dtype=np.float32)

        def node(field: str, fill: float, dtype: torch.dtype) -> torch.Tensor:
            out = torch.full((n_nodes,), fill, dtype=dtype)
            parts = [getattr(c, field) for c in cells]
            have = [i for i, a in enumerate(parts) if a is not None]
            if have:
                idx = np.concatenate([gnode[gstart[i]: gstart[i] + n[i]] for i in have])
                vals = np.concatenate([np.asarray(parts[i]) for i in have])
                out[torch.as_tensor(idx)] = torch.as_tensor(vals, dtype=dtype)
            return out

        gene = np.full(n_nodes, self.priors.vocab.cls_id, dtype=np.int64)
        gene[gnode] = genes
        is_cell = torch.zeros(n_nodes, dtype=torch.bool)
        is_cell[torch.as_tensor(node_ptr[:-1])] = True
        batch = Batch(_base_cls=Data)
        batch.edge_index = torch.as_tensor(ei)
        batch.gene = torch.as_tensor(gene)
        batch.value = node("values", 0.0, torch.float32)
        batch.target = node("target", 0.0, torch.float32)
        batch.mask = node("mask", False, torch.bool)
        batch.special = node("special", 0, torch.long)
        batch.is_cell = is_cell
        batch.edge_tftg = torch.as_tensor(tftg)
        batch.edge_corr = torch.as_tensor(ecorr)
        batch.edge_pos = torch.as_tensor(epos)
        batch.edge_kind = torch.as_tensor(kind)
        batch.num_nodes = n_nodes
        batch.batch = torch.as_tensor(np.repeat(np.arange(n_cells, dtype=np.int64), n + 1))
        batch.ptr = torch.as_tensor(node_ptr)
        nptr, eptr_t = torch.as_tensor(node_ptr), torch.as_tensor(eptr)
        zeros = torch.zeros(n_cells, dtype=torch.long)
        node_keys = ("gene", "value", "target", "mask", "special", "is_cell")
        edge_keys = ("edge_index", "edge_tftg", "edge_corr", "edge_pos", "edge_kind")
        batch._slice_dict = {k: (eptr_t if k in edge_keys else nptr)
                             for k in ("edge_index", *node_keys, *edge_keys[1:])}
        batch._inc_dict = {k: (nptr[:-1] if k == "edge_index" else zeros)
                           for k in batch._slice_dict}
        batch._num_graphs = n_cells
        return batch

    @staticmethod
    def collate(graphs: Sequence[Data]) -> Batch:
        """Collate cell graphs into one PyG :class:`~torch_geometric.data.Batch`."""
        return Batch.from_data_list(list(graphs))
