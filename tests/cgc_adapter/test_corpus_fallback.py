"""No corpus to be had: CGC pre-trains on the reference cells only, and says so (issue 18).

The machine is made offline (every download fails) with no mirror; the user's cache holds the
vocabulary, TRRUST and the gene positions only — no corpus data set, no gene info, no GO.
"""

from __future__ import annotations

import types
from pathlib import Path

import anndata as ad
import numpy as np
import pytest

import baselines.cgc_model as adapter_mod
import baselines.cgc_pretraining as mod
import benchmarks.data.fetch as fetch
from benchmarks.data.cards import get_card
from benchmarks.errors import CgcbenchError

CACHED_PRIORS = ("cgc_vocab", "trrust_human", "gene_positions_hg38")


@pytest.fixture()
def offline(monkeypatch, tmp_path: Path, shared_data: Path, tiny_config) -> list[list[str]]:
    """Offline, no mirror, only some priors cached; returns the cell names each pre-training got."""
    import cgc.train.pretrain as pretrain_mod

    monkeypatch.setenv("CGCBENCH_MIRRORS", "")
    monkeypatch.setenv("CGCBENCH_DATA_DIR", str(tmp_path / "cache"))

    def no_network(url: str, *args, **kwargs):
        raise OSError(f"{url}: network is unreachable (test: offline)")

    monkeypatch.setattr(fetch, "_pooch_fetch", no_network)
    for name in CACHED_PRIORS:  # what a user fetched earlier
        card = get_card(name)
        fetch.copy_into_cache(shared_data / str(card.files[0].mirror_path), card, card.files[0])
    monkeypatch.setattr(adapter_mod, "load_config", lambda spec: types.SimpleNamespace(model=tiny_config))
    monkeypatch.setattr(mod, "_SAID", set())
    seen: list[list[str]] = []
    real = pretrain_mod.pretrain

    def spy(adatas, *args, **kwargs):
        seen.append([str(n) for a in adatas for n in a.obs_names])
        return real(adatas, *args, **kwargs)

    monkeypatch.setattr(pretrain_mod, "pretrain", spy)
    return seen


def _adapter() -> adapter_mod.CGCAdapter:
    a = adapter_mod.CGCAdapter(seed=0, pretrain_steps=2, text_encoder="hashing:16", classifier_epochs=1,
                               max_steps=4, max_cells=64, batch_size=8, grad_accum=1)
    a.bind_dataset({"name": "pbmc68k_reduced"})
    return a


def test_annotation_pretrains_on_the_reference_cells_only(offline, labelled: ad.AnnData, capsys) -> None:
    reference, query = labelled[:80].copy(), labelled[80:].copy()
    a = _adapter()
    a.fit_classifier(reference, "cell_type")
    pred = a.predict_labels(query)
    assert pred.shape == (query.n_obs,)
    assert offline == [list(reference.obs_names)]  # exactly the reference cells, once
    assert not set(offline[0]) & set(query.obs_names)  # never a query cell
    pre = a.params["pretraining"]
    assert pre["corpus"].startswith("reference cells only (80 reference cells (the annotation training")
    assert pre["corpus_cards"] == [] and pre["excluded_evaluated_datasets"] == ["pbmc68k_reduced"]
    assert set(pre["unavailable_corpus"]) == {"pbmc3k_raw", "kang_pbmc_ctrl_stim"}
    assert "network is unreachable" in pre["unavailable_corpus"]["pbmc3k_raw"]
    # kang is built by its card's recipe from harmony's RData, which cannot be downloaded either
    assert "recipe" in pre["unavailable_corpus"]["kang_pbmc_ctrl_stim"]
    assert "network is unreachable" in pre["unavailable_corpus"]["kang_pbmc_ctrl_stim"]
    assert all("network is unreachable" in why for why in pre["unavailable_priors"].values())
    # no gene info / GO: the text feature is dropped, with the reason, not a crash
    assert set(pre["unavailable_priors"]) == {"gene_info_hs", "gene2go_hs", "go_terms"}
    assert pre["text_features"].startswith("dropped: gene_info_hs")
    assert "text" not in a.model.config.node_features and a.priors.text_dim == 0
    err = capsys.readouterr().err
    assert err.count("corpus data set pbmc3k_raw left out") == 1
    # the cache key covers the cells: the same reference reuses the checkpoint, others do not
    again = _adapter()
    again.fit_classifier(reference, "cell_type")
    assert again.checkpoint_sha256 == a.checkpoint_sha256 and len(offline) == 1
    other = _adapter()
    other.fit_classifier(labelled[40:120].copy(), "cell_type")
    assert other.checkpoint_sha256 != a.checkpoint_sha256 and len(offline) == 2


def test_zero_shot_without_corpus_or_cells_is_a_clear_error(offline) -> None:
    with pytest.raises(CgcbenchError, match=r"no pre-training corpus data set can be had \(pbmc3k_raw: .*"
                                            r"gives CGC no training cells"):
        _adapter().embed_genes(["CD3E"])
    assert offline == []


def test_missing_vocabulary_is_a_clear_error(offline, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("CGCBENCH_DATA_DIR", str(tmp_path / "empty"))
    with pytest.raises(CgcbenchError, match=r"gene vocabulary \(card cgc_vocab\) cannot be had"):
        mod.prior_files()


def test_full_corpus_key_is_unchanged(monkeypatch, tmp_path, tiny_config) -> None:
    """With the corpus available the checkpoint key is the one earlier versions computed."""
    import cgc

    monkeypatch.setenv("CGCBENCH_DATA_DIR", str(tmp_path))
    train = mod.pretrain_settings(5, 16, 1e-3)
    cards = mod.corpus_cards(["pbmc68k_reduced"])
    old = {"kind": "checkpoint", "v": mod.CACHE_VERSION, "cgc": cgc.__version__,
           "corpus": {c: mod._card_sha(c) for c in cards}, "config": tiny_config.to_dict(),
           "train": train.to_dict(), "seed": 0, "n_cells": None, "text": "hashing:16"}
    dest = mod.cache_root() / mod._hash(old)
    (dest / "checkpoint").mkdir(parents=True)
    (dest / "checkpoint" / "MANIFEST.sha256").write_text("")

    def must_not_run(*args, **kwargs):
        raise AssertionError("a cached full-corpus checkpoint needs no availability check")

    monkeypatch.setattr(mod, "prior_files", must_not_run)
    monkeypatch.setattr(mod, "available_corpus", must_not_run)
    got = mod.default_checkpoint(tiny_config, steps=5, text_encoder="hashing:16", exclude=["pbmc68k_reduced"],
                                 reference=ad.AnnData(np.ones((2, 2), dtype=np.float32)))
    assert got == dest
