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
    """A copy of ``adata`` holding log1p(CP10k) values.

    Counts are normalised to ``target_sum`` per cell and log1p-transformed
    (``scanpy.pp.normalize_total`` + ``scanpy.pp.log1p``); data the harness recorded as
    already log-normalised or scaled is returned unchanged (as a copy).
    """
    out = adata.copy()
    if expression_kind(adata) == "counts":
        sc.pp.normalize_total(out, target_sum=target_sum)
        sc.pp.log1p(out)
    out.X = out.X.astype(np.float32)
    return out


def highly_variable_genes(adata: ad.AnnData, n_top: int) -> np.ndarray:
    """Names of the ``n_top`` most variable genes of log-normalised ``adata`` (Seurat flavour).

    All genes are returned when the data set has no more than ``n_top``.
    """
    if adata.n_vars <= n_top:
        return adata.var_names.to_numpy()
    tmp = adata.copy()
    sc.pp.highly_variable_genes(tmp, n_top_genes=n_top, flavor="seurat")
    return tmp.var_names[tmp.var["highly_variable"].to_numpy()].to_numpy()
