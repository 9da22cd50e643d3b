"""Leaderboard rows: mean ± sd over seeds (:func:`benchmarks.summary.summarize`), ranks, provenance.

Ranking rules
-------------
* Ranks are computed per (suite, dataset) and per headline metric of the suite, in the
  suite's ``higher_is_better`` direction (higher is better when a suite does not say), on
  the mean over seeds; ties share the average rank (``scipy.stats.rankdata``).
* Only non-control models are ranked. Controls (``model.is_control``: majority, random,
  shuffled, …) are listed below the models, unranked, so the reader sees what a trivial
  method scores; a control whose mean reaches the best model's is flagged.
* The overall rank is the mean of a row's per-metric ranks (over the metrics it has); the
  "best" mark of a column goes to the rank-1 model(s).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.stats import rankdata

from benchmarks.summary import SummaryRow, summarize


@dataclass(frozen=True)
class SuiteMeta:
    """What the leaderboard needs to know about a suite."""

    name: str
    headline_metrics: tuple[str, ...]
    higher_is_better: Mapping[str, bool]
    description: str = ""

    def better_high(self, metric: str) -> bool:
        """Whether a higher value of ``metric`` is better (default ``True``)."""
        return bool(self.higher_is_better.get(metric, True))


def suite_meta(name: str, records: Sequence[Mapping[str, Any]] = ()) -> SuiteMeta:
    """Metadata of a registered suite; for an unknown suite, every metric its records report."""
    try:
        from benchmarks.registry import suite_class

        cls = suite_class(name)
        doc = (cls.__doc__ or "").strip().splitlines()
        return SuiteMeta(
            name,
            tuple(cls.headline_metrics),
            dict(getattr(cls, "higher_is_better", {}) or {}),
            doc[0] if doc else "",
        )
    except Exception:  # unknown or unimportable suite: fall back on the records themselves
        metrics = sorted({m for r in records for m in (r.get("metrics") or {})})
        return SuiteMeta(name, tuple(metrics), {})


@dataclass
class Provenance:
    """Provenance of a row, merged over its records (differing values are all listed)."""

    dataset_version: str
    dataset_sha256: dict[str, str]
    init: str
    checkpoint_sha256: list[str]
    seeds: list[int]
    git_commits: list[str]
    packages: dict[str, str]
    hardware: list[str]
    wall_time_s: tuple[float, float] | None
    """(mean, max) wall time of one record, seconds."""
    peak_rss_mb: float | None
    gpu_peak_mb: float | None
    record_ids: list[str]

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return dict(self.__dict__, wall_time_s=list(self.wall_time_s) if self.wall_time_s else None)


def _hardware_text(hw: Mapping[str, Any]) -> str:
    parts = [str(hw.get("gpu") or hw.get("device") or "?")]
    if hw.get("cpu_count"):
        parts.append(f"{hw['cpu_count']} CPU")
    if hw.get("memory_gb"):
        parts.append(f"{hw['memory_gb']} GB RAM")
    return ", ".join(parts)


def _commit_text(git: Mapping[str, Any]) -> str:
    commit = str(git.get("commit") or "unknown")
    commit = commit[:12] if len(commit) >= 12 else commit
    return commit + ("+dirty" if git.get("dirty") else "")


def merge_provenance(records: Sequence[Mapping[str, Any]]) -> Provenance:
    """Provenance of a group of records of one (suite, dataset, model)."""
    first = records[0]
    packages: dict[str, set[str]] = {}
    walls, rss, gpu = [], [], []
    for r in records:
        prov = r.get("provenance") or {}
        for k, v in (prov.get("packages") or {}).items():
            packages.setdefault(k, set()).add(str(v))
        res = prov.get("resources") or {}
        if res.get("wall_time_s") is not None:
            walls.append(float(res["wall_time_s"]))
        if res.get("peak_rss_mb") is not None:
            rss.append(float(res["peak_rss_mb"]))
        if res.get("gpu_peak_mb") is not None:
            gpu.append(float(res["gpu_peak_mb"]))
    return Provenance(
        dataset_version=str(first["dataset"].get("version")),
        dataset_sha256=dict(first["dataset"].get("sha256") or {}),
        init=str(first["model"].get("init")),
        checkpoint_sha256=sorted(
            {str(r["model"]["checkpoint_sha256"]) for r in records if r["model"].get("checkpoint_sha256")}
        ),
        seeds=sorted(int(r["seed"]) for r in records),
        git_commits=sorted({_commit_text((r.get("provenance") or {}).get("git") or {}) for r in records}),
        packages={k: " | ".join(sorted(v)) for k, v in sorted(packages.items())},
        hardware=sorted({_hardware_text((r.get("provenance") or {}).get("hardware") or {}) for r in records}),
        wall_time_s=(float(np.mean(walls)), float(np.max(walls))) if walls else None,
        peak_rss_mb=max(rss) if rss else None,
        gpu_peak_mb=max(gpu) if gpu else None,
        record_ids=sorted(str(r["record_id"]) for r in records),
    )


@dataclass
class Row:
    """One (suite, dataset, model label) row of the leaderboard."""

    summary: SummaryRow
    name: str
    variant: str
    provenance: Provenance
    records: list[Mapping[str, Any]]
    ranks: dict[str, float] = field(default_factory=dict)
    overall_rank: float | None = None
    best: set[str] = field(default_factory=set)
    control_reaches_best: set[str] = field(default_factory=set)

    @property
    def label(self) -> str:
        """``name`` or ``name:variant``."""
        return self.summary.model

    @property
    def is_control(self) -> bool:
        """Whether the model is a control (unranked)."""
        return self.summary.is_control

    @property
    def status_text(self) -> str:
        """Counts of statuses, plus why a cell is not applicable or failed."""
        s = self.summary
        parts = [f"{k.lower().replace('_', ' ')} ×{v}" for k, v in sorted(s.statuses.items())]
        text = ", ".join(parts)
        if s.reasons:
            text += " — not applicable: " + "; ".join(s.reasons)
        if s.errors:
            text += " — failed: " + "; ".join(s.errors)
        return text


@dataclass
class DatasetBoard:
    """All rows of one (suite, dataset); models first (by overall rank), then controls."""

    suite: str
    dataset: str
    rows: list[Row]


@dataclass
class SuiteBoard:
    """One suite: its metadata and one board per dataset."""

    meta: SuiteMeta
    datasets: list[DatasetBoard]

    @property
    def rows(self) -> list[Row]:
        """Every row of every dataset."""
        return [row for board in self.datasets for row in board.rows]


def rank_rows(rows: Sequence[Row], meta: SuiteMeta) -> None:
    """Fill ``ranks``, ``overall_rank``, ``best`` and ``control_reaches_best`` of ``rows`` in place."""
    ranked = [r for r in rows if not r.is_control]
    for metric in meta.headline_metrics:
        have = [r for r in ranked if metric in r.summary.metrics]
        if not have:
            continue
        sign = -1.0 if meta.better_high(metric) else 1.0
        values = np.array([sign * r.summary.metrics[metric][0] for r in have])
        ranks = rankdata(values, method="average")
        for row, rank in zip(have, ranks, strict=True):
            row.ranks[metric] = float(rank)
            if rank == ranks.min():
                row.best.add(metric)
        best_value = float(values.min())
        for ctrl in (r for r in rows if r.is_control and metric in r.summary.metrics):
            if sign * ctrl.summary.metrics[metric][0] <= best_value:
                ctrl.control_reaches_best.add(metric)
    for row in ranked:
        if row.ranks:
            row.overall_rank = float(np.mean(list(row.ranks.values())))


def _sort_key(row: Row) -> tuple[int, float, str]:
    return (int(row.is_control), row.overall_rank if row.overall_rank is not None else np.inf, row.label)


def build_boards(records: Iterable[Mapping[str, Any]]) -> list[SuiteBoard]:
    """Group records into suites and datasets, aggregate over seeds and rank."""
    by_suite: dict[str, list[Mapping[str, Any]]] = {}
    for r in records:
        by_suite.setdefault(str(r["suite"]), []).append(r)
    boards = []
    for suite, recs in sorted(by_suite.items()):
        meta = suite_meta(suite, recs)
        groups: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
        for r in recs:
            groups.setdefault((r["dataset"]["name"], r["model"]["label"]), []).append(r)
        summaries = summarize(recs)
        by_dataset: dict[str, list[Row]] = {}
        for s in summaries:
            members = sorted(groups[(s.dataset, s.model)], key=lambda r: int(r["seed"]))
            model = members[0]["model"]
            row = Row(
                summary=s,
                name=str(model.get("name", s.model)),
                variant=str(model.get("variant") or ""),
                provenance=merge_provenance(members),
                records=members,
            )
            by_dataset.setdefault(s.dataset, []).append(row)
        datasets = []
        for dataset, rows in sorted(by_dataset.items()):
            rank_rows(rows, meta)
            datasets.append(DatasetBoard(suite, dataset, sorted(rows, key=_sort_key)))
        boards.append(SuiteBoard(meta, datasets))
    return boards
