"""``coexpression``: Pearson co-expression as a gene "embedding" (a control for the GRN suite).

A gene's vector is its standardised (zero-mean, unit-norm) log-normalised expression profile
across cells, so the cosine similarity of two vectors *is* their Pearson correlation: the GRN
suite's edge score becomes plain co-expression. When a task carries an expression matrix
(SERGIO simulations) the profiles come from it (``fit_genes``); otherwise from a local corpus
card (``corpus``, default ``pbmc3k_raw``), which the record names.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from baselines.preprocessing import log_normalized
from benchmarks.interface import Capabilities, GeneEmbeddingMixin, Init, ModelAdapter, TaskKind

GENE_CHUNK = 1024
"""Genes densified at a time by :func:`standardized_profiles`."""


def standardized_profiles(X: Any, chunk: int = GENE_CHUNK) -> tuple[np.ndarray, np.ndarray]:
    """Zero-mean, unit-norm gene profiles of a ``cells × genes`` matrix, in bounded memory.

    Columns are densified ``chunk`` genes at a time (float64, as a dense computation would do
    them), so a sparse matrix of 2,700 × 32,738 never becomes a dense float64 copy; each
    column's arithmetic is the same as on the whole dense matrix.

    Parameters
    ----------
    X
        Dense array or scipy sparse matrix, cells × genes.
    chunk
        Genes per dense block.

    Returns
    -------
    profiles : numpy.ndarray
        ``float32`` ``(n_expressed, n_cells)``: one standardised profile per gene whose
        profile is not constant.
    expressed : numpy.ndarray
        Boolean mask over the columns of ``X`` (the rows of ``profiles``).

    """
    if sp.issparse(X):
        X = sp.csc_matrix(X)
    n_genes = X.shape[1]
    blocks: list[np.ndarray] = []
    expressed = np.zeros(n_genes, dtype=bool)
    for a in range(0, n_genes, chunk):
        block = X[:, a : a + chunk]
        block = np.asarray(block.toarray() if sp.issparse(block) else block, dtype=np.float64)
        block = block - block.mean(axis=0)
        norm = np.linalg.norm(block, axis=0)
        ok = norm > 0
        expressed[a : a + chunk] = ok
        blocks.append((block[:, ok] / norm[ok]).T.astype(np.float32))
    n_cells = X.shape[0]
    return (np.concatenate(blocks) if blocks else np.zeros((0, n_cells), np.float32)), expressed


class CoexpressionAdapter(ModelAdapter, GeneEmbeddingMixin):
    """Standardised expression profiles: cosine similarity equals Pearson correlation.

    Parameters
    ----------
    corpus
        Dataset card used when the task has no expression matrix of its own.
    max_cells
        Cells sampled (seeded) from the expression matrix to bound memory.

    """

    name = "coexpression"
    description = "Control: Pearson co-expression of the task's (or a corpus') expression matrix."
    is_control = True
    capabilities = Capabilities(task_kinds=frozenset({TaskKind.GENE_EMBEDDING}), gene_id_type="symbol")

    def __init__(self, *, corpus: str = "pbmc3k_raw", max_cells: int = 5000, **kwargs: Any) -> None:
        super().__init__(corpus=corpus, max_cells=max_cells, **kwargs)
        self.corpus, self.max_cells = corpus, int(max_cells)
        self.profiles_: pd.DataFrame | None = None
        self.source_: str | None = None

    @property
    def init(self) -> Init:
        """No learned weights."""
        return "none"

    def fit_genes(self, adata: ad.AnnData) -> None:
        """Use the task's own expression matrix."""
        self.profiles_ = self._profiles(adata)
        self.source_ = str(adata.uns.get("cgcbench", {}).get("dataset", {}).get("name", "task"))

    def _profiles(self, adata: ad.AnnData) -> pd.DataFrame:
        if adata.n_obs > self.max_cells:
            keep = np.sort(
                np.random.default_rng(self.seed).choice(adata.n_obs, self.max_cells, replace=False)
            )
            adata = adata[keep]
        X = log_normalized(adata).X
        symbols = adata.var["gene_symbol"] if "gene_symbol" in adata.var else adata.var_names
        Z, expressed = standardized_profiles(X)
        index = pd.Index(np.asarray(symbols, dtype=str)[expressed])
        return pd.DataFrame(Z, index=index).loc[~index.duplicated()]

    def embed_genes(self, genes: Sequence[str], id_type: str = "symbol") -> pd.DataFrame:
        """Profiles of the genes expressed in the expression matrix (others are absent)."""
        if self.profiles_ is None:
            from benchmarks.data.load import load_dataset

            _, adata = load_dataset(self.corpus)
            self.profiles_ = self._profiles(adata)
            self.source_ = self.corpus
        self.params["expression_source"] = self.source_
        wanted = [g for g in dict.fromkeys(map(str, genes)) if g in self.profiles_.index]
        return self.profiles_.loc[wanted]
