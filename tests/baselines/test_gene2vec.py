"""Gene2vec: trained the Gene2vec way on local data, and the released file layout."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from baselines.gene2vec_model import (
    Gene2vecAdapter,
    coexpression_pairs,
    read_gene2vec,
    write_gene2vec,
)
from benchmarks.data.fetch import sha256_file


def test_coexpression_pairs_finds_correlated_genes() -> None:
    rng = np.random.default_rng(0)
    a = rng.normal(size=200)
    X = np.stack([a, a + 0.1 * rng.normal(size=200), rng.normal(size=200)], 1)
    assert coexpression_pairs(X, ["A", "B", "C"], 0.5, 10) == [["A", "B"]]


@pytest.fixture(scope="module")
def trained() -> Gene2vecAdapter:
    model = Gene2vecAdapter(seed=0, quick=True, source="trained", corpus=["kang_pbmc_ctrl_stim"],
                            dim=32, n_hvg=300, max_cells=1000)
    model.vectors()
    return model


def test_gene2vec_trains_skipgram_on_coexpressed_pairs(trained: Gene2vecAdapter) -> None:
    assert trained.init == "scratch" and trained.params["source"] == "trained"
    assert trained.params["n_pairs"] > 100
    genes = list(trained.vectors().index_to_key[:20]) + ["NOT_A_GENE"]
    emb = trained.embed_genes(genes)
    assert emb.shape == (20, 32) and "NOT_A_GENE" not in emb.index
    assert trained.extra_metrics()["gene_coverage"] == pytest.approx(20 / 21)
    # Ensembl ids are mapped to symbols
    sym = genes[0]
    from baselines.gene_ids import default_mapper

    ens = default_mapper().to_ensembl([sym])[0]
    if ens is not None:
        by_ens = trained.embed_genes([ens], id_type="ensembl")
        np.testing.assert_array_equal(by_ens.iloc[0].to_numpy(), emb.loc[sym].to_numpy())


def test_gene2vec_release_layout_round_trip(trained: Gene2vecAdapter, tmp_path: Path) -> None:
    path = tmp_path / "gene2vec_dim_200_iter_9.txt"
    write_gene2vec(trained.vectors(), path)
    first = path.read_text().splitlines()[0]
    assert "\t" in first and first.endswith(" ")
    loaded = Gene2vecAdapter(seed=0, checkpoint=str(path))
    assert loaded.init == "pretrained" and loaded.params["source"] == "official"
    assert loaded.checkpoint_sha256 == sha256_file(path)
    genes = trained.vectors().index_to_key[:50]
    np.testing.assert_array_equal(loaded.embed_genes(genes).to_numpy(),
                                  trained.embed_genes(genes).to_numpy())
    # the word2vec-format twin reads the same
    w2v = tmp_path / "gene2vec_dim_200_iter_9_w2v.txt"
    trained.vectors().save_word2vec_format(str(w2v))
    np.testing.assert_allclose(read_gene2vec(w2v)[genes[0]], trained.vectors()[genes[0]],
                               rtol=1e-5)
