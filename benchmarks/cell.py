"""Execute one matrix cell, in this process or isolated in a child process with a time limit.

:func:`execute_cell` builds the adapter, checks the suite's requirements and runs the suite,
turning any exception into a ``FAILED`` outcome. :func:`execute_isolated` runs the same
function in a fresh (``spawn``) child process so that a hard crash, an out-of-memory kill or a
timeout (``--timeout-per-run``) takes down only that cell; the parent measures the child's
resources and records what happened.
"""

from __future__ import annotations

import multiprocessing as mp
import signal
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.data.preflight import preflight
from benchmarks.errors import NotApplicableError
from benchmarks.interface import TaskData, model_info_dict
from benchmarks.registry import ModelSpec, build_model, suite_class
from benchmarks.tracking.provenance import ResourceMeter


@dataclass
class CellJob:
    """Everything a cell needs; picklable so it can cross into a child process."""

    suite: str
    suite_quick: bool
    suite_options: dict[str, Any]
    spec: ModelSpec
    seed: int
    quick: bool
    model_params: dict[str, Any]
    task: TaskData
    staging: Path


@dataclass
class CellOutcome:
    """What a cell produced (artifacts still in the staging directory)."""

    status: str
    model: dict[str, Any]
    metrics: dict[str, float] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    artifacts: list[Path] = field(default_factory=list)
    reason: str | None = None
    error: dict[str, str] | None = None
    resources: dict[str, Any] = field(default_factory=dict)


def _error(exc: BaseException | None, message: str | None = None) -> dict[str, str]:
    return {
        "type": type(exc).__name__ if exc else "CellAborted",
        "message": (message or str(exc))[:2000],
        "traceback": traceback.format_exc() if exc else "",
    }


def execute_cell(job: CellJob, meter: ResourceMeter | None = None) -> CellOutcome:
    """Run one cell in this process; exceptions become a ``FAILED`` outcome."""
    from benchmarks.runner import seed_everything

    meter = meter or ResourceMeter()
    label = {"name": job.spec.name, "variant": job.spec.variant, "label": job.spec.label}
    outcome = CellOutcome(status="FAILED", model=label, params=dict(job.task.params))
    try:
        seed_everything(job.seed)
        suite = suite_class(job.suite)(quick=job.suite_quick, options=job.suite_options)
        adapter = build_model(job.spec, seed=job.seed, quick=job.quick, **job.model_params)
        outcome.model = model_info_dict(adapter.info())
        check = preflight(suite, adapter, job.task)  # before any work: no fit, no pre-training
        outcome.params.update(check.params)
        if check.reason is not None:
            outcome.status, outcome.reason = "NOT_APPLICABLE", check.reason
            return outcome
        with meter:
            result = suite.run(adapter, check.task, job.seed, job.staging)
        outcome.model = model_info_dict(adapter.info())  # init/checkpoint are known after fitting
        outcome.metrics = dict(result.metrics) | adapter.extra_metrics()
        outcome.params = {**job.task.params, **check.params, **result.params}
        outcome.artifacts = [Path(a.path) for a in result.artifacts if Path(a.path).is_file()]
        outcome.status = "FINISHED"
    except NotApplicableError as exc:  # an adapter found out late that it cannot run here
        outcome.status, outcome.reason = "NOT_APPLICABLE", str(exc)
    except Exception as exc:  # one cell's failure never stops the matrix
        outcome.status, outcome.error = "FAILED", _error(exc)
    finally:
        outcome.resources = meter.as_dict()
    return outcome


def _child(job: CellJob, conn: Any) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides about interruptions
    conn.send(execute_cell(job))
    conn.close()


def execute_isolated(job: CellJob, timeout: float | None) -> CellOutcome:
    """Run :func:`execute_cell` in a spawned child; kill it after ``timeout`` seconds."""
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(job, child), daemon=True)
    label = {"name": job.spec.name, "variant": job.spec.variant, "label": job.spec.label}
    started = time.monotonic()
    proc.start()
    child.close()
    meter = ResourceMeter(pid=proc.pid)
    outcome: CellOutcome | None = None
    try:
        with meter:
            deadline = None if timeout is None else started + timeout
            while True:
                remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
                if parent.poll(min(1.0, remaining) if remaining is not None else 1.0):
                    try:
                        outcome = parent.recv()
                    except EOFError:
                        outcome = None
                    break
                if not proc.is_alive():
                    break
                if deadline is not None and time.monotonic() >= deadline:
                    break
    finally:
        if proc.is_alive() and outcome is None:
            proc.kill()
        proc.join(timeout=30)
    if outcome is not None:
        outcome.resources = meter.as_dict()
        return outcome
    if proc.exitcode is not None and proc.exitcode < 0:
        sig = signal.Signals(-proc.exitcode).name
        hint = " (the kernel's out-of-memory killer sends SIGKILL)" if sig == "SIGKILL" else ""
        elapsed = time.monotonic() - started
        timed_out = timeout is not None and elapsed >= timeout
        message = (
            f"timed out after {timeout:g} s (--timeout-per-run); the cell's process was killed"
            if timed_out
            else f"the cell's process died with {sig}{hint}"
        )
    else:
        message = f"the cell's process exited with code {proc.exitcode} without a result"
    err = _error(None, message)
    err["type"] = "CellTimeout" if "timed out" in message else "CellCrashed"
    return CellOutcome(
        status="FAILED", model=label, params=dict(job.task.params), error=err, resources=meter.as_dict()
    )
