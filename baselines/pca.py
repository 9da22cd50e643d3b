"""``pca``: the no-integration control for cell embeddings (scanpy).

log-normalise (``normalize_total`` + ``log1p``) → highly variable genes (Seurat flavour) →
``scale`` (clipped at 10) → ``scanpy.pp.pca``, on all cells of the data set together and
without any batch correction. This is the "unintegrated" embedding of the integration
benchmarks: batch-correction methods must beat it on batch mixing while keeping its
biological signal.
"""

from __future__ import annotations

from typing import Any

import anndata as ad
import numpy as np
import scanpy as sc

from baselines.preprocessing import highly_variable_genes, log_normalized
from benchmarks.interface import Capabilities, CellEmbeddingMixin, Init, ModelAdapter, TaskKind


class PCAAdapter(ModelAdapter, CellEmbeddingMixin):
    """Principal components of the scaled, log-normalised highly variable genes.

    Parameters
    ----------
    n_hvg
        Number of highly variable genes (all genes when the data has fewer).
    n_pcs
        Number of principal components (capped at ``min(n_cells, n_genes) - 1``).
    scale
        Scale each gene to unit variance (clipped at 10) before PCA, as in the scanpy tutorial.

    """

    name = "pca"
    description = "Control: log-normalise → HVG → scale → PCA (scanpy), no batch correction."
    is_control = True
    capabilities = Capabilities(
        task_kinds=frozenset({TaskKind.CELL_EMBEDDING}),
        expression_kinds=frozenset({"counts", "log1p_normalized", "scaled"}),
    )

    def __init__(
        self, *, n_hvg: int = 2000, n_pcs: int = 50, scale: bool = True, **kwargs: Any
    ) -> None:
        super().__init__(n_hvg=n_hvg, n_pcs=n_pcs, scale=scale, **kwargs)
        self.n_hvg, self.n_pcs, self.scale = int(n_hvg), int(n_pcs), bool(scale)

    @property
    def init(self) -> Init:
        """PCA has no learned weights to speak of."""
        return "none"

    def embed_cells(self, adata: ad.AnnData) -> np.ndarray:
        """PCA coordinates of the cells of ``adata`` (computed on ``adata`` itself)."""
        norm = log_normalized(adata)
        genes = highly_variable_genes(norm, self.n_hvg)
        sub = norm[:, genes].copy()
        if hasattr(sub.X, "toarray"):
            sub.X = sub.X.toarray()
        if self.scale:
            sc.pp.scale(sub, max_value=10)
        n_comps = max(1, min(self.n_pcs, sub.n_obs - 1, sub.n_vars - 1))
        sc.pp.pca(sub, n_comps=n_comps, random_state=self.seed, svd_solver="arpack")
        return np.asarray(sub.obsm["X_pca"], dtype=np.float32)
