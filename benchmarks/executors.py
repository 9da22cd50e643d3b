"""Where the cells of a run matrix execute: in this process (default) or as Dask tasks.

``cgcbench run … --executor dask`` makes every matrix cell one ``dask.distributed`` task on

* ``--workers N``: a :class:`~distributed.LocalCluster` of ``N`` worker processes here,
* ``--scheduler tcp://HOST:PORT``: an existing cluster, or
* ``--cluster slurm`` (or ``pbs``, ``sge``, ``lsf``, ``htcondor``): a ``dask_jobqueue`` cluster
  configured from Dask's own configuration files (``~/.config/dask/jobqueue.yaml``).

The client (this process) keeps everything that writes: it checks ``--resume``, creates each
attempt's staging directory on the (shared) results filesystem, and once a task returns it
publishes the artifacts, logs the cell to MLflow and writes the record last and atomically,
exactly as the in-process runner does (:meth:`benchmarks.runner.MatrixRunner.finish_cell`).
A worker only runs :func:`benchmarks.cell.execute_cell` and writes into its staging directory,
so a worker lost mid-cell leaves no record and no MLflow run. Such a cell is resubmitted (fresh
staging directory) up to ``--retries`` times and then recorded ``FAILED`` with the reason.

Resources: each cell asks for ``MEMORY`` (``--memory-per-cell``) where workers advertise it
(the local cluster does: one cell per worker, whose nanny kills the worker past its memory
limit, which fails the cell's attempt) and cells of GPU-capable models ask for ``GPU: 1`` when
some worker advertises a ``GPU`` resource, so a mixed cluster places them on GPU workers.

Dask is imported only when the Dask executor is used.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from benchmarks.errors import InputError

if TYPE_CHECKING:
    from benchmarks.cell import CellJob, CellOutcome
    from benchmarks.runner import MatrixRunner, PreparedTask
    from benchmarks.tracking.mlflow_log import MlflowLogger

EXECUTORS = ("local", "dask")

GPU_MODELS = frozenset({"cgc", "scvi", "scanvi", "scgpt", "geneformer", "gears"})
"""Models that use a GPU when one is visible; an adapter class can say so with ``uses_gpu``."""

EVENT_TOPIC = "cgcbench-cell"
"""Dask event topic on which workers announce ``start``/``end`` of a cell (with their pid)."""


@dataclass(frozen=True)
class ExecutorSpec:
    """How ``cgcbench run`` executes its cells.

    Parameters
    ----------
    kind
        ``"local"`` (in this process, the default) or ``"dask"``.
    workers
        Worker processes of a local cluster (``--workers``), or with ``cluster`` the number
        of workers to request from the batch system.
    scheduler
        Address of a running Dask scheduler (``tcp://HOST:PORT``).
    cluster
        A ``dask_jobqueue`` cluster type (``slurm``, ``pbs``, ``sge``, ``lsf``, ``htcondor``).
    retries
        How often a cell whose worker died is resubmitted before it is recorded ``FAILED``.
    memory_per_cell
        Memory a cell may use (``"4GiB"``); the local cluster gives each worker this limit.

    """

    kind: str = "local"
    workers: int | None = None
    scheduler: str | None = None
    cluster: str | None = None
    retries: int = 2
    memory_per_cell: str | None = None

    @property
    def memory_bytes(self) -> int | None:
        """``memory_per_cell`` in bytes (``None`` when not declared)."""
        if self.memory_per_cell is None:
            return None
        from dask.utils import parse_bytes

        return int(parse_bytes(self.memory_per_cell))


def _dask_flags(spec: ExecutorSpec) -> list[str]:
    given = {
        "--workers": spec.workers is not None,
        "--scheduler": spec.scheduler is not None,
        "--cluster": spec.cluster is not None,
        "--memory-per-cell": spec.memory_per_cell is not None,
    }
    return [flag for flag, on in given.items() if on]


def check_executor(spec: ExecutorSpec) -> None:
    """Check an executor choice before any work: one line naming the flag and the fix.

    Raises
    ------
    InputError
        Unknown executor, Dask options without ``--executor dask``, conflicting targets, Dask
        or ``dask_jobqueue`` not installed, an unreachable scheduler, a batch system whose
        submit command is missing or whose Dask configuration lacks ``cores``/``memory``
        (the checks of :mod:`cgc.train.parallel`).

    """
    if spec.kind not in EXECUTORS:
        raise InputError(f"--executor {spec.kind!r}: expected one of {', '.join(EXECUTORS)}")
    flags = _dask_flags(spec)
    if spec.kind == "local":
        if flags:
            raise InputError(f"{flags[0]} applies to the Dask executor; add --executor dask")
        return
    if spec.retries < 0:
        raise InputError(f"--retries {spec.retries}: expected 0 or more")
    from cgc.errors import CGCError
    from cgc.train import parallel

    try:
        parallel.check_dask()
        if spec.memory_per_cell is not None:
            try:
                size = spec.memory_bytes
            except ValueError:
                size = None
            if not size or size <= 0:
                raise InputError(f"--memory-per-cell {spec.memory_per_cell!r}: expected a size such as 4GiB")
        parallel.check_executor("dask", spec.workers, spec.scheduler, spec.cluster)
    except CGCError as exc:
        raise InputError(str(exc)) from None


def needs_gpu(model_name: str) -> bool:
    """Whether cells of ``model_name`` should be placed on a GPU worker.

    Built-in models: :data:`GPU_MODELS` (no import); a plug-in adapter class says so with a
    ``uses_gpu`` attribute.
    """
    from benchmarks.registry import MODELS, model_class

    if model_name in MODELS:
        return model_name in GPU_MODELS
    try:
        return bool(getattr(model_class(model_name), "uses_gpu", False))
    except Exception:
        return False


def local_gpus() -> int:
    """CUDA devices visible here (0 without torch)."""
    try:
        import torch
    except ImportError:
        return 0
    return int(torch.cuda.device_count())


def local_cluster(n_workers: int, memory_per_cell: int | None = None, **kwargs: Any) -> Any:
    """A ``LocalCluster`` of ``n_workers`` single-threaded worker processes for matrix cells.

    Each worker advertises ``MEMORY`` (its memory limit, ``memory_per_cell`` or an equal share
    of this machine) and ``GPU: 1`` when CUDA devices are visible; its nanny kills it past the
    limit. The scheduler marks a task lost after the first worker death
    (``allowed-failures: 0``): :class:`DaskPool` resubmits it itself, counting attempts.
    Workers are not daemonic, so ``--isolate``/``--timeout-per-run`` can start a child per cell.
    """
    import dask
    import psutil
    from distributed import LocalCluster

    limit = memory_per_cell or int(psutil.virtual_memory().total // n_workers)
    resources: dict[str, float] = {"MEMORY": float(limit)}
    if local_gpus():
        resources["GPU"] = 1.0
    # the client's thread settings, not Dask's OMP_NUM_THREADS=1: a cell gives the same numbers here
    environ = {"MALLOC_TRIM_THRESHOLD_": 65536}
    with dask.config.set(
        {
            # a cell's memory is not Dask data: spilling cannot free it and a worker paused at
            # 80% would wait forever; only the nanny's kill at 95% of the limit applies
            "distributed.worker.memory.target": False,
            "distributed.worker.memory.spill": False,
            "distributed.worker.memory.pause": False,
            "distributed.worker.memory.terminate": 0.95,
            "distributed.scheduler.allowed-failures": 0,
            "distributed.worker.daemon": False,
            "distributed.nanny.pre-spawn-environ": environ,
        }
    ):
        return LocalCluster(
            n_workers=n_workers,
            threads_per_worker=1,
            processes=True,
            memory_limit=limit,
            resources=resources,
            dashboard_address=kwargs.pop("dashboard_address", ":0"),
            **kwargs,
        )


def run_cell_task(
    job: CellJob, record_id: str, isolate: bool, timeout: float | None, task: str = ""
) -> tuple[Any, dict]:
    """Body of one Dask task: run a cell on this worker, announce start and end.

    The announcements (topic :data:`EVENT_TOPIC`, with the task key and the worker's pid) let
    the client tell a cell that died running from one that died waiting in a lost worker's
    queue, which is resubmitted without counting as an attempt.

    Returns the :class:`~benchmarks.cell.CellOutcome` and where it ran (worker address,
    host, pid). Writes only into the job's staging directory.
    """
    from distributed import get_worker

    from benchmarks.cell import execute_cell, execute_isolated

    where: dict[str, Any] = {"host": socket.gethostname(), "pid": os.getpid()}
    worker = None
    with contextlib.suppress(ValueError):
        worker = get_worker()
        where["worker"] = worker.address
    if worker is not None:
        worker.log_event(EVENT_TOPIC, {"event": "start", "record_id": record_id, "task": task, **where})
    outcome = execute_isolated(job, timeout) if isolate else execute_cell(job)
    if worker is not None:
        worker.log_event(EVENT_TOPIC, {"event": "end", "record_id": record_id, "task": task, **where})
    return outcome, where


@dataclass
class _Pending:
    index: int
    item: PreparedTask
    model: Any
    config: dict[str, Any]
    key: Any
    staging: Any = None
    attempt: int = 0
    started: float = 0.0
    lost: str = ""
    requeued: int = 0


class DaskPool:
    """A Dask client (and the cluster it started) that runs matrix cells; a context manager."""

    def __init__(self, spec: ExecutorSpec, on_notice: Callable[[str], None] | None = None) -> None:
        self.spec = spec
        self.notice = on_notice or (lambda _m: None)
        self.cluster: Any = None
        self.client: Any = None
        self._pids: set[int] = set()

    # -- connection --------------------------------------------------------------------------

    def __enter__(self) -> DaskPool:
        import dask
        from distributed import Client

        if "CGCBENCH_LOG" not in os.environ:  # Dask logs every worker start and stop at INFO
            logging.getLogger("distributed").setLevel(logging.WARNING)
        spec = self.spec
        # a nanny reads this again when it restarts a killed worker: keep it for the pool's life
        self._config = dask.config.set({"distributed.worker.daemon": False})
        try:
            if spec.scheduler is not None:
                self.client = Client(spec.scheduler, timeout="10s")
                where = f"scheduler {spec.scheduler}"
            elif spec.cluster is not None:
                import dask_jobqueue

                from cgc.train.parallel import CLUSTERS

                cls = getattr(dask_jobqueue, CLUSTERS[spec.cluster][0])
                self.cluster = cls()
                self.cluster.scale(n=spec.workers or 1)
                self.client = Client(self.cluster)
                where = f"{spec.cluster} cluster ({spec.workers or 1} worker(s) requested)"
            else:
                n = spec.workers or os.cpu_count() or 1
                self.cluster = local_cluster(n, spec.memory_bytes)
                self.client = Client(self.cluster)
                where = f"local cluster of {n} worker process(es)"
        except InputError:
            self.close()
            raise
        except (OSError, TimeoutError) as exc:
            self.close()
            raise InputError(
                f"--executor dask: cannot reach the cluster ({exc}); check --scheduler"
            ) from None
        self.notice(f"Dask: {where}; dashboard {self.client.dashboard_link}")
        if self.cluster is not None and spec.cluster is not None:
            self.notice("Dask: waiting for the batch system to start a worker …")
        self.client.wait_for_workers(1)
        if self._local:  # our own worker processes: an interrupt kills them with isolated cells
            with contextlib.suppress(Exception):
                self._own_pids(self.client.run(os.getpid).values())
        return self

    @property
    def _local(self) -> bool:
        return self.cluster is not None and self.spec.cluster is None

    def _own_pids(self, pids: Any) -> None:
        from benchmarks.cell import _LIVE_CHILDREN

        for pid in pids:
            _LIVE_CHILDREN.add(int(pid))
            self._pids.add(int(pid))

    def __exit__(self, exc_type: object, *exc: object) -> None:
        self.close(timeout=2 if exc_type is not None else None)  # interrupted: leave within seconds

    def close(self, timeout: float | None = None) -> None:
        """Close the client and the cluster this pool started (not an external one)."""
        from benchmarks.cell import _LIVE_CHILDREN

        for pid in self._pids:
            _LIVE_CHILDREN.discard(pid)
        self._pids.clear()
        for thing in (self.client, self.cluster):
            if thing is not None:
                with contextlib.suppress(Exception):
                    thing.close(**({"timeout": timeout} if timeout else {}))
        self.client = self.cluster = None
        config, self._config = getattr(self, "_config", None), None
        if config is not None:
            config.__exit__(None, None, None)

    def _worker_resources(self) -> list[dict[str, Any]]:
        info = self.client.scheduler_info(n_workers=-1)
        return [w for w in info.get("workers", {}).values()]

    def resources_for(self, model_names: set[str]) -> dict[str, dict[str, float]]:
        """The resources each model's cells ask for, checked against the workers present.

        Raises
        ------
        InputError
            ``--memory-per-cell`` exceeds every worker's memory limit.

        """
        workers = self._worker_resources()
        has_memory = any("MEMORY" in (w.get("resources") or {}) for w in workers)
        has_gpu = any("GPU" in (w.get("resources") or {}) for w in workers)
        mem = self.spec.memory_bytes
        if mem is not None and workers:
            largest = max(int(w.get("memory_limit") or 0) for w in workers)
            if largest and mem > largest:
                raise InputError(
                    f"--memory-per-cell {self.spec.memory_per_cell}: more than any worker's memory limit "
                    f"({largest / 2**30:.1f} GiB); lower it or start bigger workers"
                )
        if mem is None and has_memory:
            mem = min(int((w.get("resources") or {}).get("MEMORY", 0)) or 1 << 62 for w in workers)
        out: dict[str, dict[str, float]] = {}
        gpu_models = sorted(m for m in model_names if needs_gpu(m))
        if gpu_models and not has_gpu:
            self.notice(
                f"Dask: no worker advertises a GPU resource; {', '.join(gpu_models)} cells run on CPU workers"
            )
        for name in model_names:
            res: dict[str, float] = {}
            if has_memory and mem:
                res["MEMORY"] = float(mem)
            if has_gpu and name in gpu_models:
                res["GPU"] = 1.0
            out[name] = res
        return out

    # -- the matrix ----------------------------------------------------------------------------

    def run_matrix(
        self, runner: MatrixRunner, prepared: list[PreparedTask], tracker: MlflowLogger | None
    ) -> list[dict[str, Any]]:
        """Run every cell of ``prepared`` × ``runner.specs`` as a task; return records in matrix order."""
        from distributed import as_completed

        cells = [(item, model) for item in prepared for model in runner.specs]
        records: list[dict[str, Any] | None] = [None] * len(cells)
        todo: list[_Pending] = []
        for i, (item, model) in enumerate(cells):
            config, key = runner.cell_identity(item, model)
            done = runner.resumed_record(key)
            if done is not None:
                records[i] = done
            else:
                todo.append(_Pending(i, item, model, config, key))
        if not todo:
            return [r for r in records if r is not None]
        resources = self.resources_for({p.model.name for p in todo})
        req = runner.req
        isolate = req.isolate or req.timeout_per_run is not None
        address = self.client.scheduler.address
        futures: dict[str, tuple[Any, _Pending]] = {}

        def submit(p: _Pending) -> Any:
            p.attempt += 1
            p.staging = runner.new_staging()
            if not p.started:
                p.started = time.time()
                runner.on_progress("start", p.key, None)
            job = runner.job(p.item, p.model, p.staging)
            task = f"cgcbench-cell-{uuid.uuid4().hex}"
            fut = self.client.submit(
                run_cell_task,
                job,
                p.key.record_id,
                isolate,
                req.timeout_per_run,
                task,
                key=task,
                resources=resources[p.model.name] or None,
                pure=False,
            )
            futures[fut.key] = (fut, p)
            return fut

        started: set[str] = set()  # task keys whose cell began on a worker

        def on_event(event: Any) -> None:
            msg = event[1] if isinstance(event, tuple) else event
            if isinstance(msg, dict) and msg.get("event") == "start":
                started.add(msg.get("task", ""))
                if self._local and msg.get("pid"):  # a restarted local worker has a new pid
                    self._own_pids([msg["pid"]])

        self.client.subscribe_topic(EVENT_TOPIC, on_event)
        pending = as_completed([submit(p) for p in todo])
        try:
            for fut in pending:
                _, p = futures.pop(fut.key)
                where: dict[str, Any] = {}
                try:
                    outcome, where = fut.result()
                except Exception as exc:  # the worker died (KilledWorker), or the task could not run
                    shutil.rmtree(p.staging, ignore_errors=True)
                    lost_worker = type(exc).__name__ == "KilledWorker"
                    if lost_worker and p.requeued < MAX_REQUEUE and not _began(fut.key, started):
                        p.requeued += 1  # it was waiting in the dead worker's queue: not an attempt
                        p.attempt -= 1
                        fut.release()
                        pending.add(submit(p))
                        continue
                    p.lost = _lost_reason(exc)
                    if p.attempt <= self.spec.retries:
                        fut.release()
                        n = self.spec.retries
                        self.notice(f"Dask: {p.key.record_id}: {p.lost}; retry {p.attempt}/{n}")
                        pending.add(submit(p))
                        continue
                    outcome = _failed_outcome(p, self.spec.retries)
                fut.release()
                prov = {
                    "isolated": isolate,
                    "executor": {
                        "kind": "dask",
                        "scheduler": address,
                        "attempts": p.attempt,
                        **where,
                        **({"lost": p.lost} if p.lost else {}),
                    },
                }
                records[p.index] = runner.finish_cell(
                    p.item, p.key, p.config, outcome, p.staging, p.started, tracker, prov
                )
        finally:
            with contextlib.suppress(Exception):
                self.client.unsubscribe_topic(EVENT_TOPIC)
            if futures:  # interrupted: cancel what still runs, drop its staging directories
                with contextlib.suppress(Exception):
                    self.client.cancel([fut for fut, _ in futures.values()], force=True)
                for _, p in futures.values():
                    shutil.rmtree(p.staging, ignore_errors=True)
        return [r for r in records if r is not None]


MAX_REQUEUE = 20
"""How often a cell that never began (lost with its worker's queue) is resubmitted, at most."""


def _began(task: str, started: set[str], wait_s: float = 2.0) -> bool:
    """Whether the task announced its start (the event may trail the worker's death a little)."""
    deadline = time.monotonic() + wait_s
    while task not in started and time.monotonic() < deadline:
        time.sleep(0.05)
    return task in started


def _lost_reason(exc: BaseException) -> str:
    from distributed import KilledWorker

    if isinstance(exc, KilledWorker):
        return (
            "the worker running the cell died (killed, or over its memory limit: the nanny "
            "terminates a worker past it)"
        )
    return f"the task could not run ({type(exc).__name__}: {str(exc)[:300]})"


def _failed_outcome(p: _Pending, retries: int) -> CellOutcome:
    from benchmarks.cell import CellOutcome

    label = {"name": p.model.name, "variant": p.model.variant, "label": p.model.label}
    message = f"{p.lost}; tried {p.attempt} time(s) (--retries {retries})"
    return CellOutcome(
        status="FAILED",
        model=label,
        params=dict(p.item.task.params),
        error={"type": "WorkerLost", "message": message, "traceback": ""},
    )
