"""The co-expression control computed block-wise on sparse data: same profiles as the dense formula."""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp

from baselines.coexpression import CoexpressionAdapter, standardized_profiles
from baselines.preprocessing import log_normalized
from benchmarks.data.load import load_dataset


def _dense_reference(adata) -> pd.DataFrame:
    """The former implementation, verbatim: a dense float64 copy of the whole matrix."""
    X = log_normalized(adata).X
    X = np.asarray(X.toarray() if hasattr(X, "toarray") else X, dtype=np.float64)
    X = X - X.mean(axis=0)
    norm = np.linalg.norm(X, axis=0)
    expressed = norm > 0
    symbols = adata.var["gene_symbol"] if "gene_symbol" in adata.var else adata.var_names
    Z = (X[:, expressed] / norm[expressed]).T.astype(np.float32)
    index = pd.Index(np.asarray(symbols, dtype=str)[expressed])
    return pd.DataFrame(Z, index=index).loc[~index.duplicated()]


def test_blockwise_profiles_equal_the_dense_computation_on_pbmc3k() -> None:
    _, adata = load_dataset("pbmc3k_raw")
    small = adata[:300].copy()  # 300 real cells × all 32,738 genes, sparse counts
    assert sp.issparse(small.X)
    model = CoexpressionAdapter(seed=0, max_cells=1000)
    model.fit_genes(small)
    new, old = model.profiles_, _dense_reference(small)
    assert list(new.index) == list(old.index) and 3000 < len(new) < small.n_vars
    np.testing.assert_allclose(new.to_numpy(), old.to_numpy(), rtol=0, atol=1e-7)
    genes = list(old.index[:50])
    emb = model.embed_genes(genes)
    pearson = np.corrcoef(log_normalized(small)[:, genes].X.toarray().T)
    np.testing.assert_allclose(emb.to_numpy() @ emb.to_numpy().T, pearson, atol=1e-5)


def test_profiles_of_dense_input_and_odd_chunks_match() -> None:
    _, adata = load_dataset("pbmc3k_raw")
    X = log_normalized(adata[:200, :700].copy()).X
    a, ea = standardized_profiles(X, chunk=97)
    b, eb = standardized_profiles(X.toarray(), chunk=1024)
    np.testing.assert_array_equal(ea, eb)
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-7)
    assert a.shape == (int(ea.sum()), 200) and np.allclose(np.linalg.norm(a, axis=1), 1, atol=1e-5)
