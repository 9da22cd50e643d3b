"""Execute one matrix cell, in this process or isolated in a child process with a time limit.

:func:`execute_cell` builds the adapter, checks the suite's requirements and runs the suite,
turning any exception into a ``FAILED`` outcome. :func:`execute_isolated` runs the same
function in a fresh (``spawn``) child process so that a hard crash, an out-of-memory kill or a
timeout (``--timeout-per-run``) takes down only that cell; the parent measures the child's
resources and records what happened.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing as mp
import os
import pickle
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


CURVES_FILE = "training_curves.json"
"""A cell's loss curves (``{name: [[step, value], ...]}``), from :meth:`ModelAdapter.training_curves`."""


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
        adapter.bind_dataset(job.task.dataset)  # before info(): pre-training must not see these cells
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
        curves = adapter.training_curves()
        if curves:  # logged to MLflow as step metrics by the tracker
            path = Path(job.staging) / CURVES_FILE
            points = {k: [[int(s), float(v)] for s, v in pts] for k, pts in curves.items()}
            path.write_text(json.dumps(points))
            outcome.artifacts.append(path)
        outcome.status = "FINISHED"
    except NotApplicableError as exc:  # an adapter found out late that it cannot run here
        outcome.status, outcome.reason = "NOT_APPLICABLE", str(exc)
    except Exception as exc:  # one cell's failure never stops the matrix
        outcome.status, outcome.error = "FAILED", _error(exc)
    finally:
        outcome.resources = meter.as_dict()
    return outcome


_LIVE_CHILDREN: set[int] = set()
"""Process ids (and process-group ids) of isolated cells now running in this process."""

JOB_FILE = ".cell-job.pickle"
"""The job an isolated cell reads: written by the parent into the cell's own staging directory."""

KILL_GRACE_S = 5.0
"""How long the parent waits for a killed child to be reaped."""


def kill_live_children() -> None:
    """SIGKILL every isolated cell of this process with all the processes it started."""
    for pid in list(_LIVE_CHILDREN):
        for kill in (os.killpg, os.kill):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                kill(pid, signal.SIGKILL)


def _child(job_path: str, conn: Any) -> None:
    with contextlib.suppress(OSError):
        os.setpgid(0, 0)  # its own process group: a kill reaches the workers it starts too
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides about interruptions
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    with open(job_path, "rb") as fh:  # written by our own parent a moment ago
        job = pickle.load(fh)
    conn.send(execute_cell(job))
    conn.close()


def _kill(proc: Any) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(Exception):
        proc.kill()


def execute_isolated(job: CellJob, timeout: float | None) -> CellOutcome:
    """Run :func:`execute_cell` in a spawned child; kill it after ``timeout`` seconds.

    The time limit is enforced by the parent's clock, from just before the child starts: the
    job travels through a file in the cell's staging directory (not through the start-up pipe,
    which would block the parent while the child imports and unpickles), the parent polls the
    result pipe at least every 0.2 s and SIGKILLs the child's whole process group once the limit
    has passed. Resources are those the parent measured; ``wall_time_s`` is the parent's clock,
    also for a killed cell.
    """
    ctx = mp.get_context("spawn")
    job_path = Path(job.staging) / JOB_FILE
    with open(job_path, "wb") as fh:
        pickle.dump(job, fh, protocol=pickle.HIGHEST_PROTOCOL)
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(str(job_path), child), daemon=True)
    label = {"name": job.spec.name, "variant": job.spec.variant, "label": job.spec.label}
    outcome: CellOutcome | None = None
    timed_out = False
    started = time.monotonic()
    deadline = None if timeout is None else started + timeout
    proc.start()
    _LIVE_CHILDREN.add(proc.pid)
    child.close()
    meter = ResourceMeter(pid=proc.pid)
    try:
        with contextlib.ExitStack() as stack:
            with contextlib.suppress(Exception):  # psutil.NoSuchProcess: it is already gone
                stack.enter_context(meter)
            while True:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    timed_out = True
                    break
                if parent.poll(0.2 if remaining is None else min(0.2, remaining)):
                    try:
                        outcome = parent.recv()
                    except (EOFError, OSError):
                        outcome = None
                    break
                if not proc.is_alive():
                    break
    finally:
        if outcome is None and proc.is_alive():
            _kill(proc)
        proc.join(timeout=KILL_GRACE_S)
        _LIVE_CHILDREN.discard(proc.pid)
        job_path.unlink(missing_ok=True)
    elapsed = round(time.monotonic() - started, 3)
    resources = {**meter.as_dict(), "wall_time_s": elapsed}
    if outcome is not None:
        outcome.resources = resources
        return outcome
    if timed_out:
        message = f"timed out after {timeout:g} s (--timeout-per-run); the cell's process was killed"
    elif proc.exitcode is not None and proc.exitcode < 0:
        sig = signal.Signals(-proc.exitcode).name
        hint = " (the kernel's out-of-memory killer sends SIGKILL)" if sig == "SIGKILL" else ""
        message = f"the cell's process died with {sig}{hint}"
    else:
        message = f"the cell's process exited with code {proc.exitcode} without a result"
    err = _error(None, message)
    err["type"] = "CellTimeout" if timed_out else "CellCrashed"
    resources["timed_out"] = timed_out
    return CellOutcome(
        status="FAILED", model=label, params=dict(job.task.params), error=err, resources=resources
    )
