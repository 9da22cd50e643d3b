"""Pre-processing of expression data (SPEC §2, §4).

QC, normalisation, ``log1p``, per-cell gene sampling, relative value binning and masking.

All random steps take a ``seed`` (an ``int`` or a :class:`numpy.random.Generator`), so the
same seed always gives the same numbers.
"""

from __future__ import annotations

import anndata as ad
import numpy as np
import scipy.sparse as sp

from cgc.errors import CGCError

Seed = int | np.random.Generator


def as_rng(seed: Seed) -> np.random.Generator:
    """Return ``seed`` if it is a Generator, else a new PCG64 Generator seeded with it."""
    return seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)


def qc_filter(
    adata: ad.AnnData,
    min_genes: int = 200,
    min_cells: int = 3,
    max_pct_mito: float | None = None,
    mito_prefix: str = "MT-",
) -> ad.AnnData:
    """Drop low-quality cells and rarely detected genes.

    Parameters
    ----------
    adata
        Raw counts in ``X`` (cells × genes).
    min_genes
        Keep cells with at least this many detected genes.
    min_cells
        Keep genes detected in at least this many cells.
    max_pct_mito
        If given, drop cells whose percentage of counts in genes starting with
        ``mito_prefix`` exceeds it.
    mito_prefix
        Prefix of mitochondrial gene symbols (``"mt-"`` for mouse).

    Returns
    -------
    anndata.AnnData
        A filtered copy.

    """
    x = sp.csr_matrix(adata.X)
    genes_per_cell = np.diff(x.indptr)
    keep_cells = genes_per_cell >= min_genes
    if max_pct_mito is not None:
        mito = np.asarray(adata.var_names.str.upper().str.startswith(mito_prefix.upper()))
        tot = np.asarray(x.sum(1)).ravel()
        mt = np.asarray(x[:, mito].sum(1)).ravel()
        pct = 100 * mt / np.maximum(tot, 1e-12)
        keep_cells &= pct <= max_pct_mito
    cells_per_gene = np.diff(x[keep_cells].tocsc().indptr)
    keep_genes = cells_per_gene >= min_cells
    if not keep_cells.any():
        raise CGCError(
            f"QC removed every cell (min_genes={min_genes}); lower min_genes or check that X "
            "holds raw counts"
        )
    return adata[keep_cells][:, keep_genes].copy()


def normalize_log1p(x: sp.spmatrix | np.ndarray, target_sum: float = 1e4) -> sp.csr_matrix:
    """Scale each cell to ``target_sum`` total counts and apply ``log1p``.

    Parameters
    ----------
    x
        Counts, cells × genes (sparse or dense).
    target_sum
        Library size after normalisation.

    Returns
    -------
    scipy.sparse.csr_matrix
        ``log1p(x / rowsum * target_sum)`` (float32; rows with zero counts stay zero).

    """
    x = sp.csr_matrix(x, dtype=np.float64, copy=True)
    tot = np.asarray(x.sum(1)).ravel()
    scale = np.divide(target_sum, tot, out=np.zeros_like(tot), where=tot > 0)
    x.data *= np.repeat(scale, np.diff(x.indptr))
    np.log1p(x.data, out=x.data)
    return x.astype(np.float32)


def normalize_as(x: sp.spmatrix | np.ndarray, normalize: str = "auto") -> sp.csr_matrix:
    """Return ``x`` as float32 CSR, normalised as asked.

    ``"auto"`` applies total-count + ``log1p`` when ``x`` holds counts and leaves it as is
    otherwise; ``"total"`` always does that, ``"log1p"`` only log-transforms, ``"none"``
    leaves the values unchanged.
    """
    x = sp.csr_matrix(x, dtype=np.float32)
    mode = ("total" if looks_like_counts(x) else "none") if normalize == "auto" else normalize
    if mode == "total":
        return normalize_log1p(x)
    if mode == "log1p":
        x = x.copy()
        np.log1p(x.data, out=x.data)
        return x
    if mode != "none":
        raise ValueError(f"normalize={normalize!r}; use 'auto', 'total', 'log1p' or 'none'")
    return x


def first_mapped_columns(ids: np.ndarray) -> np.ndarray:
    """Sorted column indices with a vocabulary id (``>= 0``), keeping the first of duplicates."""
    cols = np.flatnonzero(ids >= 0)
    _, first = np.unique(ids[cols], return_index=True)
    return np.sort(cols[first])


def highly_variable(s1: np.ndarray, s2: np.ndarray, n: int, n_top: int) -> np.ndarray:
    """Pick the ``n_top`` genes of highest variance from streamed moments.

    Parameters
    ----------
    s1, s2
        Per-gene sums of values and of squared values (log-normalised) over ``n`` cells.
    n
        Number of cells.
    n_top
        Number of genes kept (SPEC: 10,000 per experiment).

    Returns
    -------
    numpy.ndarray
        Sorted column positions of the selected genes.

    """
    var = s2 / max(n, 1) - (s1 / max(n, 1)) ** 2
    if len(var) <= n_top:
        return np.arange(len(var))
    return np.sort(np.argsort(-var, kind="stable")[:n_top])


