"""Co-expression prior: gene pairs with Pearson r above a threshold across a corpus.

The correlation is computed in a streaming, memory-bounded way: cells are read in chunks
(from in-memory or ``backed="r"`` AnnData), normalised and log-transformed chunk by chunk,
and the Gram matrix ``XᵀX`` is accumulated one block of gene rows at a time, so memory is
``O(block × n_genes)`` and the cells × genes matrix is never densified.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import anndata as ad
import numpy as np
import scipy.sparse as sp

from cgc.errors import InputFileError
from cgc.preprocess import normalize_log1p

Source = ad.AnnData | str | Path
Mapper = Callable[[Sequence[str]], np.ndarray]


@dataclass
class CoexprResult:
    """Co-expression edges (vocabulary ids) and bookkeeping."""

    src: np.ndarray
    dst: np.ndarray
    corr: np.ndarray
    n_cells: int
    n_genes: int
    detected: np.ndarray


def _open(src: Source) -> tuple[ad.AnnData, bool]:
    if isinstance(src, ad.AnnData):
        return src, False
    p = Path(src)
    if not p.is_file():
        raise InputFileError(f"corpus file {p} not found")
    return ad.read_h5ad(p, backed="r"), True


def _chunks(
    sources: Sequence[Source], mapper: Mapper, col_of: dict[int, int], n_cols: int,
    chunk_size: int, normalize: bool,
) -> Iterator[sp.csr_matrix]:
    """Yield normalised chunks (cells × n_cols) in the column order of ``col_of``."""
    for src in sources:
        adata, backed = _open(src)
        try:
            ids = mapper(list(adata.var_names))
            cols = np.array([col_of.get(int(i), -1) for i in ids], dtype=np.int64)
            keep = np.flatnonzero(cols >= 0)
            for start in range(0, adata.n_obs, chunk_size):
                x = adata.X[start : start + chunk_size]
                x = sp.csr_matrix(x, dtype=np.float64)
                if normalize:
                    x = normalize_log1p(x)
                x = x[:, keep].tocoo()
                yield sp.csr_matrix(
                    (x.data, (x.row, cols[keep][x.col])), shape=(x.shape[0], n_cols)
                )
        finally:
            if backed:
                adata.file.close()


def coexpression_edges(
    sources: Sequence[Source],
    mapper: Mapper,
    threshold: float = 0.6,
    absolute: bool = False,
    min_cells: int = 10,
    max_genes: int | None = 10000,
    chunk_size: int = 2048,
    memory_mb: float = 512.0,
    normalize: bool = True,
) -> CoexprResult:
    """Compute co-expression edges ``r > threshold`` over a corpus.

    Parameters
    ----------
    sources
        AnnData objects or ``.h5ad`` paths (raw counts if ``normalize``).
    mapper
        Maps a list of ``var_names`` to vocabulary ids (``-1`` = unmapped).
    threshold
        Pearson threshold (SPEC: 0.6).
    absolute
        Use ``|r| > threshold`` instead of ``r > threshold``.
    min_cells
        Only genes detected in at least this many cells are considered.
    max_genes
        Keep at most this many genes (highest variance of log-normalised expression).
    chunk_size
        Cells per chunk.
    memory_mb
        Memory bound for the Gram-matrix block accumulator.
    normalize
        Apply total-count normalisation and ``log1p`` to each chunk.

    Returns
    -------
    CoexprResult
        Directed edges in both directions with their correlation.

    """
    # Pass 1: per-gene moments over the union of mapped genes.
    universe: dict[int, int] = {}
    for src in sources:
        adata, backed = _open(src)
        for i in mapper(list(adata.var_names)):
            if i >= 0 and int(i) not in universe:
                universe[int(i)] = len(universe)
        if backed:
            adata.file.close()
    g_all = len(universe)
    s1, s2, nnz = np.zeros(g_all), np.zeros(g_all), np.zeros(g_all)
    n = 0
    for x in _chunks(sources, mapper, universe, g_all, chunk_size, normalize):
        n += x.shape[0]
        s1 += np.asarray(x.sum(0)).ravel()
        s2 += np.asarray(x.multiply(x).sum(0)).ravel()
        nnz += np.diff(x.tocsc().indptr)
    empty = np.zeros(0, np.int64)
    if n < 3 or g_all < 2:
        return CoexprResult(empty, empty, np.zeros(0, np.float32), n, 0, empty)
    inv_ids = np.array(list(universe.keys()), dtype=np.int64)
    mean = s1 / n
    var = s2 / n - mean**2
    ok = np.flatnonzero((nnz >= min_cells) & (var > 1e-12))
    if max_genes is not None and len(ok) > max_genes:
        ok = ok[np.argsort(-var[ok], kind="stable")[:max_genes]]
        ok.sort()
    sel_ids = inv_ids[ok]
    g = len(ok)
    col_of = {int(v): k for k, v in enumerate(sel_ids)}
    m, sd = mean[ok], np.sqrt(var[ok])
    # Pass 2..: Gram matrix by blocks of rows, bounded by memory_mb.
    block = max(1, int(memory_mb * 2**20 // (8 * max(g, 1) * 2)))
    srcs, dsts, vals = [], [], []
    for b0 in range(0, g, block):
        b1 = min(g, b0 + block)
        gram = np.zeros((b1 - b0, g))
        for x in _chunks(sources, mapper, col_of, g, chunk_size, normalize):
            xc = x.tocsc()
            gram += (xc[:, b0:b1].T @ xc).toarray()
        cov = gram / n - np.outer(m[b0:b1], m)
        r = cov / np.outer(sd[b0:b1], sd)
        score = np.abs(r) if absolute else r
        rows, cols = np.nonzero(score > threshold)
        keep = (rows + b0) != cols
        rows, cols = rows[keep], cols[keep]
        srcs.append(sel_ids[rows + b0])
        dsts.append(sel_ids[cols])
        vals.append(r[rows, cols].astype(np.float32))
    return CoexprResult(
        np.concatenate(srcs) if srcs else empty,
        np.concatenate(dsts) if dsts else empty,
        np.concatenate(vals) if vals else np.zeros(0, np.float32),
        n,
        g,
        np.sort(inv_ids[nnz > 0]),
    )
