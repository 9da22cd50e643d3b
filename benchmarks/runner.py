"""The run matrix: suite × datasets × models × seeds, one isolated cell at a time.

Every input is validated before the first model trains (model and variant names, datasets,
splits, the tracking store), so bad input costs nothing and writes nothing. After that each
cell is a unit: an exception inside one is recorded as ``FAILED`` with its traceback and the
matrix goes on; an adapter that lacks a capability is recorded as ``NOT_APPLICABLE`` with the
reason. Artifacts are written to a staging directory and moved into place only with their
record, which is written last and atomically.
"""

from __future__ import annotations

import logging
import random
import shutil
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.data.cards import get_card
from benchmarks.data.load import UserKeys, is_user_file, load_dataset
from benchmarks.errors import CgcbenchError
from benchmarks.interface import ModelAdapter, Suite, TaskData, config_hash, model_info_dict
from benchmarks.registry import ModelSpec, build_model, parse_model, suite_class
from benchmarks.tracking.mlflow_log import MlflowLogger, default_tracking_uri
from benchmarks.tracking.provenance import ResourceMeter, git_commit, hardware, package_versions
from benchmarks.tracking.records import CellKey, Record, read_record, record_path, write_record

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


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA) for a cell."""
    random.seed(seed)
    np.random.seed(seed)
    try:
        import torch

        torch.manual_seed(seed)
    except ImportError:
        pass


@dataclass
class PreparedTask:
    """A dataset prepared by the suite for one seed."""

    dataset: str
    seed: int
    task: TaskData


class MatrixRunner:
    """Runs a :class:`RunRequest` and returns its records (dicts in the record schema)."""

    def __init__(self, request: RunRequest, on_progress: ProgressCallback | None = None) -> None:
        self.req = request
        self.on_progress = on_progress or (lambda *_: None)
        self.results_dir = request.results_dir.resolve()
        self.suite: Suite = suite_class(request.suite)(quick=request.quick, options=request.suite_options)
        self.specs: list[ModelSpec] = [parse_model(m) for m in request.models]
        if not self.specs:
            raise CgcbenchError("no models given; pass --models, e.g. --models majority,pca-logreg")
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
                card, adata = load_dataset(name, self.req.keys)
            for seed in self.req.seeds:
                seed_everything(seed)
                task = self.suite.prepare(adata, card, seed)
                prepared.append(PreparedTask(card.name, seed, task))
        return prepared

    def n_cells(self, prepared: Sequence[PreparedTask]) -> int:
        """How many matrix cells the request has."""
        return len(prepared) * len(self.specs)

    def run(self, on_total: Callable[[int], None] | None = None) -> list[dict[str, Any]]:
        """Validate everything, then run every cell; return the records.

        ``on_total`` is called with the number of cells once the inputs are validated.
        """
        prepared = self.prepare()
        self.results_dir.mkdir(parents=True, exist_ok=True)
        uri = self.req.tracking_uri or default_tracking_uri(self.results_dir)
        tracker = MlflowLogger(uri, self.results_dir)
        tracker.check_reachable()
        if on_total is not None:
            on_total(self.n_cells(prepared))
        records = []
        for item in prepared:
            for spec in self.specs:
                records.append(self._run_cell(item, spec, tracker))
        return records

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

    def _run_cell(self, item: PreparedTask, spec: ModelSpec, tracker: MlflowLogger) -> dict[str, Any]:
        config = self._cell_config(item, spec)
        key = CellKey(self.suite.name, item.dataset, spec.label, item.seed, config_hash(config))
        existing = record_path(self.results_dir, key)
        if self.req.resume and existing.exists():
            rec = read_record(existing)
            if rec["status"] in ("FINISHED", "NOT_APPLICABLE"):
                self.on_progress("skip", key, rec)
                return rec
        self.on_progress("start", key, None)
        started = time.time()
        staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=self.results_dir))
        model_info: dict[str, Any] = {
            "name": spec.name,
            "variant": spec.variant,
            "label": spec.label,
        }
        record = Record(
            key=key,
            status="FAILED",
            dataset=item.task.dataset,
            model=model_info,
            config=config,
            params=item.task.params,
        )
        meter = ResourceMeter()
        try:
            seed_everything(item.seed)
            adapter: ModelAdapter = build_model(
                spec,
                seed=item.seed,
                quick=self.req.quick,
                **self.req.model_params.get(spec.name, {}),
            )
            record.model = model_info_dict(adapter.info())
            gap = self.suite.requirement_gap(adapter.capabilities, item.task)
            if gap is not None:
                record.status, record.reason = "NOT_APPLICABLE", gap
            else:
                with meter:
                    result = self.suite.run(adapter, item.task, item.seed, staging)
                record.model = model_info_dict(adapter.info())  # init/checkpoint known after fit
                record.metrics = dict(result.metrics) | adapter.extra_metrics()
                record.params = {**item.task.params, **result.params}
                record.artifacts = self._publish_artifacts(staging, key, result)
                record.status = "FINISHED"
        except Exception as exc:  # one cell's failure never stops the matrix
            record.status = "FAILED"
            record.error = {
                "type": type(exc).__name__,
                "message": str(exc)[:2000],
                "traceback": traceback.format_exc(),
            }
            log.error("cell %s failed: %s", key.record_id, exc)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        record.provenance = {
            **self._static_prov,
            "resources": meter.as_dict(),
            "started_at_ms": int(started * 1000),
            "ended_at_ms": int(time.time() * 1000),
        }
        data = record.to_json()
        try:
            data["mlflow"] = tracker.log_record(data, self.results_dir)
        except Exception as exc:
            data["mlflow"] = {"error": f"{type(exc).__name__}: {exc}"}
        record.mlflow = data["mlflow"]
        write_record(self.results_dir, record)
        self.on_progress("done", key, data)
        return data

    def _publish_artifacts(self, staging: Path, key: CellKey, result: Any) -> list[str]:
        final = self.results_dir / "artifacts" / key.relpath
        files = [a.path for a in result.artifacts if Path(a.path).is_file()]
        if not files:
            return []
        tmp = final.with_name(f".{final.name}.incoming")
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
