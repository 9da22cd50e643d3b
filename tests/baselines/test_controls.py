"""The two controls: ``random`` (gene + cell embeddings) and ``pca`` (cell embeddings)."""

from __future__ import annotations

import numpy as np

from baselines.pca import PCAAdapter
from baselines.random_embedding import RandomEmbeddingAdapter
from benchmarks.interface import TaskKind
from benchmarks.registry import build_model


def test_random_gene_embedding_is_deterministic_per_gene_and_seed() -> None:
    model = RandomEmbeddingAdapter(seed=3, dim=16)
    a = model.embed_genes(["TP53", "GATA1", "MYC"])
    b = model.embed_genes(["MYC", "TP53"])
    assert a.shape == (3, 16) and list(a.index) == ["TP53", "GATA1", "MYC"]
    np.testing.assert_array_equal(a.loc["MYC"].to_numpy(), b.loc["MYC"].to_numpy())
    np.testing.assert_array_equal(a.loc["TP53"].to_numpy(), b.loc["TP53"].to_numpy())
    other = RandomEmbeddingAdapter(seed=4, dim=16).embed_genes(["TP53"])
    assert not np.allclose(other.loc["TP53"].to_numpy(), a.loc["TP53"].to_numpy())
    assert model.init == "none" and model.is_control


def test_random_cell_embedding(kang_small) -> None:
    model = build_model("random", seed=0, quick=True)
    assert model.capabilities.supports(TaskKind.CELL_EMBEDDING)
    z = model.embed_cells(kang_small)
    assert z.shape == (kang_small.n_obs, 50) and np.isfinite(z).all()
    z2 = model.embed_cells(kang_small[::-1])
    np.testing.assert_array_equal(z[::-1], z2)


def test_pca_embeds_counts_and_records_no_weights(kang_small) -> None:
    model = build_model("pca", seed=0, quick=True, n_hvg=200, n_pcs=10)
    assert isinstance(model, PCAAdapter)
    model.fit(kang_small, batch_key="batch")
    z = model.embed_cells(kang_small)
    assert z.shape == (kang_small.n_obs, 10) and np.isfinite(z).all()
    # principal components are uncorrelated with decreasing variance
    var = z.var(0)
    assert np.all(np.diff(var) <= 1e-4)
    assert model.init == "none" and model.info().params["n_hvg"] == 200
