"""scGPT through PyPI scgpt 0.2.4: torchtext stand-in, every task kind, released layout."""

from __future__ import annotations

import warnings
from pathlib import Path

import anndata as ad
import numpy as np
import pytest
import scipy.sparse as sp
import torch

from baselines._scgpt_compat.torchtext_vocab import Vocab, build_vocab_from_iterator, vocab
from baselines.scgpt_model import ScGPTAdapter
from benchmarks.data.fetch import sha256_file
from benchmarks.interface import TaskKind

pytestmark = pytest.mark.filterwarnings("ignore")

TINY = {"architecture": {"embsize": 32, "nheads": 2, "d_hid": 32, "nlayers": 1},
        "max_seq_len": 64, "batch_size": 32}


def test_torchtext_vocab_stand_in_semantics() -> None:
    from collections import OrderedDict

    v = vocab(OrderedDict([("b", 3), ("a", 2), ("c", 1)]), min_freq=2, specials=["<pad>"])
    assert isinstance(v, Vocab) and v.get_itos() == ["<pad>", "b", "a"]
    assert v["a"] == 2 and "c" not in v and len(v) == 3
    with pytest.raises(RuntimeError):
        v["zzz"]
    v.set_default_index(0)
    assert v(["a", "zzz"]) == [2, 0]
    v.insert_token("x", 1)
    assert v.get_stoi() == {"<pad>": 0, "x": 1, "b": 2, "a": 3}
    w = build_vocab_from_iterator([["g1", "g2"], ["g2"]], specials=["<cls>"])
    assert w.get_itos() == ["<cls>", "g2", "g1"]


def test_scgpt_imports_its_gene_vocab() -> None:
    from baselines.scgpt_model import _scgpt

    scgpt = _scgpt()
    gv = scgpt.tokenizer.GeneVocab(["TP53", "MYC"], specials=["<pad>"])
    assert gv["<pad>"] == 0 and "TP53" in gv
    assert ScGPTAdapter.capabilities.supports(TaskKind.BULK_KNOCKOUT)


@pytest.fixture(scope="module")
def fitted(kang_small) -> ScGPTAdapter:
    model = ScGPTAdapter(seed=0, quick=True, **TINY)
    model.fit(kang_small, batch_key="batch")
    return model


def test_scgpt_scratch_embeddings(fitted, kang_small) -> None:
    assert fitted.init == "scratch" and fitted.checkpoint_sha256 is None
    z = fitted.embed_cells(kang_small)
    assert z.shape == (kang_small.n_obs, 32)
    np.testing.assert_allclose(np.linalg.norm(z, axis=1), 1.0, rtol=1e-5)
    metrics = fitted.extra_metrics()
    assert metrics["gene_coverage_cells"] > 0.8 and np.isfinite(metrics["final_gep_loss"])
    genes = fitted.embed_genes(["CD3D", "LYZ", "NOT_A_GENE"])
    assert list(genes.index) == ["CD3D", "LYZ"] and genes.shape[1] == 32


def test_scgpt_release_layout_round_trip(fitted, kang_small, tmp_path: Path) -> None:
    ckpt = fitted.save_pretrained(tmp_path / "scGPT_human")
    assert {p.name for p in ckpt.iterdir()} == {"args.json", "vocab.json", "best_model.pt"}
    loaded = ScGPTAdapter(seed=0, quick=True, checkpoint=str(ckpt), max_seq_len=64,
                          batch_size=32)
    assert loaded.init == "pretrained"
    assert loaded.checkpoint_sha256 == sha256_file(ckpt / "best_model.pt")
    loaded.fit(kang_small)  # zero-shot with a checkpoint (finetune_epochs=0)
    np.testing.assert_allclose(loaded.embed_cells(kang_small), fitted.embed_cells(kang_small),
                               rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(loaded.embed_genes(["CD3D"]).to_numpy(),
                               fitted.embed_genes(["CD3D"]).to_numpy(), rtol=1e-6)

    # the released whole-human weights were saved from flash-attn layers (``Wqkv`` names)
    flash = tmp_path / "scGPT_human_flash"
    flash.mkdir()
    for name in ("args.json", "vocab.json"):
        (flash / name).write_bytes((ckpt / name).read_bytes())
    state = torch.load(ckpt / "best_model.pt")
    torch.save({k.replace("self_attn.in_proj_", "self_attn.Wqkv."): v for k, v in state.items()},
               flash / "best_model.pt")
    from_flash = ScGPTAdapter(seed=0, quick=True, checkpoint=str(flash), max_seq_len=64,
                              batch_size=32)
    np.testing.assert_allclose(from_flash.embed_cells(kang_small), fitted.embed_cells(kang_small),
                               rtol=1e-4, atol=1e-5)


def test_scgpt_annotation(pbmc_labelled, determinism_probe) -> None:
    rng = np.random.default_rng(0)
    cells = rng.permutation(pbmc_labelled.n_obs)
    ref, query = pbmc_labelled[cells[:150]].copy(), pbmc_labelled[cells[150:200]].copy()
    model = ScGPTAdapter(seed=0, quick=True, finetune_epochs=1, **TINY)
    model.fit_classifier(ref, "bulk_labels")
    pred = model.predict_labels(query)
    assert pred.shape == (50,) and set(pred) <= set(ref.obs["bulk_labels"])
    assert determinism_probe and all(determinism_probe)  # CPU training on deterministic kernels


def test_scgpt_perturbation(norman) -> None:
    train = norman[norman.obs["split"] != "test"].copy()
    model = ScGPTAdapter(seed=0, quick=True, perturb_epochs=1, **TINY)
    model.fit_perturbation(train, condition_key="condition")
    control = norman[norman.obs["condition"] == "ctrl"]
    conds = ["KLF1+ctrl", "FOXL2+HOXB9", "ctrl"]
    pred = model.predict_perturbation(control, conds)
    assert list(pred.index) == conds and list(pred.columns) == list(norman.var_names)
    assert np.isfinite(pred.to_numpy()).all()


def test_scgpt_bulk_knockout(mirror: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        raw = ad.read_h5ad(mirror / "bulk" / "foxa2_ko_panc1.h5ad")
    X = np.nan_to_num(np.asarray(raw.X, dtype=np.float32))
    genes = raw.var_names[np.argsort(-X.var(0))[:300]].union(["FOXA2"])
    sub = raw[:, genes]
    X = np.nan_to_num(np.asarray(sub.X, dtype=np.float32))
    is_ko = ~sub.obs["condition"].str.contains("WT").to_numpy()
    obs = sub.obs.copy()
    obs["state"] = np.where(is_ko, "after", "before")
    obs["pair_id"] = np.concatenate([np.arange(is_ko.size - is_ko.sum()), np.arange(is_ko.sum())])
    obs["ko_gene"] = "FOXA2"
    data = ad.AnnData(sp.csr_matrix(X), obs=obs, var=sub.var.copy())
    data.uns["cgcbench"] = {"dataset": {"expression_kind": "log2_normalized"}}
    model = ScGPTAdapter(seed=0, quick=True, perturb_epochs=2, **TINY)
    model.fit_knockout(data, ko_key="ko_gene")
    before = data[data.obs["state"] == "before"]
    out = model.predict_knockout(before, ["FOXA2"] * before.n_obs)
    assert out.shape == before.shape and np.isfinite(out).all()