def looks_like_counts(x: sp.spmatrix | np.ndarray, n: int = 10000) -> bool:
    """Return ``True`` if the (first ``n``) stored values are non-negative integers."""
    data = x.data if sp.issparse(x) else np.asarray(x).ravel()
    data = np.asarray(data[:n])
    return bool(data.size == 0 or ((data >= 0).all() and np.allclose(data, np.round(data))))


def sample_genes(values: np.ndarray, max_genes: int = 1200, seed: Seed = 0,
                 mode: str = "weighted") -> np.ndarray:
    """Choose at most ``max_genes`` of one cell's non-zero genes.

    Parameters
    ----------
    values
        Expression values of the cell's genes (zeros are never chosen).
    max_genes
        Maximum number of genes returned.
    seed
        Seed or Generator (unused for ``mode="top"``).
    mode
        ``"weighted"``: without replacement with probability proportional to the value
        (Efraimidis–Spirakis keys); ``"top"``: the highest values; ``"uniform"``.

    Returns
    -------
    numpy.ndarray
        Sorted positions into ``values``.

    """
    nz = np.flatnonzero(values > 0)
    if len(nz) <= max_genes:
        return nz
    if mode == "top":
        pick = nz[np.argsort(-values[nz], kind="stable")[:max_genes]]
    else:
        rng = as_rng(seed)
        u = rng.random(len(nz))
        keys = np.log(u) / values[nz] if mode == "weighted" else u
        pick = nz[np.argpartition(-keys, max_genes - 1)[:max_genes]]
    return np.sort(pick)


def bin_values(values: np.ndarray, n_bins: int = 51) -> np.ndarray:
    """Bin one cell's values into relative bins ``0..n_bins-1`` (scGPT style).

    Zeros go to bin 0; non-zero values go to bins ``1..n_bins-1``, the ``n_bins - 1``
    equal-mass quantile bins of the cell's non-zero values (ties share a bin), so the result
    depends only on the ranks within the cell.

    Parameters
    ----------
    values
        Non-negative expression values of one cell.
    n_bins
        Number of bins (SPEC: 51).

    Returns
    -------
    numpy.ndarray
        ``int64`` bins, same shape as ``values``.

    """
    out = np.zeros(values.shape, dtype=np.int64)
    nz = values > 0
    if not nz.any():
        return out
    v = values[nz]
    # n_bins - 1 equal-mass bins for non-zero values: n_bins - 2 interior quantile edges.
    edges = np.quantile(v, np.linspace(0, 1, n_bins))[1:-1]
    out[nz] = np.digitize(v, edges, right=True) + 1
    return out


def mask_values(binned: np.ndarray, ratio: float = 0.4, seed: Seed = 0,
                mask_value: float = -1.0) -> tuple[np.ndarray, np.ndarray]:
    """Mask ``round(ratio × n)`` of one cell's values (at least one if ``n > 1``).

    Parameters
    ----------
    binned
        The cell's (binned) values.
    ratio
        Fraction masked (SPEC: 0.4).
    seed
        Seed or Generator.
    mask_value
        Value written at masked positions.

    Returns
    -------
    masked : numpy.ndarray
        ``float32`` copy of ``binned`` with ``mask_value`` at masked positions.
    mask : numpy.ndarray
        Boolean, ``True`` where masked.

    """
    n = len(binned)
    k = int(round(ratio * n))
    if ratio > 0 and n > 1:
        k = max(k, 1)
    mask = np.zeros(n, dtype=bool)
    if k:
        mask[as_rng(seed).choice(n, size=k, replace=False)] = True
    masked = binned.astype(np.float32)
    masked[mask] = mask_value
    return masked, mask


def prepare_cell(
    gene_ids: np.ndarray,
    values: np.ndarray,
    max_genes: int = 1200,
    n_bins: int = 51,
    mask_ratio: float = 0.4,
    seed: Seed = 0,
    sample_mode: str = "weighted",
    mask_value: float = -1.0,
) -> dict[str, np.ndarray]:
    """Sample, bin and mask one cell (the per-cell pipeline of pre-training).

    Parameters
    ----------
    gene_ids
        Vocabulary ids of the cell's genes.
    values
        Their normalised, log-transformed expression (zeros are dropped).
    max_genes, n_bins, mask_ratio, sample_mode, mask_value
        See :func:`sample_genes`, :func:`bin_values`, :func:`mask_values`.
    seed
        Seed or Generator for sampling and masking.

    Returns
    -------
    dict
        ``genes`` (int64), ``input`` (float32 model input, masked), ``target`` (float32
        binned values) and ``mask`` (bool).

    """
    rng = as_rng(seed)
    pick = sample_genes(values, max_genes, rng, sample_mode)
    binned = bin_values(values[pick], n_bins)
    if mask_ratio > 0:
        masked, mask = mask_values(binned, mask_ratio, rng, mask_value)
    else:
        masked, mask = binned.astype(np.float32), np.zeros(len(pick), dtype=bool)
    return {
        "genes": np.asarray(gene_ids)[pick].astype(np.int64),
        "input": masked,
        "target": binned.astype(np.float32),
        "mask": mask,
    }
