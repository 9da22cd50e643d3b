"""MLflow logging of matrix cells: one run per (suite, dataset, model, variant, seed).

Each ``cgcbench run`` invocation is a parent run (tag ``cgcbench.kind=invocation``; its
parameters are the models, datasets and seeds asked for) and every cell it logs is a child run
(``mlflow.parentRunId``), so the runs table groups a matrix and compares its cells. A cell's
run carries the standard ``mlflow.source.git.commit`` tag, its data set as an MLflow dataset
input (name, digest = the first 36 hex digits of the file's sha256 — MLflow's limit — with the
full hashes in the dataset's source), and the adapter's loss curves (pre-training,
fine-tuning) as step metrics. Experiments are created with ``mlflow.experimentKind =
custom_model_development`` so that the UI opens on the runs table, not the GenAI traces page.

The default store is embedded and local: ``sqlite:///<results dir>/mlflow.db`` with artifacts
under ``<results dir>/mlartifacts``; ``--tracking-uri`` or ``MLFLOW_TRACKING_URI`` point it
anywhere else. Browse it with ``mlflow ui --backend-store-uri sqlite:///<results dir>/mlflow.db``.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import shutil
import time
import traceback
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from benchmarks.errors import CgcbenchError

log = logging.getLogger(__name__)
EXPERIMENT_PREFIX = "cgcbench"
EXPERIMENT_TAGS = {"mlflow.experimentKind": "custom_model_development"}
"""Tells the MLflow (≥ 3) UI that these experiments hold model runs: it opens on the runs table."""
DIGEST_CHARS = 36
"""MLflow stores a dataset digest in at most 36 characters."""


def dataset_digest(sha256: Any) -> str:
    """The MLflow digest of a data set: its single file's sha256, or a hash of its files' hashes."""
    if isinstance(sha256, dict) and len(sha256) == 1:
        sha256 = next(iter(sha256.values()))
    if isinstance(sha256, str) and sha256:
        return sha256[:DIGEST_CHARS]
    blob = json.dumps(sha256, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:DIGEST_CHARS]


def dataset_input(dataset: dict[str, Any]) -> Any:
    """An :class:`mlflow.entities.DatasetInput` for a record's dataset provenance."""
    from mlflow.entities import Dataset, DatasetInput, InputTag

    uri = dataset.get("url") or dataset.get("path") or dataset.get("card") or dataset.get("name")
    source = {"uri": str(uri), "sha256": dataset.get("sha256"), "version": dataset.get("version")}
    keys = ("n_cells", "n_genes", "organism", "expression_kind")
    profile = {k: dataset.get(k) for k in keys if k in dataset}
    return DatasetInput(
        Dataset(
            name=str(dataset.get("name")),
            digest=dataset_digest(dataset.get("sha256")),
            source_type="http" if str(uri).startswith(("http://", "https://")) else "local",
            source=json.dumps(source, default=str),
            profile=json.dumps(profile, default=str) if profile else None,
        ),
        tags=[InputTag("mlflow.data.context", "evaluation")],
    )


def default_tracking_uri(results_dir: Path) -> str:
    """The tracking URI used when neither ``--tracking-uri`` nor ``MLFLOW_TRACKING_URI`` is set."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{results_dir.resolve()}/mlflow.db"


def probe_server(tracking_uri: str, timeout: float = 5.0) -> None:
    """For an ``http(s)`` tracking URI, fail fast when the server does not answer ``/health``.

    Called before the results directory is created, so an unreachable server writes nothing.
    Other URIs are left to :meth:`MlflowLogger.check_reachable`.
    """
    if not tracking_uri.startswith(("http://", "https://")):
        return
    import urllib.request

    try:
        urllib.request.urlopen(f"{tracking_uri.rstrip('/')}/health", timeout=timeout)
    except OSError as exc:
        raise CgcbenchError(
            f"MLflow tracking server {tracking_uri} is unreachable ({exc}); start it, "
            "or drop --tracking-uri/MLFLOW_TRACKING_URI to use the local store"
        ) from exc


def _sqlite_path(tracking_uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI (``None`` for other stores or in-memory)."""
    prefix = "sqlite:///"
    if not tracking_uri.startswith(prefix) or tracking_uri == prefix or ":memory:" in tracking_uri:
        return None
    return Path(tracking_uri[len(prefix):].split("?", 1)[0])


