"""MLflow runs that compare: a parent run per invocation, a child per cell, dataset inputs,
the git commit, loss curves as step metrics, and an experiment the UI opens on its runs table.
Everything is read back through MlflowClient from a sqlite store (issue 18)."""

from __future__ import annotations

import json
from pathlib import Path

import anndata as ad
import pytest

import cgcbench as cb
from benchmarks.tracking.mlflow_log import MlflowLogger

REPO = Path(__file__).resolve().parents[1]
PUBLISHED = REPO / "leaderboard" / "results" / "records" / "annotation" / "pbmc68k_reduced" / "majority"


def _client(uri: str):
    import mlflow

    return mlflow.MlflowClient(tracking_uri=uri)


def test_one_parent_run_per_invocation_with_a_child_per_cell(tmp_path, pbmc_user_file):
    from mlflow.entities import ViewType

    uri = f"sqlite:///{tmp_path}/store.db"
    results = tmp_path / "res"
    for _ in range(2):  # two invocations: two parents; the cells' runs are reused, not doubled
        df = cb.run("annotation", "majority,pca-logreg", adata=ad.read_h5ad(pbmc_user_file),
                    dataset_name="my_pbmc", label_key="cell_type", seeds=(0,), results_dir=results,
                    tracking_uri=uri)
        assert (df["status"] == "FINISHED").all()
    client = _client(uri)
    exp = client.get_experiment_by_name("cgcbench/annotation")
    assert exp.tags["mlflow.experimentKind"] == "custom_model_development"
    runs = client.search_runs([exp.experiment_id], run_view_type=ViewType.ALL)
    parents = [r for r in runs if r.data.tags.get("cgcbench.kind") == "invocation"]
    cells = [r for r in runs if "cgcbench.record_id" in r.data.tags]
    assert len(parents) == 2 and len(cells) == 2
    assert all(p.info.status == "FINISHED" for p in parents)
    assert parents[0].data.params["models"] == "majority,pca-logreg"
    assert parents[0].data.params["seeds"] == "0"
    latest = max(parents, key=lambda r: r.info.start_time)
    assert {c.data.tags["mlflow.parentRunId"] for c in cells} == {latest.info.run_id}
    rec = json.loads(next((results / "records").rglob("*.json")).read_text())
    commit = rec["provenance"]["git"]["commit"]
    assert all(r.data.tags.get("mlflow.source.git.commit") == commit for r in [*cells, *parents])
    sha = next(iter(rec["dataset"]["sha256"].values()))
    for cell in cells:
        inputs = cell.inputs.dataset_inputs
        assert len(inputs) == 1, "re-logging a cell must not add a second dataset input"
        ds = inputs[0].dataset
        assert ds.name == "my_pbmc" and ds.digest == sha[:36]
        assert json.loads(ds.source)["sha256"] == rec["dataset"]["sha256"]


def test_loss_curves_become_step_metrics_once(tmp_path):
    """A cell's training_curves.json is logged as step metrics; logging the cell again adds nothing."""
    rec = json.loads(sorted(PUBLISHED.glob("*.json"))[0].read_text())
    results = tmp_path / "res"
    art = results / "artifacts" / "cell"
    art.mkdir(parents=True)
    curves = {"finetune_loss": [[1, 2.5], [2, 1.9], [3, 1.4]], "finetune_val_loss": [[1, 2.0], [2, 1.7]]}
    (art / "training_curves.json").write_text(json.dumps(curves))
    rec["artifacts"] = ["artifacts/cell/training_curves.json"]
    uri = f"sqlite:///{tmp_path}/store.db"
    logger = MlflowLogger(uri, results)
    ids = logger.log_record(rec, results)
    logger.log_record(rec, results)
    client = _client(uri)
    hist = client.get_metric_history(ids["run_id"], "finetune_loss")
    assert [(m.step, m.value) for m in sorted(hist, key=lambda m: m.step)] == [(1, 2.5), (2, 1.9), (3, 1.4)]
    assert len(client.get_metric_history(ids["run_id"], "finetune_val_loss")) == 2


def test_cgc_adapter_reports_its_training_curves():
    """The CGC adapter turns its fine-tuning logs into curves (steps numbered from 1)."""
    pytest.importorskip("torch")
    from baselines.cgc_model import CGCAdapter
    from cgc.finetune.train import TrainLog

    adapter = CGCAdapter(seed=0)
    adapter._record("classifier", TrainLog(losses=[1.0, 0.8, 0.5], val_losses=[0.9, 0.7], epochs_run=2))
    curves = adapter.training_curves()
    assert curves["classifier_loss"] == [(1, 1.0), (2, 0.8), (3, 0.5)]
    assert curves["classifier_val_loss"] == [(1, 0.9), (2, 0.7)]
