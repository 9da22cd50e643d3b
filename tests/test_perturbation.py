"""Perturbation suite: GEARS metrics by hand, control bounds, real (Norman) and SERGIO data end to end."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from baselines.perturbation_controls import LinearAdditiveAdapter, NoChangeAdapter, TrainMeanAdapter
from benchmarks.data.cards import parse_card
from benchmarks.data.load import load_anndata, load_dataset
from benchmarks.errors import InputError
from benchmarks.suites.perturbation import (
    PerturbationSuite,
    _gears_frame,
    gears_de_genes,
    gears_formulas,
    perturbation_metrics,
    subgroup_of,
)

pytest.importorskip("gears")
CONTROLS = (NoChangeAdapter, TrainMeanAdapter, LinearAdditiveAdapter)


def toy() -> ad.AnnData:
    """3 control cells, 2 cells of A+ctrl, 2 of B+C; 24 genes (GEARS indexes 20 DE genes)."""
    rng = np.random.default_rng(0)
    base = rng.uniform(0.5, 3.0, size=24)
    shift_a = np.where(np.arange(24) % 3 == 0, 1.5, 0.0)
    shift_bc = np.where(np.arange(24) % 4 == 1, -0.4, 0.2)
    rows = [base + rng.normal(0, 0.1, 24) for _ in range(3)]
    rows += [base + shift_a + rng.normal(0, 0.1, 24) for _ in range(2)]
    rows += [base + shift_bc + rng.normal(0, 0.1, 24) for _ in range(2)]
    obs = pd.DataFrame(
        {"condition": ["ctrl"] * 3 + ["A+ctrl"] * 2 + ["B+C"] * 2}, index=[f"c{i}" for i in range(7)]
    )
    X = np.clip(np.vstack(rows), 0, None).astype(np.float32)
    return ad.AnnData(sp.csr_matrix(X), obs=obs, var=pd.DataFrame(index=[f"g{i}" for i in range(24)]))


def toy_metrics(pred_rows: dict[str, list[float]]):
    adata = toy()
    conds = ["A+ctrl", "B+C"]
    gadata, n_fallback = gears_de_genes(_gears_frame(adata, "condition"), conds)
    assert n_fallback == 0  # two cells each: scanpy's t-test ranks them
    test = adata[adata.obs["condition"] != "ctrl"]
    pred = pd.DataFrame(pred_rows, index=adata.var_names).T.loc[conds]
    metrics, table = perturbation_metrics(
        gadata,
        test.X.toarray().astype(float),
        test.obs["condition"].to_numpy(),
        pred,
        dict.fromkeys(conds, "single"),
    )
    return adata, gadata, metrics, table


def test_subgroups_count_genes_seen_as_single_perturbations():
    seen = {"A", "B"}
    assert subgroup_of("A+ctrl", seen) == "single"
    assert subgroup_of("ctrl+Q", seen) == "single"
    assert subgroup_of("A+B", seen) == "combo_seen2"
    assert subgroup_of("A+Q", seen) == "combo_seen1"
    assert subgroup_of("P+Q", seen) == "combo_seen0"


def test_metrics_match_a_hand_computation():
    X = toy().X.toarray().astype(float)
    pred = {"A+ctrl": X[:3].mean(0) + np.linspace(-1, 1, 24), "B+C": X[:3].mean(0) * 0.9}
    adata, gadata, m, table = toy_metrics(pred)
    ctrl = X[:3].mean(0)
    truth = {"A+ctrl": X[3:5].mean(0), "B+C": X[5:7].mean(0)}
    pos = {g: i for i, g in enumerate(adata.var_names)}
    de = {c: [pos[g] for g in gadata.uns["rank_genes_groups_cov_all"][f"all_{c}_1+1"][:20]] for c in pred}
    mse = {c: np.mean((pred[c] - truth[c]) ** 2) for c in pred}
    mse_de = {c: np.mean((pred[c][de[c]] - truth[c][de[c]]) ** 2) for c in pred}
    r = {c: np.corrcoef(pred[c], truth[c])[0, 1] for c in pred}
    r_delta = {c: np.corrcoef(pred[c] - ctrl, truth[c] - ctrl)[0, 1] for c in pred}
    r_delta_de = {
        c: np.corrcoef(pred[c][de[c]] - ctrl[de[c]], truth[c][de[c]] - ctrl[de[c]])[0, 1] for c in pred
    }
    assert m["mse"] == pytest.approx(np.mean(list(mse.values())), rel=1e-5)
    assert m["mse_de"] == pytest.approx(np.mean(list(mse_de.values())), rel=1e-5)
    assert m["pearson"] == pytest.approx(np.mean(list(r.values())), rel=1e-5)
    assert m["pearson_delta"] == pytest.approx(np.mean(list(r_delta.values())), rel=1e-5)
    assert m["pearson_delta_de"] == pytest.approx(np.mean(list(r_delta_de.values())), rel=1e-5)
    assert table.loc["A+ctrl", "mse"] == pytest.approx(mse["A+ctrl"], rel=1e-5)
    cells = {3: "A+ctrl", 4: "A+ctrl", 5: "B+C", 6: "B+C"}
    cell_mse = np.mean([np.mean((pred[c] - X[i]) ** 2) for i, c in cells.items()])
    assert m["cell_mse"] == pytest.approx(cell_mse, rel=1e-5)
    for c in pred:
        d_pred, d_true = np.sign(pred[c] - ctrl), np.sign(truth[c] - ctrl)
        assert table.loc[c, "frac_correct_direction_all"] == pytest.approx(np.mean(d_pred == d_true))
        assert table.loc[c, "frac_correct_direction_20"] == pytest.approx(
            np.mean(d_pred[de[c]] == d_true[de[c]])
        )


def test_perfect_prediction_bounds_every_metric():
    adata = toy()
    X = adata.X.toarray().astype(float)
    _, _, m, _ = toy_metrics({"A+ctrl": X[3:5].mean(0), "B+C": X[5:7].mean(0)})
    assert m["mse"] == pytest.approx(0, abs=1e-12) and m["mse_de"] == pytest.approx(0, abs=1e-12)
    assert m["pearson"] == pytest.approx(1) and m["pearson_delta"] == pytest.approx(1)
    assert m["frac_correct_direction_all"] == pytest.approx(1)
    assert m["frac_opposite_direction_top20_non_dropout"] == 0
    assert m["n_conditions_no_change"] == 0


def test_no_change_has_undefined_pearson_delta_scored_zero():
    adata = toy()
    ctrl = adata.X.toarray()[:3].mean(0).astype(float) + 1e-12  # float noise must not fake a correlation
    _, _, m, table = toy_metrics({"A+ctrl": ctrl, "B+C": ctrl})
    assert m["n_conditions_no_change"] == 2 and table["no_change_prediction"].all()
    assert m["pearson_delta"] == 0 and m["pearson_delta_de"] == 0
    assert m["frac_correct_direction_all"] < 1


def test_written_out_formulas_equal_gears_on_multi_cell_conditions():
    from gears.inference import deeper_analysis, non_dropout_analysis

    adata = toy()
    gadata, _ = gears_de_genes(_gears_frame(adata, "condition"), ["A+ctrl", "B+C"])
    m = (adata.obs["condition"] == "B+C").to_numpy()
    truth = adata.X.toarray().astype(float)[m]
    pred_mean = truth.mean(0)[::-1].copy()
    ctrl = np.asarray(np.mean(gadata.X[np.where(gadata.obs["condition"] == "ctrl")[0]], axis=0)).ravel()
    de = [gadata.var_names.get_loc(g) for g in gadata.uns["rank_genes_groups_cov_all"]["all_B+C_1+1"][:20]]
    res = {"pert_cat": np.array(["B+C", "B+C"]), "pred": np.tile(pred_mean, (2, 1)), "truth": truth}
    res |= {"pred_de": res["pred"][:, de], "truth_de": truth[:, de]}
    gears = {**deeper_analysis(gadata, res)["B+C"], **non_dropout_analysis(gadata, res)["B+C"]}
    ours = gears_formulas(gadata, ctrl, pred_mean, truth.mean(0), "B+C")
    for key, value in ours.items():
        assert value == pytest.approx(gears[key], abs=1e-9), key


@pytest.fixture(scope="module")
def norman_task():
    card, adata = load_dataset("norman_subset")
    suite = PerturbationSuite(quick=True)
    return suite, suite.prepare(adata, card, seed=0)


def test_norman_declared_split_and_subgroups(norman_task):
    _, task = norman_task
    p = task.params
    assert p["split"] == "declared (split)"
    assert p["n_test_cells"] == 13 and p["n_control_cells"] == 6 and p["n_cells_left_out"] == 6  # val cells
    train_conds = set(task.payload["train"].obs["condition"].astype(str))
    assert not train_conds & set(p["test_conditions"])
    assert sum(p["subgroup_sizes"].values()) == len(p["test_conditions"])
    assert p["n_conditions_de_by_abs_change"] == len(p["test_conditions"])  # one cell per test condition


@pytest.mark.parametrize("cls", CONTROLS, ids=[c.name for c in CONTROLS])
def test_controls_on_norman_end_to_end(norman_task, cls, tmp_path):
    suite, task = norman_task
    result = suite.run(cls(seed=0), task, 0, tmp_path)
    m = result.metrics
    for key in suite.headline_metrics:
        assert np.isfinite(m[key]), key
    assert (tmp_path / "perturbation_scatter.png").stat().st_size > 0
    table = pd.read_csv(tmp_path / "per_condition_metrics.csv", index_col=0)
    assert len(table) == m["n_test_conditions"] == len(task.params["test_conditions"])
    if cls is NoChangeAdapter:
        assert m["pearson_delta"] == 0 and m["n_conditions_no_change"] == m["n_test_conditions"]
    else:
        assert m["n_conditions_no_change"] == 0


def test_runner_records_controls_by_name(tmp_path):
    from benchmarks.registry import register_model, register_suite
    from benchmarks.runner import MatrixRunner, RunRequest

    register_suite("perturbation", "benchmarks.suites.perturbation:PerturbationSuite")
    register_model("no-change", "baselines.perturbation_controls:NoChangeAdapter")
    register_model("linear", "baselines.perturbation_controls:LinearAdditiveAdapter")
    register_model("majority", "baselines.majority:MajorityAdapter")
    req = RunRequest(
        suite="perturbation",
        models=["no-change", "linear", "majority"],
        quick=True,
        results_dir=tmp_path / "res",
    )
    records = {r["model"]["name"]: r for r in MatrixRunner(req).run()}
    assert records["no-change"]["status"] == "FINISHED" and records["linear"]["status"] == "FINISHED"
    assert records["majority"]["status"] == "NOT_APPLICABLE"
    assert records["no-change"]["model"]["is_control"] is True


def test_missing_control_cells_is_an_input_error():
    card, adata = load_dataset("norman_subset")
    adata = adata[adata.obs["condition"] != "ctrl"].copy()
    with pytest.raises(InputError, match="no 'ctrl' cells"):
        PerturbationSuite().prepare(adata, card, 0)


def sergio_perturb_card(**sim):
    return parse_card(
        {
            "name": "tiny_perturb",
            "version": "t",
            "title": "tiny",
            "organism": "human",
            "gene_id_type": "symbol",
            "license": "MIT",
            "kind": "simulated",
            "simulation": {
                "design": "perturb",
                "seed": 1,
                "n_genes": 40,
                "n_single": 6,
                "n_combo": 6,
                "cells_per_condition": 12,
                "n_ctrl_cells": 40,
                "min_ko_descendants": 2,
                **sim,
            },
            "anndata": {"expression": "X", "expression_kind": "counts", "condition_key": "condition"},
        }
    )


def test_controls_on_small_sergio_knockouts_with_gears_simulation_split(tmp_path):
    card = sergio_perturb_card()
    adata = load_anndata(card)
    suite = PerturbationSuite(quick=True)
    task = suite.prepare(adata, card, seed=1)
    assert task.params["split"] == "gears_simulation"
    assert task.params["normalised_by_suite"] and task.dataset["expression_kind"] == "log1p_normalized"
    assert task.params["n_conditions_de_by_abs_change"] == 0
    results = {cls.name: suite.run(cls(seed=1), task, 1, tmp_path / cls.name).metrics for cls in CONTROLS}
    assert results["no-change"]["pearson_delta"] == 0
    # knockouts silence whole programmes: knowing that perturbations move expression helps
    assert results["train-mean"]["pearson_delta"] > 0.1
    assert results["linear"]["n_conditions_scored_by_formula"] == 0


@pytest.mark.slow
def test_controls_on_sergio_perturb_card(tmp_path):
    card, adata = load_dataset("sergio_perturb")
    suite = PerturbationSuite()
    task = suite.prepare(adata, card, seed=0)
    assert sum(task.params["subgroup_sizes"].values()) == len(task.params["test_conditions"])
    m = {cls.name: suite.run(cls(seed=0), task, 0, tmp_path / cls.name).metrics for cls in CONTROLS}
    assert m["no-change"]["pearson_delta"] == 0
    assert m["train-mean"]["pearson_delta"] > 0.2 and m["linear"]["pearson_delta"] > 0.2
