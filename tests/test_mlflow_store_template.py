"""A new sqlite MLflow store is copied from a migrated template, not re-migrated per results dir."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.tracking import mlflow_log
from benchmarks.tracking.mlflow_log import MlflowLogger


def test_new_stores_copy_the_migrated_template(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import mlflow

    monkeypatch.setenv("CGCBENCH_DATA_DIR", str(tmp_path / "cache"))
    first = MlflowLogger(f"sqlite:///{tmp_path}/a/mlflow.db", tmp_path / "a")
    template = tmp_path / "cache" / "mlflow" / f"store-{mlflow.__version__}.db"
    assert template.is_file() and (tmp_path / "a" / "mlflow.db").is_file()
    exp = first.experiment_id("annotation")

    real_client = mlflow.MlflowClient

    def no_migration(tracking_uri: str, *a, **k):  # opening a copied store is fine
        assert ".init-" not in tracking_uri, "a store was migrated again instead of copied"
        return real_client(tracking_uri, *a, **k)

    monkeypatch.setattr(mlflow, "MlflowClient", no_migration)
    second = MlflowLogger(f"sqlite:///{tmp_path}/b/mlflow.db", tmp_path / "b")
    assert (tmp_path / "b" / "mlflow.db").is_file()
    assert not list((tmp_path / "b").glob(".mlflow.db.init-*"))
    exp_b = second.experiment_id("annotation")  # an independent, working store
    assert second.client.get_experiment(exp_b).name == first.client.get_experiment(exp).name
    assert mlflow_log._store_template() == template
