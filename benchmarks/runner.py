"""The run matrix: suite × datasets × models × seeds, one isolated cell at a time.

Every input is validated before the first model trains (model and variant names, datasets,
splits, the tracking store), so bad input costs nothing and writes nothing. After that each
cell is a unit: an exception inside one is recorded as ``FAILED`` with its traceback and the
matrix goes on; an adapter that lacks a capability is recorded as ``NOT_APPLICABLE`` with the
reason. Artifacts are written to a staging directory and moved into place only with their
record, which is written last and atomically.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.cell import CellJob, CellOutcome, execute_cell, execute_isolated
from benchmarks.data.cards import get_card
from benchmarks.data.load import UserKeys, is_user_file, load_dataset
from benchmarks.errors import CgcbenchError, InputError
from benchmarks.executors import ExecutorSpec, check_executor
from benchmarks.interface import Suite, TaskData, config_hash
from benchmarks.registry import ModelSpec, parse_model, suite_class
from benchmarks.tracking.mlflow_log import MlflowLogger, default_tracking_uri, probe_server
from benchmarks.tracking.provenance import git_commit, hardware, package_versions
from benchmarks.tracking.records import CellKey, Record, read_record, record_path, write_record
from benchmarks.validate import check_dataset, check_task, validate_request

log = logging.getLogger(__name__)

ProgressCallback = Callable[[str, CellKey, dict[str, Any] | None], None]
"""Called with ``("start" | "done", key, record or None)`` around each cell."""


@dataclass
class RunRequest:
    """Everything ``cgcbench run`` was asked to do."""

    suite: str
    models: Sequence[str]
    datasets: Sequence[str] = ()
    seeds: Sequence[int] = (0,)
    keys: UserKeys = field(default_factory=UserKeys)
    quick: bool = False
    results_dir: Path = Path("cgcbench-results")
    tracking_uri: str | None = None
    suite_options: dict[str, Any] = field(default_factory=dict)
    model_params: dict[str, dict[str, Any]] = field(default_factory=dict)
    resume: bool = False
    timeout_per_run: float | None = None
    isolate: bool = False
    offline: bool = False
    executor: ExecutorSpec = field(default_factory=ExecutorSpec)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA) for a cell."""
    random.seed(seed)
    np.random.seed(seed)
    try:
        import torch

        torch.manual_seed(seed)
    except ImportError:
        pass


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_staging(results_dir: Path) -> list[Path]:
    """Delete staging and half-moved artifact dirs left by killed runs (not by live ones)."""
    removed = []
    for path in results_dir.glob(".staging-*"):
        parts = path.name.split("-")
        pid = int(parts[1]) if len(parts) > 2 and parts[1].isdigit() else None
        if pid is None or not _pid_alive(pid):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    artifacts = results_dir / "artifacts"
    if artifacts.is_dir():
        for path in artifacts.rglob(".*.incoming-*"):
            pid_text = path.name.rsplit("-", 1)[-1]
            if not pid_text.isdigit() or not _pid_alive(int(pid_text)):
                shutil.rmtree(path, ignore_errors=True)
                removed.append(path)
    return removed


@dataclass
class PreparedTask:
    """A dataset prepared by the suite for one seed."""

    dataset: str
    seed: int
    task: TaskData


