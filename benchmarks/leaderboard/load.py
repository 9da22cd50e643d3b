"""Read result records from result directories or MLflow runs and de-duplicate them.

A result directory is what ``cgcbench run --results-dir`` writes (``records/`` + ``artifacts/``).
An MLflow run written by :class:`benchmarks.tracking.mlflow_log.MlflowLogger` carries the same
record as its ``record.json`` artifact and the tag ``cgcbench.record_id``; its plots are logged
at the run's artifact root under their file names.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from benchmarks.errors import InputError
from benchmarks.leaderboard.configs import row_config_hash
from benchmarks.tracking.records import SCHEMA, read_record

log = logging.getLogger(__name__)

ArtifactResolver = Callable[[str], Path | None]
"""Maps an artifact path of a record (relative to its results dir) to a readable local file.

It returns ``None`` for a missing file and raises :class:`UnsafeArtifactPath` for a path that
leaves the record's directory."""


@dataclass
class LoadedRecord:
    """A record plus where it came from and how to reach its artifacts.

    Parameters
    ----------
    data
        The record (schema ``cgcbench.record/1``).
    source
        A results directory path or an MLflow tracking URI, for messages.
    resolve
        Returns a local path of one of ``data["artifacts"]``, or ``None`` if it is unavailable.
    origin
        The record's file, or ``MLflow run <id> at <uri>``, for error messages.

    """

    data: dict[str, Any]
    source: str
    resolve: ArtifactResolver
    origin: str = ""

    @property
    def record_id(self) -> str:
        """The record's stable identifier."""
        return str(self.data["record_id"])


@dataclass
class LoadReport:
    """What :func:`load_records` kept and dropped."""

    records: list[LoadedRecord]
    sources: list[str]
    duplicates: int = 0
    """Records seen more than once under the same ``record_id`` (first one kept)."""
    superseded: list[str] = field(default_factory=list)
    """Record ids dropped because a later record has the same suite, dataset, model, seed and
    row configuration (:func:`benchmarks.leaderboard.configs.row_config_hash`)."""


class UnsafeArtifactPath(InputError):
    """A record names an artifact outside its own results directory (absolute, ``..``, a link)."""


def confined_path(root: Path, rel: str) -> Path:
    """``root / rel`` resolved, refusing any path that leaves ``root``.

    A record is data from whoever wrote it: its ``artifacts`` must be plain relative paths
    below its results directory. Absolute paths, ``..`` components, ``~``, backslashes and
    symbolic links that resolve outside ``root`` are refused.

    Raises
    ------
    UnsafeArtifactPath
        If ``rel`` would reach outside ``root``.

    """
    text = str(rel)
    parts = PurePosixPath(text).parts
    if (
        not text
        or "\\" in text
        or "\x00" in text
        or PurePosixPath(text).is_absolute()
        or text.startswith("~")
        or ".." in parts
    ):
        raise UnsafeArtifactPath(f"artifact path {text!r} is not a relative path below {root}; refused")
    base = root.resolve()
    path = (base / text).resolve()
    if not path.is_relative_to(base):
        raise UnsafeArtifactPath(f"artifact path {text!r} resolves outside {root} (a link?); refused")
    return path


def _dir_resolver(results_dir: Path) -> ArtifactResolver:
    def resolve(rel: str) -> Path | None:
        path = confined_path(results_dir, rel)
        return path if path.is_file() else None

    return resolve


def records_from_dir(results_dir: Path) -> list[LoadedRecord]:
    """All records of one results directory (``records/`` below it, or the directory itself).

    Raises
    ------
    InputError
        If the directory does not exist or holds no records.

    """
    results_dir = Path(results_dir)
    if not results_dir.is_dir():
        raise InputError(f"--records {results_dir}: no such directory (expected a cgcbench results dir)")
    base = results_dir if (results_dir / "records").is_dir() else results_dir.parent
    root = results_dir / "records" if (results_dir / "records").is_dir() else results_dir
    found = []
    for path in sorted(root.rglob("*.json")):
        if path.name.startswith("."):
            continue
        try:
            rec = read_record(path)
        except ValueError as exc:
            raise InputError(f"--records {results_dir}: {exc}") from exc
        found.append(LoadedRecord(rec, str(results_dir), _dir_resolver(base), str(path)))
    if not found:
        raise InputError(f"--records {results_dir}: no records (*.json) found below it")
    return found


