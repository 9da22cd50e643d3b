"""grn: EPR / AUPRC ratio by hand, BEELINE parsing, random and co-expression controls, programs."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.data.cards import get_card
from benchmarks.data.load import load_dataset
from benchmarks.registry import build_model
from benchmarks.suites.grn import GRNSuite, candidate_pairs, edge_metrics


def test_edge_metrics_hand_computed():
    truth = np.array([1, 0, 0, 1, 0, 0, 0, 0, 0, 0])
    scores = np.array([0.9, 0.8, 0.1, 0.2, 0.3, 0.0, -0.1, -0.2, -0.3, -0.4])
    m = edge_metrics(scores, truth, seed=0)
    assert m["density"] == pytest.approx(0.2)
    # K = 2: top-2 pairs are 0 (true) and 1 (false) -> precision 1/2, EPR = 0.5 / 0.2
    assert m["precision_at_k"] == pytest.approx(0.5)
    assert m["epr"] == pytest.approx(2.5)
    # ranking: T F F(0.3) T(0.2) ... -> AP = (1/1 + 2/4) / 2 = 0.75
    assert m["auprc"] == pytest.approx(0.75)
    assert m["auprc_ratio"] == pytest.approx(0.75 / 0.2)
    perfect = edge_metrics(truth.astype(float), truth, seed=0)
    assert perfect["epr"] == pytest.approx(5.0) and perfect["auprc_ratio"] == pytest.approx(5.0)


def test_candidates_exclude_self_pairs():
    t, g = candidate_pairs(["A", "B"], ["A", "B", "C"])
    pairs = {(["A", "B"][i], ["A", "B", "C"][j]) for i, j in zip(t, g, strict=True)}
    assert pairs == {("A", "B"), ("A", "C"), ("B", "A"), ("B", "C")}


@pytest.fixture(scope="module")
def string_task():
    return GRNSuite().prepare(None, get_card("beeline_string_hesc_tfs500"), 0)


def test_beeline_network_is_read(string_task):
    p = string_task.params
    assert p["n_tfs"] == 410 and p["n_genes"] == 910
    assert p["n_true_edges"] > 3000 and 0 < p["density"] < 0.02


def test_random_control_is_at_chance_and_coexpression_beats_it(string_task, tmp_path):
    suite = GRNSuite()
    rand = [
        suite.run(build_model("random", seed=s), string_task, s, tmp_path / f"r{s}").metrics for s in range(3)
    ]
    assert abs(np.mean([m["epr"] for m in rand]) - 1) < 0.2
    assert abs(np.mean([m["auprc_ratio"] for m in rand]) - 1) < 0.1
    coexp = suite.run(build_model("coexpression", seed=0), string_task, 0, tmp_path / "c").metrics
    assert coexp["epr"] > 1.5 and coexp["auprc_ratio"] > 1.3
    assert 0.5 < coexp["coverage"] < 1.0  # PBMC genes cover part of the hESC network
    assert (tmp_path / "c" / "precision_recall.png").is_file()


def test_gene_programs_on_labelled_pbmc(tmp_path):
    card, adata = load_dataset("pbmc68k_reduced")
    suite = GRNSuite()
    task = suite.prepare(adata, card, 0)
    assert task.params["mode"] == "programs"
    rand = suite.run(build_model("random", seed=0), task, 0, tmp_path / "r").metrics
    coexp_model = build_model("coexpression", seed=0)
    coexp_model.fit_genes(adata)
    coexp = suite.run(coexp_model, task, 0, tmp_path / "c").metrics
    assert abs(rand["program_coherence"]) < 0.02
    assert coexp["program_coherence"] > rand["program_coherence"] + 0.02
    assert (tmp_path / "c" / "gene_programs.png").is_file()


def test_sergio_true_network_with_its_own_expression(tmp_path):
    """On SERGIO data the truth is the simulated GRN; co-expression of the task's cells finds it."""
    card, adata = load_dataset("sergio_batches")
    suite = GRNSuite()
    task = suite.prepare(adata, card, 0)
    assert task.params["mode"] == "network" and task.params["n_true_edges"] > 20
    rand = suite.run(build_model("random", seed=0), task, 0, tmp_path / "r").metrics
    coexp = suite.run(build_model("coexpression", seed=0), task, 0, tmp_path / "c").metrics
    assert coexp["coverage"] == 1.0  # fitted on the task's own cells
    assert coexp["auprc_ratio"] > rand["auprc_ratio"] + 0.5
