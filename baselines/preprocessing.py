"""Expression preprocessing shared by the simple baselines (scanpy)."""

from __future__ import annotations

import anndata as ad
import numpy as np
import scanpy as sc


def expression_kind(adata: ad.AnnData) -> str:
    """The value type the harness recorded for ``adata`` (``counts`` if unknown)."""
    meta = adata.uns.get("cgcbench", {}).get("dataset", {})
    return str(meta.get("expression_kind") or "counts")


def log_normalized(adata: ad.AnnData, target_sum: float = 1e4) -> ad.AnnData:
    """A copy of ``adata`` holding log1p values.

    Counts are normalised to ``target_sum`` per cell and log1p-transformed
    (``scanpy.pp.normalize_total`` + ``scanpy.pp.log1p``); TPM-like linear values are
    log1p-transformed and log2 values rescaled to natural-log log1p
    (:func:`benchmarks.data.expression.convert`); data the harness recorded as already
    log1p-normalised or scaled is returned unchanged (as a copy).
    """
    kind = expression_kind(adata)
    if kind in ("linear_normalized", "log2_normalized"):
        from benchmarks.data.expression import convert

        out = convert(adata, kind, "log1p_normalized")
    else:
        out = adata.copy()
    if kind == "counts":
        sc.pp.normalize_total(out, target_sum=target_sum)
        sc.pp.log1p(out)
    out.X = out.X.astype(np.float32)
    return out


def highly_variable_genes(adata: ad.AnnData, n_top: int) -> np.ndarray:
    """Names of the ``n_top`` most variable genes of log-normalised ``adata`` (Seurat flavour).

    All genes are returned when the data set has no more than ``n_top``. Scaled (z-scored)
    data has lost the mean-dispersion relation the Seurat flavour needs: its genes are ranked
    by variance instead (a clipped z-score's variance still separates informative genes).
    """
    if adata.n_vars <= n_top:
        return adata.var_names.to_numpy()
    if expression_kind(adata) == "scaled":
        X = adata.X
        if hasattr(X, "toarray"):
            X = X.toarray()
        var = np.asarray(X, dtype=np.float64).var(axis=0)
        keep = np.sort(np.argsort(-var, kind="stable")[:n_top])
        return adata.var_names[keep].to_numpy()
    tmp = adata.copy()
    sc.pp.highly_variable_genes(tmp, n_top_genes=n_top, flavor="seurat")
    return tmp.var_names[tmp.var["highly_variable"].to_numpy()].to_numpy()
