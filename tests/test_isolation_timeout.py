"""``--timeout-per-run`` is enforced by the parent's clock and recorded truthfully (issue 15)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from benchmarks.cell import CellJob, execute_isolated
from benchmarks.interface import TaskData
from benchmarks.registry import ModelSpec


class SlowToUnpickle:
    """Sleeps while the child process unpickles it: a cell that takes far too long."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def __reduce__(self) -> tuple:
        return (time.sleep, (self.seconds,))


def _job(tmp_path: Path, payload: dict) -> CellJob:
    staging = tmp_path / "staging"
    staging.mkdir()
    return CellJob(
        suite="annotation",
        suite_quick=True,
        suite_options={},
        spec=ModelSpec("majority"),
        seed=0,
        quick=True,
        model_params={},
        task=TaskData(dataset={"name": "x"}, payload=payload),
        staging=staging,
    )


def test_timeout_kills_within_two_seconds_and_records_true_wall_time(tmp_path: Path) -> None:
    # the slow object comes first and a large array after it: the old code blocked in
    # Process.start() until the child had unpickled everything, so the limit was never checked
    payload = {"slow": SlowToUnpickle(60), "big": np.zeros(4_000_000)}
    limit = 3.0
    t0 = time.monotonic()
    outcome = execute_isolated(_job(tmp_path, payload), timeout=limit)
    elapsed = time.monotonic() - t0
    assert outcome.status == "FAILED" and outcome.error["type"] == "CellTimeout", outcome.error
    assert elapsed < limit + 2.0, f"killed after {elapsed:.1f} s for a {limit} s limit"
    wall = outcome.resources["wall_time_s"]
    assert limit - 0.1 <= wall <= limit + 2.0, outcome.resources
    assert outcome.resources["timed_out"] is True
    assert not list((tmp_path / "staging").iterdir()), "the job file was left behind"
