"""Result records: one JSON document per matrix cell, in a versioned schema.

A record is written atomically (temporary file + rename), so a crash never leaves a record
that claims success. Layout under the results directory::

    records/<suite>/<dataset>/<model label>/seed<seed>-<config hash>.json
    artifacts/<suite>/<dataset>/<model label>/seed<seed>-<config hash>/...

Schema ``cgcbench.record/1``:

``schema``, ``record_id``, ``status`` (``FINISHED`` | ``FAILED`` | ``NOT_APPLICABLE``),
``suite``, ``dataset`` (name, version, sha256, organism, …), ``model`` (name, variant, label,
init, checkpoint_sha256, params), ``seed``, ``config_hash``, ``config``, ``metrics``,
``artifacts`` (paths relative to the results dir), ``reason`` (not applicable), ``error``
(type, message, traceback), ``provenance`` (git, packages, hardware, resources, times),
``mlflow`` (tracking URI, experiment, run id).
"""

from __future__ import annotations

import json
import math
import os
import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SCHEMA = "cgcbench.record/1"
STATUSES = ("FINISHED", "FAILED", "NOT_APPLICABLE")


def safe_name(text: str) -> str:
    """A file-system-safe form of a label (``cgc:-edge=pos`` → ``cgc_-edge=pos``)."""
    return re.sub(r"[^A-Za-z0-9._=+-]", "_", text)


@dataclass
class CellKey:
    """Identity of one matrix cell."""

    suite: str
    dataset: str
    model: str
    seed: int
    config_hash: str

    @property
    def relpath(self) -> Path:
        """Path of the cell below ``records/`` or ``artifacts/`` (no suffix)."""
        return (
            Path(safe_name(self.suite))
            / safe_name(self.dataset)
            / safe_name(self.model)
            / f"seed{self.seed}-{self.config_hash}"
        )

    @property
    def record_id(self) -> str:
        """A stable identifier of the cell."""
        return "/".join(self.relpath.parts)


@dataclass
class Record:
    """A result record (see the module docstring for the schema)."""

    key: CellKey
    status: str
    dataset: dict[str, Any]
    model: dict[str, Any]
    config: dict[str, Any]
    metrics: dict[str, float] = field(default_factory=dict)
    artifacts: list[str] = field(default_factory=list)
    reason: str | None = None
    error: dict[str, str] | None = None
    provenance: dict[str, Any] = field(default_factory=dict)
    mlflow: dict[str, Any] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The record as a JSON-ready dict."""
        if self.status not in STATUSES:
            raise ValueError(f"status {self.status!r} not in {STATUSES}")
        return {
            "schema": SCHEMA,
            "record_id": self.key.record_id,
            "status": self.status,
            "suite": self.key.suite,
            "dataset": self.dataset,
            "model": self.model,
            "seed": self.key.seed,
            "config_hash": self.key.config_hash,
            "config": self.config,
            "params": self.params,
            "metrics": {k: _finite(v) for k, v in self.metrics.items()},
            "artifacts": self.artifacts,
            "reason": self.reason,
            "error": self.error,
            "provenance": self.provenance,
            "mlflow": self.mlflow,
        }


def _finite(value: float) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` via a temporary file in the same directory and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def record_path(results_dir: Path, key: CellKey) -> Path:
    """Where the record of ``key`` lives."""
    return results_dir / "records" / key.relpath.with_suffix(".json")


def write_record(results_dir: Path, record: Record) -> Path:
    """Atomically write ``record``; return its path."""
    path = record_path(results_dir, record.key)
    atomic_write_text(path, json.dumps(record.to_json(), indent=2, sort_keys=True, default=str))
    return path


def read_record(path: Path) -> dict[str, Any]:
    """Read one record and check its schema."""
    data = json.loads(path.read_text())
    if data.get("schema") != SCHEMA:
        raise ValueError(f"{path}: schema {data.get('schema')!r}, expected {SCHEMA!r}")
    return data


def iter_records(results_dir: Path) -> Iterator[dict[str, Any]]:
    """All records below ``results_dir/records`` (or ``results_dir`` itself)."""
    root = results_dir / "records" if (results_dir / "records").is_dir() else results_dir
    for path in sorted(root.rglob("*.json")):
        if path.name.startswith("."):
            continue
        yield read_record(path)
