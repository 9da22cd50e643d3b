"""``pca-logreg``: log-normalise, highly variable genes, PCA, logistic regression.

The standard non-deep-learning annotation baseline: scanpy for normalisation and HVG
selection, scikit-learn for PCA (fitted on the reference and applied to the query, so the
query never influences the projection) and multinomial logistic regression.
"""

from __future__ import annotations

from typing import Any

import anndata as ad
import numpy as np
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from baselines.preprocessing import highly_variable_genes, log_normalized
from benchmarks.interface import (
    AnnotationMixin,
    Capabilities,
    CellEmbeddingMixin,
    Init,
    ModelAdapter,
    TaskKind,
)


class PCALogRegAdapter(ModelAdapter, AnnotationMixin, CellEmbeddingMixin):
    """Logistic regression on the top principal components of the HVGs.

    Parameters
    ----------
    n_hvg
        Number of highly variable genes (Seurat flavour) selected on the reference.
    n_pcs
        Number of principal components.
    C
        Inverse L2 regularisation strength of the logistic regression.

    """

    name = "pca-logreg"
    description = "log-normalise → HVG → PCA → logistic regression (scanpy + scikit-learn)."
    capabilities = Capabilities(
        task_kinds=frozenset({TaskKind.ANNOTATION, TaskKind.CELL_EMBEDDING}),
        expression_kinds=frozenset({"counts", "log1p_normalized", "scaled"}),
    )

    def __init__(self, *, n_hvg: int = 2000, n_pcs: int = 50, C: float = 1.0, **kwargs: Any) -> None:
        super().__init__(n_hvg=n_hvg, n_pcs=n_pcs, C=C, **kwargs)
        self.n_hvg, self.n_pcs, self.C = int(n_hvg), int(n_pcs), float(C)
        self.genes_: np.ndarray | None = None
        self.scaler_: StandardScaler | None = None
        self.pca_: PCA | None = None
        self.clf_: LogisticRegression | None = None

    @property
    def init(self) -> Init:
        """Trained here, from nothing."""
        return "scratch"

    def _matrix(self, adata: ad.AnnData) -> np.ndarray:
        assert self.genes_ is not None
        missing = np.setdiff1d(self.genes_, adata.var_names)
        if len(missing):
            raise ValueError(
                f"{len(missing)} of the {len(self.genes_)} reference HVGs are absent from the "
                f"data (e.g. {', '.join(missing[:5])}); reference and query need the same genes"
            )
        X = log_normalized(adata[:, self.genes_]).X
        return np.asarray(X.toarray() if hasattr(X, "toarray") else X, dtype=np.float32)

    def _fit_projection(self, adata: ad.AnnData) -> np.ndarray:
        self.genes_ = highly_variable_genes(log_normalized(adata), self.n_hvg)
        X = self._matrix(adata)
        self.scaler_ = StandardScaler(with_mean=True).fit(X)
        n_comps = min(self.n_pcs, X.shape[0] - 1, X.shape[1] - 1)
        self.pca_ = PCA(n_components=n_comps, random_state=self.seed, svd_solver="full")
        return self.pca_.fit_transform(self.scaler_.transform(X))

    def fit(self, adata: ad.AnnData, batch_key: str | None = None) -> None:
        """Fit the HVG selection and PCA on ``adata`` (no labels)."""
        self._fit_projection(adata)

    def embed_cells(self, adata: ad.AnnData) -> np.ndarray:
        """PCA coordinates of the cells (fits the projection on ``adata`` if not yet fitted)."""
        if self.pca_ is None:
            return self._fit_projection(adata)
        assert self.scaler_ is not None
        return self.pca_.transform(self.scaler_.transform(self._matrix(adata)))

    def fit_classifier(self, reference: ad.AnnData, label_key: str) -> None:
        """Fit HVG/PCA on the reference, then the logistic regression on its PCs."""
        Z = self._fit_projection(reference)
        y = reference.obs[label_key].astype(str).to_numpy()
        self.clf_ = LogisticRegression(C=self.C, max_iter=2000, random_state=self.seed)
        self.clf_.fit(Z, y)

    def predict_labels(self, query: ad.AnnData) -> np.ndarray:
        """Project the query with the reference's PCA and predict its labels."""
        if self.clf_ is None:
            raise RuntimeError("PCALogRegAdapter.predict_labels called before fit_classifier")
        return self.clf_.predict(self.embed_cells(query))