class MatrixRunner:
    """Runs a :class:`RunRequest` and returns its records (dicts in the record schema)."""

    def __init__(
        self,
        request: RunRequest,
        on_progress: ProgressCallback | None = None,
        on_notice: Callable[[str], None] | None = None,
    ) -> None:
        request = self.req = validate_request(request)  # every option checked before any work or write
        self.on_progress = on_progress or (lambda *_: None)
        self.on_notice = on_notice  # told what the loader found (expression kind, organism, …)
        self.results_dir = request.results_dir.resolve()
        self.suite: Suite = suite_class(request.suite)(quick=request.quick, options=request.suite_options)
        self.specs: list[ModelSpec] = [parse_model(m) for m in request.models]
        if not self.specs:
            raise CgcbenchError("no models given; pass --models, e.g. --models majority,pca-logreg")
        check_executor(request.executor)  # an unreachable scheduler stops here, before any work
        if any(s.name == "genes" for s in self.specs):  # a bad table stops here, before any work
            from baselines.precomputed import read_gene_table

            path = request.model_params.get("genes", {}).get("path")
            if not path:
                raise InputError("model genes:NAME needs its table: pass --gene-embeddings FILE")
            read_gene_table(path)
        self._static_prov = {
            "git": git_commit(),
            "packages": package_versions(),
            "hardware": hardware(),
        }

    def dataset_names(self) -> list[str]:
        """The datasets to run: the request's, or the suite's (quick) defaults."""
        if self.req.datasets:
            return list(self.req.datasets)
        names = self.suite.quick_datasets if self.req.quick else self.suite.default_datasets
        if not names:
            raise CgcbenchError(f"suite {self.suite.name} has no default datasets; pass --datasets")
        return list(names)

    def prepare(self) -> list[PreparedTask]:
        """Load, validate and split every dataset for every seed (raises on bad input)."""
        prepared = []
        for name in self.dataset_names():
            card = None if is_user_file(name) else get_card(name)
            if card is not None and card.anndata is None:
                adata = None  # tables (gene labels, networks): the suite reads the card's files
            else:
                card, adata = load_dataset(name, self.req.keys, report=self.on_notice)
                check_dataset(adata, self.suite.name)
                self._check_obsm(adata, card.name)
            for seed in self.req.seeds:
                seed_everything(seed)
                try:
                    task = self.suite.prepare(adata, card, seed)
                except CgcbenchError:
                    raise
                except (ValueError, KeyError, IndexError, TypeError) as exc:  # e.g. an impossible split
                    raise InputError(
                        f"dataset {card.name}: suite {self.suite.name} cannot prepare it for seed {seed} "
                        f"({type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}); "
                        "check its size, labels and --set options"
                    ) from exc
                check_task(task, self.suite.name, card.name)
                prepared.append(PreparedTask(card.name, seed, task))
        return prepared

    def _check_obsm(self, adata: Any, name: str) -> None:
        """Every ``obsm:KEY`` model's key is in the data set, one finite row per cell."""
        keys = [s.variant for s in self.specs if s.name == "obsm"]
        if keys:
            from baselines.precomputed import obsm_matrix

            where = str(adata.uns["cgcbench"]["dataset"].get("path") or name)
            for key in keys:
                obsm_matrix(adata, key, where)

    def n_cells(self, prepared: Sequence[PreparedTask]) -> int:
        """How many matrix cells the request has."""
        return len(prepared) * len(self.specs)

    def run(self, on_total: Callable[[int], None] | None = None) -> list[dict[str, Any]]:
        """Validate everything, then run every cell; return the records.

        ``on_total`` is called with the number of cells once the inputs are validated.
        """
        prepared = self.prepare()
        if not self.req.offline:  # an unreachable server is bad input: fail before any write
            probe_server(self.req.tracking_uri or default_tracking_uri(self.results_dir))
        with contextlib.ExitStack() as stack:
            pool = None
            if self.req.executor.kind == "dask":  # connect (or start the cluster) before any write
                from benchmarks.executors import DaskPool

                pool = stack.enter_context(DaskPool(self.req.executor, self.on_notice))
            self.results_dir.mkdir(parents=True, exist_ok=True)
            remove_stale_staging(self.results_dir)
            tracker = None
            if not self.req.offline:
                uri = self.req.tracking_uri or default_tracking_uri(self.results_dir)
                tracker = MlflowLogger(uri, self.results_dir)
                tracker.check_reachable()
            if on_total is not None:
                on_total(self.n_cells(prepared))
            if tracker is not None:  # the invocation's parent run; cells are its children
                tracker.start_invocation(self.suite.name, self._invocation_params(), self._static_prov["git"])
            try:
                if pool is not None:  # one Dask task per cell; records are written here, by the client
                    records = pool.run_matrix(self, prepared, tracker)
                else:
                    records = [self._run_cell(i, spec, tracker) for i in prepared for spec in self.specs]
            except BaseException:
                if tracker is not None:
                    with contextlib.suppress(Exception):
                        tracker.end_invocation("KILLED")
                raise
            if tracker is not None:
                failed = any(r["status"] == "FAILED" for r in records)
                with contextlib.suppress(Exception):  # the records are written; the parent is a summary
                    tracker.end_invocation("FAILED" if failed else "FINISHED")
            return records

    def _invocation_params(self) -> dict[str, Any]:
        """What the parent MLflow run records about this invocation."""
        return {
            "models": ",".join(s.label for s in self.specs),
            "datasets": ",".join(self.dataset_names()),
            "seeds": ",".join(map(str, self.req.seeds)),
            "quick": self.req.quick,
            "suite_options": self.suite.options,
            "model_params": self.req.model_params,
        }

    def _cell_config(self, item: PreparedTask, spec: ModelSpec) -> dict[str, Any]:
        ds = item.task.dataset
        return {
            "suite_config": self.suite.config(),
            "dataset": {
                "name": ds["name"],
                "version": ds.get("version"),
                "sha256": ds.get("sha256"),
            },
            "model": spec.label,
            "model_params": self.req.model_params.get(spec.name, {}),
            "seed": item.seed,
            "task_params": item.task.params,
        }

    def job(self, item: PreparedTask, spec: ModelSpec, staging: Path) -> CellJob:
        """The picklable job of one cell."""
        return CellJob(
            suite=self.suite.name,
            suite_quick=self.suite.quick,
            suite_options=self.suite.options,
            spec=spec,
            seed=item.seed,
            quick=self.req.quick,
            model_params=self.req.model_params.get(spec.name, {}),
            task=item.task,
            staging=staging,
        )

    def cell_identity(self, item: PreparedTask, spec: ModelSpec) -> tuple[dict[str, Any], CellKey]:
        """The config of a cell and the key its record is stored under."""
        config = self._cell_config(item, spec)
        return config, CellKey(self.suite.name, item.dataset, spec.label, item.seed, config_hash(config))

    def resumed_record(self, key: CellKey) -> dict[str, Any] | None:
        """With ``--resume``: the record of a cell already finished with the same config."""
        existing = record_path(self.results_dir, key)
        if self.req.resume and existing.exists():
            rec = read_record(existing)
            if rec["status"] in ("FINISHED", "NOT_APPLICABLE"):
                self.on_progress("skip", key, rec)
                return rec
        return None

    def new_staging(self) -> Path:
        """A fresh staging directory for one attempt at a cell (removed by :meth:`finish_cell`)."""
        return Path(tempfile.mkdtemp(prefix=f".staging-{os.getpid()}-", dir=self.results_dir))

    def _run_cell(self, item: PreparedTask, spec: ModelSpec, tracker: MlflowLogger | None) -> dict[str, Any]:
        config, key = self.cell_identity(item, spec)
        rec = self.resumed_record(key)
        if rec is not None:
            return rec
        self.on_progress("start", key, None)
        started = time.time()
        staging = self.new_staging()
        isolate = self.req.isolate or self.req.timeout_per_run is not None
        try:
            job = self.job(item, spec, staging)
            outcome = execute_isolated(job, self.req.timeout_per_run) if isolate else execute_cell(job)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return self.finish_cell(item, key, config, outcome, staging, started, tracker, {"isolated": isolate})

    def finish_cell(
        self,
        item: PreparedTask,
        key: CellKey,
        config: dict[str, Any],
        outcome: CellOutcome,
        staging: Path,
        started: float,
        tracker: MlflowLogger | None,
        provenance: dict[str, Any],
    ) -> dict[str, Any]:
        """Publish a cell's artifacts, log it to MLflow and write its record (last, atomically).

        ``staging`` is removed; ``provenance`` is merged into the record's provenance (how
        the cell was executed). Called in the process that owns the results directory.
        """
        try:
            if outcome.status == "FAILED" and outcome.error:
                log.error("cell %s failed: %s", key.record_id, outcome.error["message"])
            record = Record(
                key=key,
                status=outcome.status,
                dataset=item.task.dataset,
                model=outcome.model,
                config=config,
                metrics=outcome.metrics,
                params=outcome.params,
                reason=outcome.reason,
                error=outcome.error,
            )
            if outcome.status == "FINISHED":
                record.artifacts = self._publish_artifacts(staging, key, outcome.artifacts)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        record.provenance = {
            **self._static_prov,
            "resources": outcome.resources,
            **provenance,
            "started_at_ms": int(started * 1000),
            "ended_at_ms": int(time.time() * 1000),
        }
        data = record.to_json()
        if tracker is None:
            data["mlflow"] = {"offline": True}
        else:
            try:
                data["mlflow"] = tracker.log_record(data, self.results_dir)
            except Exception as exc:
                data["mlflow"] = {"error": f"{type(exc).__name__}: {exc}"}
        record.mlflow = data["mlflow"]
        write_record(self.results_dir, record)
        self.on_progress("done", key, data)
        return data

    def _publish_artifacts(self, staging: Path, key: CellKey, files: list[Path]) -> list[str]:
        final = self.results_dir / "artifacts" / key.relpath
        if not files:
            return []
        tmp = final.with_name(f".{final.name}.incoming-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        for path in files:
            path = Path(path)
            rel = path.relative_to(staging) if path.is_relative_to(staging) else Path(path.name)
            (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, tmp / rel)
        if final.exists():
            shutil.rmtree(final)
        tmp.rename(final)
        return sorted(str(p.relative_to(self.results_dir)) for p in final.rglob("*") if p.is_file())
