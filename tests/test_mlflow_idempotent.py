"""A cell's MLflow run is keyed by its record id: concurrent and repeated writers reuse it (issue 15)."""

from __future__ import annotations

import json
import multiprocessing as mp
from pathlib import Path

from benchmarks.tracking.mlflow_log import MlflowLogger

REPO = Path(__file__).resolve().parents[1]
PUBLISHED = REPO / "leaderboard" / "results" / "records" / "annotation" / "pbmc68k_reduced" / "majority"


def _record(seed: int) -> dict:
    rec = json.loads(sorted(PUBLISHED.glob("*.json"))[0].read_text())
    rec["seed"] = seed
    rec["record_id"] = f"annotation/pbmc68k_reduced/majority/seed{seed}-{rec['config_hash']}"
    rec["artifacts"] = []
    return rec


def _write(results: str, seeds: list[int]) -> None:
    logger = MlflowLogger(f"sqlite:///{results}/mlflow.db", Path(results))
    for seed in seeds:
        logger.log_record(_record(seed), Path(results))


def _all_runs(results: Path) -> list:
    import mlflow
    from mlflow.entities import ViewType

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{results}/mlflow.db")
    exp = client.get_experiment_by_name("cgcbench/annotation")
    return client.search_runs([exp.experiment_id], run_view_type=ViewType.ALL)


def test_concurrent_writers_share_one_run_per_cell(tmp_path: Path) -> None:
    results = tmp_path / "results"
    results.mkdir()
    _write(str(results), [0])  # create the store and the experiment once
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_write, args=(str(results), [0, 1, 2])) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    _write(str(results), [1])  # a re-run after --resume
    runs = _all_runs(results)
    ids = sorted(r.data.tags["cgcbench.record_id"] for r in runs)
    assert len(ids) == 3 and len(set(ids)) == 3, ids  # 3 cells, 3 runs: none deleted, none doubled
    assert all(r.info.status == "FINISHED" and r.info.lifecycle_stage == "active" for r in runs)
    assert all(r.data.metrics["accuracy"] > 0 for r in runs)


def test_new_sqlite_store_appears_whole_or_not_at_all(tmp_path: Path, monkeypatch) -> None:
    import pytest

    from benchmarks.tracking import mlflow_log

    results = tmp_path / "results"
    results.mkdir()

    def interrupted(src, dst):  # a Ctrl-C at the last step of creating the store
        raise KeyboardInterrupt

    monkeypatch.setattr(mlflow_log.os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        MlflowLogger(f"sqlite:///{results}/mlflow.db", results)
    assert not (results / "mlflow.db").exists(), "a half-built store was left under the final name"
    monkeypatch.undo()
    _write(str(results), [0])  # the next run creates it cleanly
    assert len(_all_runs(results)) == 1
    assert not list(results.glob(".mlflow.db.init-*"))
