"""Annotation fine-tuning of the official CGCompass weights (``cgc.checkpoint=FILE``), official recipe.

The release here is a small official-profile model (one Transformer block, one graph layer,
width 16, the release's full 44,859-token vocabulary and 768-d summary-embedding encoder)
with PyTorch's default random initialisation, saved in the release layout
(``torch.save({"model": …official names…})``) with an ``embeding.pickle`` beside it. It is
fine-tuned through the adapter on real labels (pbmc68k_reduced ``bulk_labels``, log-normalised
``.raw``) and scored on held-out cells against the majority control.
"""

from __future__ import annotations

import json
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import torch

from baselines.cgc_model import CGCAdapter
from benchmarks.data.fetch import sha256_file
from cgc.nn.official import OfficialCGC, OfficialConfig
from cgc.official_weights import official_state_dict

N_GENES, PER_CLASS, N_TRAIN = 60, 60, 40


@pytest.fixture(scope="module")
def small_release(tmp_path_factory, shared_data: Path) -> tuple[Path, Path]:
    vocab = json.loads((shared_data / "vocab" / "cgc" / "vocab.json").read_text())
    torch.manual_seed(0)
    model = OfficialCGC(OfficialConfig(ntoken=len(vocab), d_model=16, nhead=2, d_hid=32, nlayers=1,
                                       nlayers_gnn=1))
    root = tmp_path_factory.mktemp("cgc_official_small")
    weights = root / "CGCompass_pretrain_weights.pt"
    torch.save({"model": official_state_dict(model)}, weights)
    rng = np.random.default_rng(0)
    text = pd.Series({i: rng.normal(size=768).astype(np.float32) for i in range(3, len(vocab), 7)})
    text.to_pickle(root / "embeding.pickle")
    return weights, root / "embeding.pickle"


@pytest.fixture(scope="module")
def pbmc_split(pbmc68k_raw: ad.AnnData) -> tuple[ad.AnnData, ad.AnnData]:
    """The 4 commonest bulk_labels, 60 cells each: 40 reference + 20 held-out per type.

    Genes: the 60 most variable of the reference cells (so the CPU test stays short).
    """
    labels = pbmc68k_raw.obs["bulk_labels"].astype(str)
    rng = np.random.default_rng(0)
    train, test = [], []
    for t in labels.value_counts().index[:4]:
        rows = rng.choice(np.flatnonzero(labels == t), PER_CLASS, replace=False)
        train += list(rows[:N_TRAIN])
        test += list(rows[N_TRAIN:])
    ref = pbmc68k_raw[rng.permutation(train)]
    var = np.asarray(ref.X.toarray()).var(0)
    genes = np.sort(np.argsort(-var)[:N_GENES])
    out = []
    for rows in (rng.permutation(train), np.asarray(test)):
        a = pbmc68k_raw[rows, genes].copy()
        a.uns["cgcbench"] = {"dataset": {"name": "pbmc68k_reduced", "expression_kind": "log1p_normalized"}}
        out.append(a)
    return out[0], out[1]


def _adapter(release: tuple[Path, Path], **kw) -> CGCAdapter:
    weights, text = release
    # the official recipe with a shorter warm-up and a larger rate: 10 epochs of 160 cells are
    # 90 updates, where the official 500-update warm-up would never reach the peak rate
    base = {"seed": 0, "checkpoint": str(weights), "official_text": str(text), "classifier_epochs": 10,
            "official_warmup_steps": 10, "official_batch_size": 16, "lr": 5e-3}
    return CGCAdapter(**(base | kw))


