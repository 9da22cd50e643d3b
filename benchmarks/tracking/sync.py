"""Push JSON records to MLflow after the fact (records written with ``--offline``)."""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks.tracking.mlflow_log import MlflowLogger, default_tracking_uri
from benchmarks.tracking.records import SCHEMA, atomic_write_text, read_record


def sync_records(
    results_dir: Path, tracking_uri: str | None, include_logged: bool = False
) -> tuple[int, int]:
    """Log every record lacking an MLflow run id (all with ``include_logged``).

    Each record file is rewritten atomically with the new run's identifiers; logging is
    idempotent per cell (an earlier run of the same record id is replaced).

    Returns
    -------
    tuple[int, int]
        Records logged, records skipped because they were already in MLflow.

    """
    results_dir = results_dir.resolve()
    tracker = MlflowLogger(tracking_uri or default_tracking_uri(results_dir), results_dir)
    tracker.check_reachable()
    logged = skipped = 0
    for path in sorted((results_dir / "records").rglob("*.json")):
        if path.name.startswith("."):
            continue
        record = read_record(path)
        if record.get("mlflow", {}).get("run_id") and not include_logged:
            skipped += 1
            continue
        record["mlflow"] = tracker.log_record(record, results_dir)
        assert record["schema"] == SCHEMA
        atomic_write_text(path, json.dumps(record, indent=2, sort_keys=True, default=str))
        logged += 1
    return logged, skipped
