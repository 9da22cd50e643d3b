"""clustering: scib metrics bound by the no-integration and shuffled controls on real PBMC cells."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.data.load import UserKeys, load_dataset
from benchmarks.registry import build_model
from benchmarks.suites.clustering import ClusteringSuite, integration_metrics


def test_perfect_embedding_scores_one_on_bio_metrics():
    rng = np.random.default_rng(0)
    labels = np.repeat(["a", "b", "c"], 60)
    batches = np.tile(["x", "y"], 90)
    centers = {"a": [0, 0], "b": [50, 0], "c": [0, 50]}
    emb = np.array([centers[lab] for lab in labels], dtype=float) + rng.normal(scale=0.5, size=(180, 2))
    m = integration_metrics(emb, labels, batches, seed=0)
    assert m["nmi"] == pytest.approx(1.0) and m["ari"] == pytest.approx(1.0)
    assert m["graph_connectivity"] == pytest.approx(1.0)
    assert m["asw_batch"] > 0.8  # batches randomly mixed within each type
    assert m["overall"] == pytest.approx(
        np.mean([m["nmi"], m["ari"], m["asw_batch"], m["graph_connectivity"]])
    )


@pytest.fixture(scope="module")
def pbmc_phase_task(tmp_path_factory, pbmc68k_raw):
    path = tmp_path_factory.mktemp("d") / "pbmc_phase.h5ad"
    pbmc68k_raw.write_h5ad(path)
    card, adata = load_dataset(str(path), UserKeys(label_key="bulk_labels", batch_key="phase"))
    return ClusteringSuite().prepare(adata, card, 0)


def test_controls_bound_the_metrics(pbmc_phase_task, tmp_path):
    suite = ClusteringSuite()
    pca = suite.run(build_model("pca", seed=0), pbmc_phase_task, 0, tmp_path / "p").metrics
    shuf = suite.run(build_model("shuffled", seed=0), pbmc_phase_task, 0, tmp_path / "s").metrics
    assert pca["nmi"] > 0.5 and pca["ari"] > 0.4
    assert shuf["nmi"] < 0.15 and abs(shuf["ari"]) < 0.05
    assert shuf["asw_batch"] > 0.85  # shuffling mixes batches trivially
    assert pca["overall"] > shuf["overall"] + 0.2
    assert (tmp_path / "p" / "umap.png").is_file()