def _create_sqlite_store_atomically(tracking_uri: str) -> None:
    """Create a new sqlite store under a temporary name and rename it into place.

    MLflow creates its tables on first use, in many steps; a run killed in the middle (Ctrl-C
    during start-up, SIGKILL) would leave a half-built ``mlflow.db`` that no later run can open.
    Building it aside and renaming it makes the store appear whole or not at all. The tables come
    from a migrated template built once per MLflow version (:func:`_store_template`), so a new
    results directory does not re-run the migrations. Call under the results-directory lock.
    """
    path = _sqlite_path(tracking_uri)
    if path is None or path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    # a fresh name each time: MLflow caches stores by URI within a process
    tmp = path.with_name(f".{path.name}.init-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        shutil.copyfile(_store_template(), tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _store_template() -> Path:
    """An empty, fully migrated sqlite store for this MLflow version, built once and copied.

    Creating a store runs all of MLflow's schema migrations (seconds to minutes); every new
    results directory would pay that again. The template lives in the data cache
    (``$CGCBENCH_DATA_DIR/mlflow/store-<version>.db``) and is itself written atomically.
    """
    import mlflow

    from benchmarks.data.fetch import data_dir

    template = data_dir() / "mlflow" / f"store-{mlflow.__version__}.db"
    if template.is_file():
        return template
    template.parent.mkdir(parents=True, exist_ok=True)
    tmp = template.with_name(f".{template.name}.init-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        mlflow.MlflowClient(tracking_uri=f"sqlite:///{tmp}").search_experiments(max_results=1)
        os.replace(tmp, template)
    finally:
        tmp.unlink(missing_ok=True)
    return template


def _flatten(prefix: str, value: Any, out: dict[str, str]) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            _flatten(f"{prefix}.{k}" if prefix else str(k), v, out)
    else:
        text = value if isinstance(value, str) else json.dumps(value, default=str)
        out[prefix] = text[:6000]


class MlflowLogger:
    """Creates experiments and runs with :class:`mlflow.MlflowClient` (no global state)."""

    def __init__(self, tracking_uri: str, results_dir: Path) -> None:
        os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
        import mlflow

        if os.environ["MLFLOW_LOGGING_LEVEL"] == "WARNING":
            logging.getLogger("mlflow").setLevel(logging.WARNING)
        self.tracking_uri = tracking_uri
        self.artifact_root = (results_dir / "mlartifacts").resolve()
        self.lock_path = results_dir / ".mlflow.lock"
        if tracking_uri.startswith(("http://", "https://")):
            self.client = mlflow.MlflowClient(tracking_uri=tracking_uri)
        else:  # a database store may run its migrations on first use: once, under the lock
            try:
                with self._lock():
                    _create_sqlite_store_atomically(tracking_uri)
                    self.client = mlflow.MlflowClient(tracking_uri=tracking_uri)
                    self.client.search_experiments(max_results=1)
            except Exception as exc:
                raise CgcbenchError(
                    f"MLflow tracking store {tracking_uri} cannot be opened ({type(exc).__name__}: "
                    f"{str(exc).splitlines()[0][:200]}); pass --tracking-uri with a writable store"
                ) from exc
        self._experiments: dict[str, str] = {}
        self.parent_run_id: str | None = None
        """The run of the current ``cgcbench run`` invocation; cells logged meanwhile are its children."""

    def check_reachable(self, timeout: float = 5.0) -> None:
        """Fail fast, before any training, when the tracking store cannot be used.

        A server gets a ``/health`` probe with a ``timeout`` (MLflow's own client would retry
        for minutes); a database store is opened — under the results-dir lock, so that
        concurrent first use of a new sqlite store runs its migrations once.
        """
        probe_server(self.tracking_uri, timeout)
        try:
            with self._lock():
                self.client.search_experiments(max_results=1)
        except Exception as exc:
            raise CgcbenchError(
                f"MLflow tracking store {self.tracking_uri} is unreachable "
                f"({type(exc).__name__}: {str(exc).splitlines()[0][:200]}); start the server or "
                "pass --tracking-uri with a reachable store"
            ) from exc

    def experiment_id(self, suite: str) -> str:
        """The id of the experiment of ``suite``, created on first use."""
        name = f"{EXPERIMENT_PREFIX}/{suite}"
        if name in self._experiments:
            return self._experiments[name]
        exp = self.client.get_experiment_by_name(name)
        if exp is None:
            is_local = not self.tracking_uri.startswith(("http://", "https://", "databricks"))
            location = self.artifact_root.as_uri() if is_local else None
            try:
                exp_id = self.client.create_experiment(name, artifact_location=location, tags=EXPERIMENT_TAGS)
            except Exception:  # another process created it first
                exp = self.client.get_experiment_by_name(name)
                if exp is None:
                    raise
                exp_id = exp.experiment_id
        else:
            exp_id = exp.experiment_id
            for key, value in EXPERIMENT_TAGS.items():  # stores made by older versions
                if exp.tags.get(key) is None:
                    self.client.set_experiment_tag(exp_id, key, value)
        self._experiments[name] = exp_id
        return exp_id

    def start_invocation(self, suite: str, request: dict[str, Any], git: dict[str, Any] | None = None) -> str:
        """Create the parent run of one ``cgcbench run`` (``request``: its models, datasets, …)."""
        with self._lock():
            exp_id = self.experiment_id(suite)
            tags = {
                "mlflow.runName": f"cgcbench run {suite} {time.strftime('%Y-%m-%d %H:%M:%S')}",
                "mlflow.source.name": "cgcbench run",
                "mlflow.source.type": "LOCAL",
                "cgcbench.kind": "invocation",
                "suite": suite,
            }
            commit = (git or {}).get("commit")
            if commit and commit != "unknown":
                tags["mlflow.source.git.commit"] = str(commit)
            run = self.client.create_run(exp_id, tags=tags)
            params: dict[str, str] = {}
            _flatten("", request, params)
            for key, value in params.items():
                self.client.log_param(run.info.run_id, key[:250], value)
        self.parent_run_id = run.info.run_id
        return run.info.run_id

    def end_invocation(self, status: str = "FINISHED") -> None:
        """Mark the parent run ``FINISHED``, ``FAILED`` (a cell failed) or ``KILLED``."""
        if self.parent_run_id is None:
            return
        with self._lock():
            self.client.set_terminated(self.parent_run_id, status=status)
        self.parent_run_id = None

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        """Serialise writes of concurrent cgcbench processes sharing this results directory."""
        self.lock_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.lock_path, "a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def log_record(self, record: dict[str, Any], results_dir: Path) -> dict[str, str]:
        """Log a finished record (any status) as one MLflow run; return its identifiers.

        A cell's run is keyed by its record id (tag ``cgcbench.record_id``): a run logged
        earlier for the same cell — by this process, by a concurrent ``cgcbench run`` on the
        same cells, by a re-run after ``--resume`` or a crash between logging and writing the
        record — is found and reused (tags, metrics and artifacts updated, parameters it lacks
        added), never duplicated. All of this happens under the results directory's lock, so
        two writers cannot both create a run.
        """
        with self._lock():
            return self._log_record(record, results_dir)

    def _log_curves(self, run_id: str, path: Path, timestamp: int | None) -> None:
        """Log ``{name: [[step, value], ...]}`` as step metrics.

        Every point gets the cell's end time, so logging the same curve again adds nothing.
        """
        from mlflow.entities import Metric

        stamp = int(timestamp or time.time() * 1000)
        curves = json.loads(path.read_text())
        metrics = [Metric(str(k), float(v), stamp, int(s)) for k, pts in curves.items() for s, v in pts]
        for i in range(0, len(metrics), 1000):  # MLflow takes at most 1000 metrics per batch
            self.client.log_batch(run_id, metrics=metrics[i : i + 1000])

    def _log_record(self, record: dict[str, Any], results_dir: Path) -> dict[str, str]:
        exp_id = self.experiment_id(record["suite"])
        previous = self.client.search_runs(
            [exp_id],
            filter_string=f"tags.`cgcbench.record_id` = '{record['record_id']}'",
            order_by=["attributes.start_time ASC"],
        )
        for extra in previous[1:]:  # duplicates left by older versions: keep the first
            self.client.delete_run(extra.info.run_id)
        model = record["model"]
        tags: dict[str, str] = {
            "mlflow.runName": f"{record['dataset']['name']}/{model['label']}/seed{record['seed']}",
            "cgcbench.record_id": record["record_id"],
            "cgcbench.status": record["status"].lower(),
            "cgcbench.schema": record["schema"],
            "suite": record["suite"],
            "dataset": record["dataset"]["name"],
            "dataset.version": str(record["dataset"].get("version")),
            "model": model["name"],
            "variant": model.get("variant") or "",
            "init": str(model.get("init")),
            "checkpoint_sha256": str(model.get("checkpoint_sha256") or ""),
            "seed": str(record["seed"]),
            "config_hash": record["config_hash"],
        }
        prov = record.get("provenance", {})
        commit = (prov.get("git") or {}).get("commit")
        if commit and commit != "unknown":
            tags["mlflow.source.git.commit"] = str(commit)
        if self.parent_run_id is not None:
            tags["mlflow.parentRunId"] = self.parent_run_id
        _flatten("provenance", prov, tags)
        if record.get("reason"):
            tags["cgcbench.not_applicable_reason"] = record["reason"]
        if record.get("error"):
            tags["cgcbench.error"] = f"{record['error']['type']}: {record['error']['message']}"[:5000]
        if previous:
            run_id = previous[0].info.run_id
            logged = dict(previous[0].data.params)
            self.client.update_run(run_id, status="RUNNING")
            for k, v in tags.items():
                self.client.set_tag(run_id, k, v)
        else:
            run = self.client.create_run(exp_id, start_time=prov.get("started_at_ms"), tags=tags)
            run_id, logged = run.info.run_id, {}
        try:
            params: dict[str, str] = {}
            _flatten("model", model.get("params", {}), params)
            _flatten("suite", record.get("config", {}).get("suite_config", {}), params)
            _flatten("task", record.get("params", {}), params)
            params["dataset.sha256"] = json.dumps(record["dataset"].get("sha256"))[:6000]
            for k, v in params.items():
                key = k[:250]
                if key not in logged:  # MLflow parameters are immutable; record.json has the rest
                    self.client.log_param(run_id, key, v)
            for k, v in record.get("metrics", {}).items():
                if v is not None:
                    self.client.log_metric(run_id, k, float(v))
            res = prov.get("resources", {})
            for k in ("wall_time_s", "cpu_time_s", "peak_rss_mb", "gpu_peak_mb"):
                if res.get(k) is not None:
                    self.client.log_metric(run_id, f"resource.{k}", float(res[k]))
            self.client.log_inputs(run_id, datasets=[dataset_input(record["dataset"])])
            for rel in record.get("artifacts", []):
                path = results_dir / rel
                if path.is_file():
                    self.client.log_artifact(run_id, str(path))
                    if path.name == "training_curves.json":
                        self._log_curves(run_id, path, prov.get("ended_at_ms"))
            self.client.log_dict(run_id, record, "record.json")
            if record.get("error", {}) and record["error"].get("traceback"):
                self.client.log_text(run_id, record["error"]["traceback"], "traceback.txt")
            status = "FAILED" if record["status"] == "FAILED" else "FINISHED"
            self.client.set_terminated(run_id, status=status, end_time=prov.get("ended_at_ms"))
        except Exception:
            log.error("MLflow logging failed for %s:\n%s", record["record_id"], traceback.format_exc())
            self.client.set_terminated(run_id, status="FAILED")
            raise
        return {"tracking_uri": self.tracking_uri, "experiment_id": exp_id, "run_id": run_id}
