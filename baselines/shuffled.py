"""``shuffled``: the no-integration PCA embedding with its rows permuted across cells (a control).

Permuting rows keeps the embedding's marginal distribution but assigns each cell another
cell's coordinates, so any score that depends on which cell is where (NMI, ARI, label
silhouette) drops to chance while batch-mixing scores look perfect. It bounds the clustering
metrics from below on biology and shows what "trivially mixed" looks like.
"""

from __future__ import annotations

import anndata as ad
import numpy as np

from baselines.pca import PCAAdapter


class ShuffledEmbeddingAdapter(PCAAdapter):
    """PCA of the log-normalised input, rows permuted with the run's seed."""

    name = "shuffled"
    description = "Control: the no-integration PCA embedding with rows shuffled across cells."

    def embed_cells(self, adata: ad.AnnData) -> np.ndarray:
        """PCA coordinates of randomly chosen other cells (a seeded permutation)."""
        emb = super().embed_cells(adata)
        return emb[np.random.default_rng(self.seed).permutation(emb.shape[0])]