def test_official_weights_fine_tune_beat_the_majority_control(small_release, pbmc_split) -> None:
    ref, query = pbmc_split
    adapter = _adapter(small_release)
    adapter.fit_classifier(ref, "bulk_labels")
    pred = adapter.predict_labels(query)
    truth = query.obs["bulk_labels"].astype(str).to_numpy()
    majority = ref.obs["bulk_labels"].astype(str).value_counts().index[0]
    acc, control = float((pred == truth).mean()), float((truth == majority).mean())
    print(f"official fine-tuning: accuracy {acc:.3f}, majority control {control:.3f}")
    assert acc >= control + 0.2, (acc, control, pd.Series(pred).value_counts().to_dict())
    assert len(set(pred)) >= 3  # not one class
    m = adapter.extra_metrics()
    assert m["classifier_final_loss"] < m["classifier_first_loss"] - 10  # 40 × cross-entropy fell
    assert m["classifier_best_val_loss"] < np.log(4) - 0.2
    # provenance: the release file, pre-trained, fine-tuned with the official recipe
    weights, _ = small_release
    assert adapter.init == "pretrained"
    assert adapter.checkpoint_sha256 == sha256_file(weights)
    assert adapter.params["checkpoint_sha256"] == sha256_file(weights)
    assert adapter.params["release"].startswith("CGCompass")
    assert adapter.params["official_mode"] == "fine-tuned (annotation, official recipe)"
    rec = adapter.params["official_finetune"]
    assert rec["mask_ratio"] == 0.4 and rec["n_train_cells"] == len(ref) and rec["n_genes"] > 50
    # cell embeddings now come from the fine-tuned model
    z = adapter.embed_cells(query)
    assert z.shape == (len(query), 16) and np.isfinite(z).all()
    zero_shot = _adapter(small_release).embed_cells(query)
    assert np.abs(z - zero_shot).max() > 1e-3


def test_official_fine_tuning_is_deterministic(small_release, pbmc_split) -> None:
    ref, query = pbmc_split
    short = {"classifier_epochs": 1, "max_steps": 3}
    runs = []
    for seed in (0, 0, 1):
        adapter = _adapter(small_release, seed=seed, **short)
        adapter.fit_classifier(ref, "bulk_labels")
        c = adapter._official_cls
        assert c is not None
        logits = adapter.official().predict_logits(query, c["model"], c["head"], c["cells"])
        runs.append((adapter.predict_labels(query), logits))
    np.testing.assert_array_equal(runs[0][0], runs[1][0])
    np.testing.assert_array_equal(runs[0][1], runs[1][1])
    assert np.abs(runs[0][1] - runs[2][1]).max() > 1e-4  # the seed matters


def test_query_cells_are_binned_on_the_reference_genes(small_release, pbmc_split) -> None:
    ref, query = pbmc_split
    runner = _adapter(small_release).official()
    cells = runner.prepare(ref)
    again = runner.prepare(ref, reference=cells)  # same cells through the query path
    np.testing.assert_array_equal(again.X, cells.X)
    np.testing.assert_array_equal(again.ids, cells.ids)
    # a query without one of the reference genes: that gene is a zero column, and counted
    used = [k for k, g in enumerate(query.var_names) if runner.vocab.get(str(g), -1) in set(cells.ids)]
    drop = query[:, [k for k in range(query.n_vars) if k != used[0]]].copy()
    q = runner.prepare(drop, reference=cells)
    assert q.X.shape == (len(query), len(cells.ids)) and q.n_missing == 1
    assert q.edge_index is cells.edge_index


@pytest.mark.slow
def test_cli_fine_tunes_the_official_release_and_records_it(small_release, tmp_path: Path) -> None:
    """``cgcbench run annotation --models cgc --model-set cgc.checkpoint=FILE …`` (quick settings)."""
    import os
    import subprocess
    import sys

    weights, text = small_release
    repo = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(repo)}
    proc = subprocess.run([sys.executable, "-m", "benchmarks.cli", "run", "annotation", "--models", "cgc",
                           "--datasets", "pbmc68k_reduced", "--quick", "--offline", "--no-plots",
                           "--model-set", f"cgc.checkpoint={weights}",
                           "--model-set", f"cgc.official_text={text}",
                           "--results-dir", str(tmp_path / "res"),
                           "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}"],
                          capture_output=True, text=True, cwd=tmp_path, env=env, timeout=1500)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "fine-tuning (official CGCompass, cell-type classifier): started" in proc.stderr
    records = list((tmp_path / "res" / "records").rglob("*.json"))
    assert len(records) == 1
    rec = json.loads(records[0].read_text())
    assert rec["model"]["init"] == "pretrained"
    assert rec["model"]["checkpoint_sha256"] == sha256_file(weights)
    assert rec["model"]["params"]["official_mode"] == "fine-tuned (annotation, official recipe)"
    assert rec["model"]["params"]["official_finetune"]["lr"] == 1e-4  # the official rate by default
