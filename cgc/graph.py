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
cell's position edges are the pairs of its genes fewer than ``window`` ranks apart, found by
stepping through the batch's genes sorted by (cell, rank). TF and co-expression edges come
from storage, tested against per-gene bit sets of the cells holding each gene. Every gene–gene
edge is one ``int64`` key (:mod:`cgc.graph_batch`); one sort puts them in :meth:`build`'s order
and the batch's edge fields are decoded from the keys, cell by cell, in place. With
``use_graph=False`` no edges are built.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import torch
from torch_geometric.data import Batch, Data

from cgc.config import CGCConfig
from cgc.graph_batch import EdgeKeyLayout, position_edge_keys
from cgc.preprocess import Seed, as_rng
from cgc.priors.bundle import FLAG_COEXPR, FLAG_POS, FLAG_TFTG, GenePriors

EDGE_GENE, EDGE_TO_CELL, EDGE_FROM_CELL = 0, 1, 2
_CHUNK_CELLS, _CHUNK_NODES = 64, 40_000  # cells built together (see _chunks)
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
            counts = np.bincount(rows[keep], minlength=n)
            indptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
            indices = np.asarray(self._indices)[keep].astype(np.int64)
            self._stored_rows = rows[keep].astype(np.int64)  # stored edges' sources
            self._stored_src = counts > 0  # genes with a stored edge out / with any
            self._stored_gene = self._stored_src.copy()
            self._stored_gene[indices] = True
            self._genome_bits = int(keys.max() + window).bit_length() if keys is not None else 0
            self._batch_index = (indptr, indices, np.flatnonzero(keep), keys, window)
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

    def _batch_gene_edges(self, genes: np.ndarray, cell_of: np.ndarray, gnode: np.ndarray,
                          gene_node: np.ndarray, lay: EdgeKeyLayout
                          ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Gene–gene edges of the cells of a batch, as sorted edge keys.

        Parameters
        ----------
        genes, cell_of, gnode
            The batch's genes concatenated cell by cell, their cell and their node index.
        gene_node
            Vocabulary id of every node.
        lay
            Key layout (:class:`~cgc.graph_batch.EdgeKeyLayout`).

        Returns
        -------
        keys : numpy.ndarray
            Sorted edge keys: :meth:`build`'s order (source node, then target vocabulary id).
        s_at, s_flags, s_corr : numpy.ndarray
            The edges read from storage (TF and co-expression; every edge when positions are
            not implied): position in ``keys`` (ascending), type flags and correlation. Every
            other edge is a position edge only (flags ``FLAG_POS``, correlation 0).

        """
        keys, window = self._batch_tables()[3:]
        pw = self.config.pos_window
        if not len(genes):
            e = np.zeros(0, np.int64)
            return e, e, self._flags[:0], self._corr[:0]
        nb = lay.node_bits
        s_flags, s_corr, s_key = self._stored_edges(genes, cell_of, gnode, lay)
        if keys is None:
            out = np.sort(s_key)
        else:
            # position edges: pairs of a cell's genes < window apart in genome order
            kg = keys[genes]
            idx = np.flatnonzero(kg >= 0)
            ck = (cell_of[idx] << self._genome_bits) | kg[idx]
            if self._genome_bits + int(cell_of[-1]).bit_length() + nb <= 63:
                sk = np.sort((ck << nb) | gnode[idx])
                sn = sk & lay.node_mask
                sk >>= nb
            else:
                o = np.argsort(ck)
                sk, sn = ck[o], gnode[idx][o]
            sp = sn << lay.src_shift  # key parts of each gene as a source and as a target
            dp = (gene_node[sn] << (nb + lay.pos_bits)) | sn
            new = s_key[(s_flags & FLAG_POS) == 0]  # stored edges that are not position edges
            out = position_edge_keys(sk, sp, dp, window, pw, nb, extra=new)
            out.sort()
        s_at = np.searchsorted(out, s_key)
        o = np.argsort(s_at)
        return out, s_at[o], s_flags[o], s_corr[o]

    def _stored_edges(self, genes: np.ndarray, cell_of: np.ndarray, gnode: np.ndarray,
                      lay: EdgeKeyLayout) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Stored edges (TF, co-expression) with both ends in one cell of a run (<= 64 cells).

        Every gene gets the bit set of the run's cells holding it; a stored edge is in cell
        ``c`` when bit ``c`` is set at both ends. With few stored edges (TF and co-expression
        only) all of them are tested at once; otherwise (position edges stored too) the CSR
        rows of the run's genes are read. A sort of (cell, gene) gives the nodes.

        Returns
        -------
        flags, corr, keys : numpy.ndarray
            Type flags, correlation and edge key of each edge, in no particular order.

        """
        indptr, indices, stored_eid = self._batch_tables()[:3]
        nb, vb = lay.node_bits, lay.vocab_bits
        mem = np.flatnonzero(self._stored_gene[genes])
        cm = cell_of[mem]
        bits = np.zeros(self.priors.n_genes, dtype=np.uint64)
        np.bitwise_or.at(bits, genes[mem], np.left_shift(np.uint64(1), cm.astype(np.uint64)))
        if len(stored_eid) <= 4 * len(genes):  # test every stored edge
            both = bits[self._stored_rows] & bits[indices]
            e = np.flatnonzero(both)
            hits = np.flatnonzero(np.unpackbits(both[e].astype("<u8").view(np.uint8),
                                                bitorder="little"))  # 64 bits per edge
            c = hits & 63
            e = e[hits >> 6]
            src_v, dst_v = self._stored_rows[e], indices[e]
        else:  # read the CSR rows of the run's genes
            sel = np.flatnonzero(self._stored_src[genes])
            starts = indptr[genes[sel]]
            lens = indptr[genes[sel] + 1] - starts
            src_i = np.repeat(sel, lens)
            e = np.repeat(starts - (np.cumsum(lens) - lens), lens) + np.arange(int(lens.sum()))
            dst_v = indices[e]
            c = cell_of[src_i]
            hit = np.flatnonzero((bits[dst_v] >> c.astype(np.uint64)) & np.uint64(1))
            e, c, dst_v, src_v = e[hit], c[hit], dst_v[hit], genes[src_i[hit]]
        mk = np.sort((((cm << vb) | genes[mem]) << nb) | gnode[mem])
        c = c.astype(np.int64) << vb
        src = mk[np.searchsorted(mk, (c | src_v) << nb)] & lay.node_mask
        dst = mk[np.searchsorted(mk, (c | dst_v) << nb)] & lay.node_mask
        eid = stored_eid[e]
        return (self._flags[eid], self._corr[eid],
                lay.pack(src, dst_v, self._pos[eid] + self.config.pos_window, dst))

    def _apply_budget(self, keys: np.ndarray, s_at: np.ndarray, s_flags: np.ndarray,
                      s_corr: np.ndarray, bounds: np.ndarray, n: np.ndarray,
                      seeds: Sequence[Seed]
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Apply the edge budget (SPEC §6) per cell, exactly as :meth:`build` does.

        ``bounds[c]:bounds[c + 1]`` are cell ``c``'s edges in ``keys``; returns ``keys``,
        ``s_at``, ``s_flags``, ``s_corr`` and ``bounds`` without the dropped edges.
        """
        m = np.diff(bounds)
        budget = (self.config.edge_budget * (n + 1)).astype(np.int64)
        over = np.flatnonzero(m + 2 * n > budget)
        if not len(over):
            return keys, s_at, s_flags, s_corr, bounds
        kept = self._kept_flags
        if kept & FLAG_POS or self._batch_tables()[3] is None:
            opt = s_at[(s_flags & kept) == 0]  # position-only edges are protected
        else:
            fl = np.full(len(keys), FLAG_POS, dtype=s_flags.dtype)
            fl[s_at] = s_flags
            opt = np.flatnonzero((fl & kept) == 0)
        ob = np.searchsorted(opt, bounds)
        n_opt = np.diff(ob)
        room = np.maximum(0, budget - 2 * n - (m - n_opt))
        cut = np.zeros(len(n), dtype=bool)
        cut[over[room[over] < n_opt[over]]] = True
        gen = np.array([isinstance(x, np.random.Generator) for x in seeds], dtype=bool)
        # no room and a fresh seed: every optional edge goes, no draw needed (a Generator
        # passed in still makes its draw of size 0, as build does)
        drop_all = cut & (room == 0) & ~gen
        drops = [opt[drop_all[np.searchsorted(bounds, opt, side="right") - 1]]]
        for c in np.flatnonzero(cut & ~drop_all):
            optional = opt[ob[c]: ob[c + 1]] - bounds[c]
            chosen = as_rng(seeds[c]).choice(optional, size=int(room[c]), replace=False)
            k = np.ones(len(optional), dtype=bool)
            k[np.searchsorted(optional, chosen)] = False
            drops.append(optional[k] + bounds[c])
        drop = np.sort(np.concatenate(drops))
        if not len(drop):
            return keys, s_at, s_flags, s_corr, bounds
        keep = np.ones(len(keys), dtype=bool)
        keep[drop] = False
        ks = keep[s_at]
        s_at = s_at[ks]
        s_at = s_at - np.searchsorted(drop, s_at)
        bounds = bounds - np.searchsorted(drop, bounds)
        return keys[keep], s_at, s_flags[ks], s_corr[ks], bounds

    def _chunks(self, n: np.ndarray) -> list[tuple[int, int]]:
        """Runs of cells built together (one run for usual batches).

        At most 64 cells (the membership bit set), few enough nodes that the work stays in
        cache and that the edge keys fit in 63 bits.
        """
        cfg, v = self.config, self.priors.n_genes
        out, c0, nodes = [], 0, 0
        for c, k in enumerate((n + 1).tolist()):
            if nodes and (c - c0 >= min(_CHUNK_CELLS, 64) or nodes + k > _CHUNK_NODES or
                          not EdgeKeyLayout.for_batch(nodes + k, v, cfg.pos_window).fits):
                out.append((c0, c))
                c0, nodes = c, 0
            nodes += k
        if not EdgeKeyLayout.for_batch(max(nodes, 1), v, cfg.pos_window).fits:
            raise ValueError(f"build_batch: a cell of {nodes - 1} genes is too large")
        return [*out, (c0, len(n))]

    def _emit_cells(self, keys: np.ndarray, lay: EdgeKeyLayout, base: int, bounds: list[int],
                    eptr: list[int], node_ptr: list[int], ei: np.ndarray, epos: np.ndarray,
                    kind: np.ndarray) -> None:
        """Write a run of cells' edges into the batch's ``edge_index``, ``edge_pos``, ``edge_kind``.

        Cell ``c`` (``c``-th of the run) gets its gene edges ``keys[bounds[c]:bounds[c+1]]``
        decoded at ``eptr[c]``, then its gene→cell and cell→gene edges.
        """
        sh, nb, nmask = lay.src_shift, lay.node_bits, lay.node_mask
        pmask, pw = (1 << lay.pos_bits) - 1, self.config.pos_window
        src_all, dst_all = ei
        for c in range(len(bounds) - 1):
            lo, hi, o, cell = bounds[c], bounds[c + 1], eptr[c], node_ptr[c]
            mid = o + hi - lo
            n = node_ptr[c + 1] - cell - 1
            end = mid + n
            seg, s_o, d_o, p_o = keys[lo:hi], src_all[o:mid], dst_all[o:mid], epos[o:mid]
            np.right_shift(seg, sh, out=s_o)
            np.bitwise_and(seg, nmask, out=d_o)
            np.right_shift(seg, nb, out=p_o)
            p_o &= pmask
            if base:
                s_o += base
                d_o += base
            g = np.arange(cell + 1, cell + 1 + n, dtype=np.int64)
            src_all[mid:end] = g
            dst_all[mid:end] = cell
            src_all[end:end + n] = cell
            dst_all[end:end + n] = g
            epos[mid:end + n] = pw
            kind[o:mid] = EDGE_GENE
            kind[mid:end] = EDGE_TO_CELL
            kind[end:end + n] = EDGE_FROM_CELL

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
        gl = [np.asarray(c.genes, dtype=np.int64) for c in cells]
        n = np.array([len(g) for g in gl], dtype=np.int64)
        genes = np.concatenate(gl) if n_cells else np.zeros(0, np.int64)
        cell_of = np.repeat(np.arange(n_cells, dtype=np.int64), n)
        node_ptr = np.zeros(n_cells + 1, dtype=np.int64)
        np.cumsum(n + 1, out=node_ptr[1:])
        gnode = np.arange(len(genes), dtype=np.int64) + cell_of + 1
        n_nodes = int(node_ptr[-1])
        gene = np.full(n_nodes, self.priors.vocab.cls_id, dtype=np.int64)
        gene[gnode] = genes
        pw = cfg.pos_window
        if cfg.use_graph and n_cells:
            parts = []
            gstart = node_ptr[:-1] - np.arange(n_cells)
            whole = EdgeKeyLayout.for_batch(n_nodes, self.priors.n_genes, pw)
            for c0, c1 in self._chunks(n):
                # keys hold batch node ids when they fit, else ids relative to the run
                base = 0 if whole.fits else int(node_ptr[c0])
                lay = whole if whole.fits else EdgeKeyLayout.for_batch(
                    int(node_ptr[c1]) - base, self.priors.n_genes, pw)
                g0, g1 = int(gstart[c0]), int(gstart[c1 - 1] + n[c1 - 1])
                keys, s_at, s_flags, s_corr = self._batch_gene_edges(
                    genes[g0:g1], cell_of[g0:g1] - c0, gnode[g0:g1] - base, gene[base:], lay)
                bounds = np.searchsorted(keys, (node_ptr[c0: c1 + 1] - base) << lay.src_shift)
                keys, s_at, s_flags, s_corr, bounds = self._apply_budget(
                    keys, s_at, s_flags, s_corr, bounds, n[c0:c1], seeds[c0:c1])
                parts.append((c0, c1, base, lay, keys, s_at, s_flags, s_corr, bounds))
            m = np.concatenate([np.diff(p[-1]) for p in parts])
            eptr = np.zeros(n_cells + 1, dtype=np.int64)
            np.cumsum(m + 2 * n, out=eptr[1:])
            n_edges = int(eptr[-1])
            ei = np.empty((2, n_edges), dtype=np.int64)
            epos = np.empty(n_edges, dtype=np.int64)
            tftg = np.zeros(n_edges, dtype=np.int64)
            ecorr = np.zeros(n_edges, dtype=np.float32)
            kind = np.empty(n_edges, dtype=np.int64)
            for c0, c1, base, lay, keys, s_at, s_flags, s_corr, bounds in parts:
                # gene edge i of cell c goes to eptr[c] + i - bounds[c]
                s_cell = np.searchsorted(bounds, s_at, side="right") - 1
                s_out = s_at + (eptr[c0:c1] - bounds[:-1])[s_cell]
                tftg[s_out] = (s_flags & FLAG_TFTG) != 0
                ecorr[s_out] = s_corr
                self._emit_cells(keys, lay, base, bounds.tolist(), eptr[c0:c1 + 1].tolist(),
                                 node_ptr[c0:c1 + 1].tolist(), ei, epos, kind)
        else:
            eptr = np.zeros(n_cells + 1, dtype=np.int64)
            ei = np.zeros((2, 0), dtype=np.int64)
            kind = tftg = epos = np.zeros(0, dtype=np.int64)
            ecorr = np.zeros(0, dtype=np.float32)

        bounds_n = list(zip(node_ptr[:-1].tolist(), node_ptr[1:].tolist(), strict=True))

        def node(field: str, fill: float, dtype: type) -> torch.Tensor:
            out = np.full(n_nodes, fill, dtype=dtype)
            for cell, (a, b) in zip(cells, bounds_n, strict=True):
                v = getattr(cell, field)
                if v is not None:
                    out[a + 1: b] = v
            return torch.from_numpy(out)

        is_cell = torch.zeros(n_nodes, dtype=torch.bool)
        is_cell[torch.as_tensor(node_ptr[:-1])] = True
        batch = Batch(_base_cls=Data)
        batch.edge_index = torch.from_numpy(ei)
        batch.gene = torch.from_numpy(gene)
        batch.value = node("values", 0.0, np.float32)
        batch.target = node("target", 0.0, np.float32)
        batch.mask = node("mask", False, np.bool_)
        batch.special = node("special", 0, np.int64)
        batch.is_cell = is_cell
        batch.edge_tftg = torch.from_numpy(tftg)
        batch.edge_corr = torch.from_numpy(ecorr)
        batch.edge_pos = torch.from_numpy(epos)
        batch.edge_kind = torch.from_numpy(kind)
        batch.num_nodes = n_nodes
        batch.batch = torch.from_numpy(np.repeat(np.arange(n_cells, dtype=np.int64), n + 1))
        batch.ptr = torch.from_numpy(node_ptr)
        nptr, eptr_t = torch.from_numpy(node_ptr), torch.from_numpy(eptr)
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
