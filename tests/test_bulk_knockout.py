"""Bulk-knockout suite: fold-change classes and metrics by hand, control bounds, real and SERGIO data."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest

from baselines.perturbation_controls import NoChangeAdapter, TrainMeanShiftAdapter
from benchmarks.data.cards import get_card, parse_card
from benchmarks.data.fetch import resolve
from benchmarks.data.load import load_anndata, load_dataset
from benchmarks.errors import InputError
from benchmarks.suites.bulk_knockout import (
    BulkKnockoutSuite,
    classify_3,
    classify_5,
    knockout_metrics,
    pairs_from_profiles,
)

CONTROLS = (NoChangeAdapter, TrainMeanShiftAdapter)


def test_fold_change_classes_at_their_boundaries():
    fc = np.array([6.0, 5.0, 3.0, 2.0, 1.0, 0.5, 0.3, 0.2, 0.1])
    assert classify_3(np.log2(fc), 2.0).tolist() == [
        "up",
        "up",
        "up",
        "unchanged",
        "unchanged",
        "unchanged",
        "down",
        "down",
        "down",
    ]
    assert classify_5(np.log2(fc), 2.0).tolist() == [
        "up_5x",
        "up_2x",
        "up_2x",
        "none",
        "none",
        "none",
        "down_2x",
        "down_2x",
        "down_5x",
    ]
    # natural-log values (log1p data): FC = e ** delta
    assert classify_3(np.log(np.array([2.5, 0.4])), np.e).tolist() == ["up", "down"]


def test_regression_and_classification_match_a_hand_computation():
    before = np.array([[1.0, 1.0, 1.0, 1.0], [2.0, 2.0, 2.0, 2.0]])
    after = np.array([[2.0, 1.0, 0.0, 1.5], [2.0, 4.0, 2.0, 1.0]])  # log2 values
    pred = np.array([[1.5, 1.0, 0.5, 1.0], [2.0, 3.0, 2.5, 2.0]])
    m, tables = knockout_metrics(before, after, pred, base=2.0)
    mse = np.mean([np.mean((pred[i] - after[i]) ** 2) for i in range(2)])
    r = np.mean([np.corrcoef(pred[i], after[i])[0, 1] for i in range(2)])
    rd = np.mean([np.corrcoef(pred[i] - before[i], after[i] - before[i])[0, 1] for i in range(2)])
    assert (
        m["mse"] == pytest.approx(mse)
        and m["pearson"] == pytest.approx(r)
        and m["pearson_delta"] == pytest.approx(rd)
    )
    # observed log2 FC [1, 0, -1, .5] and [0, 2, 0, -1]: FC 2 and 1/2 are "unchanged" (strict > 2, < 1/2),
    # only FC 4 (pair 2, gene 2) is up; predicted changes [.5, 0, -.5, 0], [0, 1, .5, 0] are all unchanged
    true3 = ["unchanged", "unchanged", "unchanged", "unchanged", "unchanged", "up", "unchanged", "unchanged"]
    pred3 = [
        "unchanged",
        "unchanged",
        "unchanged",
        "unchanged",
        "unchanged",
        "unchanged",
        "unchanged",
        "unchanged",
    ]
    assert m["accuracy_3class"] == pytest.approx(np.mean(np.array(true3) == np.array(pred3)))
    assert tables["confusion_3class"].loc["up", "unchanged"] == 1
    assert m["frac_changed_observed"] == pytest.approx(1 / 8)


def test_perfect_and_no_change_bounds():
    rng = np.random.default_rng(0)
    before = rng.normal(5, 1, size=(4, 50))
    after = before + rng.normal(0, 1.5, size=(4, 50))
    perfect, _ = knockout_metrics(before, after, after, base=2.0)
    assert (
        perfect["mse"] == 0
        and perfect["pearson"] == pytest.approx(1)
        and perfect["pearson_delta"] == pytest.approx(1)
    )
    assert (
        perfect["accuracy_3class"] == 1
        and perfect["f1_macro_3class"] == 1
        and perfect["f1_macro_5class"] == 1
    )
    none, _ = knockout_metrics(before, after, before, base=2.0)
    assert none["pearson_delta"] == 0 and none["n_pairs_pearson_delta_undefined"] == 4
    assert none["accuracy_3class"] == pytest.approx(1 - none["frac_changed_observed"])


def test_train_mean_shift_adds_the_mean_training_change():
    genes = ["a", "b"]
    train = pairs_from_profiles(
        np.array([[1.0, 2.0], [3.0, 2.0]]), np.array([[2.0, 2.0], [3.0, 4.0]]), genes, ["a", "b"]
    )
    adapter = TrainMeanShiftAdapter(seed=0)
    adapter.fit_knockout(train)
    before = ad.AnnData(np.array([[0.0, 0.0]], dtype=np.float32), var=pd.DataFrame(index=genes))
    np.testing.assert_allclose(adapter.predict_knockout(before, ["a"]), [[0.5, 1.0]])
    np.testing.assert_allclose(NoChangeAdapter(seed=0).predict_knockout(before, ["a"]), [[0.0, 0.0]])


def load_raw(name: str) -> tuple:
    """A real bulk card read as the loader would, keeping NaN values (the suite's nan_policy handles them)."""
    card = get_card(name)
    path = resolve(card)[card.primary_file.name]
    adata = ad.read_h5ad(path)
    adata.uns["cgcbench"] = {"dataset": card.provenance() | {"path": str(path)}, "condition_key": "condition"}
    return card, adata


def test_foxa2_nan_genes_are_dropped_visibly_or_rejected(shared_data):
    card, adata = load_raw("foxa2_ko_panc1")
    task = BulkKnockoutSuite().prepare(adata, card, 0)
    assert task.params["nan_policy"] == "drop_genes" and task.params["n_genes_dropped_nan"] == 460
    assert task.params["n_genes"] == adata.n_vars - 460 and task.params["log_base"] == "2"
    with pytest.raises(InputError, match="nan_policy=drop_genes"):
        BulkKnockoutSuite(options={"nan_policy": "error"}).prepare(adata, card, 0)


@pytest.mark.parametrize("name,ko", [("pasilla_rnai_knockdown", "FBgn0261552"), ("foxa2_ko_panc1", "FOXA2")])
def test_controls_on_real_knockouts_leave_one_pair_out(shared_data, name, ko, tmp_path):
    card, adata = load_raw(name)
    suite = BulkKnockoutSuite(quick=True)
    task = suite.prepare(adata, card, 0)
    assert task.params["split"] == "leave_one_pair_out" and task.params["n_pairs"] == 3
    assert task.params["ko_genes"] == [ko] and not task.params["ko_genes_missing_from_var"]
    pairs = task.payload["pairs"]
    if name.startswith("pasilla"):  # the RNAi really knocks ps down: FC < 1/2 on the log1p(CPM) scale
        x = pairs[:, ko].X.ravel()
        assert np.all(np.exp(x[1::2] - x[0::2]) < 0.5)
    res = {cls.name: suite.run(cls(seed=0), task, 0, tmp_path / cls.name) for cls in CONTROLS}
    assert res["no-change"].metrics["pearson_delta"] == 0
    assert res["no-change"].metrics["n_pairs_pearson_delta_undefined"] == 3
    assert res["train-mean-shift"].metrics["pearson_delta"] > 0.3  # the same knockout in the other pairs
    assert res["train-mean-shift"].metrics["mse"] < res["no-change"].metrics["mse"]
    for name_ in ("confusion_3class.png", "confusion_5class.png", "per_pair_metrics.csv"):
        assert (tmp_path / "no-change" / name_).stat().st_size > 0


def test_missing_design_is_an_input_error(shared_data):
    card, adata = load_dataset("kang_pbmc_ctrl_stim")
    with pytest.raises(InputError, match="no knockout design"):
        BulkKnockoutSuite().prepare(adata, card, 0)


def test_controls_on_small_sergio_pseudobulk(tmp_path):
    pytest.importorskip("SERGIO")
    card = parse_card(
        {
            "name": "tiny_bulk",
            "version": "t",
            "title": "tiny",
            "organism": "human",
            "gene_id_type": "symbol",
            "license": "MIT",
            "kind": "simulated",
            "simulation": {
                "design": "bulk_ko",
                "seed": 2,
                "n_genes": 40,
                "n_cell_types": 2,
                "n_ko": 5,
                "n_replicates": 2,
                "cells_per_replicate": 8,
                "min_ko_descendants": 2,
            },
            "knockout": {"control": "ctrl", "ko_gene_key": "ko_gene", "pair_by": ["cell_type", "replicate"]},
            "anndata": {"expression": "X", "expression_kind": "counts", "condition_key": "condition"},
        }
    )
    adata = load_anndata(card)
    suite = BulkKnockoutSuite(quick=True)
    task = suite.prepare(adata, card, 0)
    assert task.params["split"] == "by_ko_gene" and task.params["n_pairs"] == 5 * 2 * 2
    pairs = task.payload["pairs"]
    ((train_ids, test_ids),) = task.payload["folds"]
    ko = pairs.obs.drop_duplicates("pair_id").set_index("pair_id")["ko_gene"]
    assert not set(ko[train_ids]) & set(ko[test_ids])  # test knockouts unseen in training
    after = pairs.obs["state"] == "after"
    for pid, gene in ko.items():  # the knocked-out gene's pseudo-bulk collapses
        x_b = pairs[(pairs.obs["pair_id"] == pid) & ~after, gene].X.item()
        x_a = pairs[(pairs.obs["pair_id"] == pid) & after, gene].X.item()
        assert x_a < x_b and x_a == 0
    m = {cls.name: suite.run(cls(seed=0), task, 0, tmp_path / cls.name).metrics for cls in CONTROLS}
    assert m["no-change"]["pearson_delta"] == 0 and m["train-mean-shift"]["pearson_delta"] != 0


@pytest.mark.slow
def test_controls_on_sergio_bulk_card(tmp_path):
    card, adata = load_dataset("sergio_bulk_ko")
    suite = BulkKnockoutSuite()
    task = suite.prepare(adata, card, 0)
    assert task.params["n_pairs"] == 4 * 16 * 3
    m = {cls.name: suite.run(cls(seed=0), task, 0, tmp_path / cls.name).metrics for cls in CONTROLS}
    assert m["no-change"]["pearson_delta"] == 0
    assert m["train-mean-shift"]["f1_macro_3class"] > m["no-change"]["f1_macro_3class"]