def records_from_mlflow(tracking_uri: str, experiment_prefix: str = "cgcbench/") -> list[LoadedRecord]:
    """Records of every MLflow run tagged ``cgcbench.record_id`` in the ``cgcbench/*`` experiments.

    Artifacts are downloaded on demand into a temporary directory.
    """
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    import mlflow
    from mlflow.entities import ViewType

    client = mlflow.MlflowClient(tracking_uri=tracking_uri)
    try:
        experiments = client.search_experiments(view_type=ViewType.ACTIVE_ONLY)
    except Exception as exc:
        raise InputError(
            f"--tracking-uri {tracking_uri}: cannot read experiments ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0][:200] if str(exc) else ''})"
        ) from exc
    exp_ids = [e.experiment_id for e in experiments if e.name.startswith(experiment_prefix)]
    if not exp_ids:
        raise InputError(f"--tracking-uri {tracking_uri}: no experiment named {experiment_prefix}*")
    cache = Path(tempfile.mkdtemp(prefix="cgcbench-leaderboard-"))
    out: list[LoadedRecord] = []
    runs = client.search_runs(exp_ids, filter_string="tags.`cgcbench.record_id` != ''", max_results=50000)
    for run in runs:
        run_id = run.info.run_id
        try:
            data = mlflow.artifacts.load_dict(f"{run.info.artifact_uri.rstrip('/')}/record.json")
        except Exception as exc:  # a run without its record is reported, not fatal
            log.warning("MLflow run %s has no readable record.json (%s); skipped", run_id, exc)
            continue
        if data.get("schema") != SCHEMA:
            log.warning("MLflow run %s: schema %r, expected %r; skipped", run_id, data.get("schema"), SCHEMA)
            continue
        if not data.get("mlflow"):
            data["mlflow"] = {
                "tracking_uri": tracking_uri,
                "experiment_id": run.info.experiment_id,
                "run_id": run_id,
            }
        out.append(
            LoadedRecord(
                data,
                tracking_uri,
                _mlflow_resolver(client, run_id, cache / run_id),
                f"MLflow run {run_id} at {tracking_uri}",
            )
        )
    if not out:
        raise InputError(f"--tracking-uri {tracking_uri}: no runs with a cgcbench record.json")
    return out


def _mlflow_resolver(client: Any, run_id: str, dest: Path) -> ArtifactResolver:
    def resolve(rel: str) -> Path | None:
        name = Path(rel).name
        if not name or name in (".", "..") or "\\" in name:
            raise UnsafeArtifactPath(f"artifact {rel!r} of MLflow run {run_id} has no file name; refused")
        target = dest / name
        if target.is_file():
            return target
        dest.mkdir(parents=True, exist_ok=True)
        try:
            return Path(client.download_artifacts(run_id, name, str(dest)))
        except Exception as exc:
            log.warning("artifact %s of MLflow run %s unavailable: %s", name, run_id, exc)
            return None

    return resolve


def _ended(rec: LoadedRecord) -> int:
    return int(rec.data.get("provenance", {}).get("ended_at_ms") or 0)


def deduplicate(records: Iterable[LoadedRecord]) -> tuple[list[LoadedRecord], int, list[str]]:
    """Drop repeated ``record_id`` s and superseded runs.

    Two records with different ``record_id`` s but the same (suite, dataset, model label, seed)
    and the same row configuration (:func:`~benchmarks.leaderboard.configs.row_config_hash`)
    are re-runs of one cell; only the one that ended last is kept. Records of *different*
    configurations (``--quick`` and full settings, other model parameters) are all kept: they
    become different rows and are never averaged together.

    Returns
    -------
    tuple
        The kept records, the number of repeated ids and the superseded record ids.

    """
    by_id: dict[str, LoadedRecord] = {}
    duplicates = 0
    for rec in records:
        if rec.record_id in by_id:
            duplicates += 1
            continue
        by_id[rec.record_id] = rec
    by_cell: dict[tuple[str, str, str, int, str], LoadedRecord] = {}
    superseded: list[str] = []
    for rec in sorted(by_id.values(), key=_ended):
        d = rec.data
        cell = (d["suite"], d["dataset"]["name"], d["model"]["label"], int(d["seed"]), row_config_hash(d))
        if cell in by_cell:
            superseded.append(by_cell[cell].record_id)
        by_cell[cell] = rec
    kept = sorted(by_cell.values(), key=lambda r: r.record_id)
    return kept, duplicates, sorted(superseded)


def load_records(records_dirs: Sequence[Path] = (), tracking_uris: Sequence[str] = ()) -> LoadReport:
    """Load records from result directories and MLflow tracking URIs, then de-duplicate.

    Directories are read first, so a record found both in a directory and in MLflow keeps the
    directory's artifacts.

    Raises
    ------
    InputError
        If no source is given or a source yields no record.

    """
    if not records_dirs and not tracking_uris:
        raise InputError("no records to build from: pass --records DIR (repeatable) or --tracking-uri URI")
    found: list[LoadedRecord] = []
    for d in records_dirs:
        found.extend(records_from_dir(Path(d)))
    for uri in tracking_uris:
        found.extend(records_from_mlflow(uri))
    kept, duplicates, superseded = deduplicate(found)
    sources = [str(d) for d in records_dirs] + list(tracking_uris)
    return LoadReport(kept, sources, duplicates, superseded)
