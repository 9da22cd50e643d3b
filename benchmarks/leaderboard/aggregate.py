"""Leaderboard rows: mean ± sd over seeds (:func:`benchmarks.summary.summarize`), ranks, provenance.

Ranking rules
-------------
* A row holds the records of one (suite, dataset, model label, row configuration): records
  of different configurations (``--quick`` and full settings, other model parameters; see
  :mod:`.configs`) are different rows, tagged with what differs, and never averaged together.
* Only the metrics :mod:`.definitions` declares ``ranked`` (quality metrics) are ranked;
  coverage and aggregate columns are shown beside them and never change a rank.
* Per (suite, dataset) and ranked metric, the non-control rows are ranked on their mean over
  seeds in the metric's direction; ties share the average rank (``scipy.stats.rankdata``).
* Each ranked metric is scaled between the suite's negative and positive controls on the same
  dataset and suite settings (:mod:`.scaling`); a row's ``score`` is the mean of its scaled
  metrics and the overall rank orders the rows by it.
* A row is not ranked overall — and says why — when it is a control, when the model could not
  run the dataset (not applicable, failed), when a ranked metric is missing, when the dataset is
  a fixture (:data:`~.definitions.UNRANKED_DATASETS`) or when the controls needed for scaling
  were not run.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.stats import rankdata

from benchmarks.leaderboard.configs import config_tags, row_config, row_config_hash, suite_config_hash
from benchmarks.leaderboard.definitions import (
    REFERENCES,
    UNRANKED_DATASETS,
    MetricDef,
    References,
    suite_metrics,
)
from benchmarks.leaderboard.scaling import Scale, reference_scale
from benchmarks.summary import SummaryRow, summarize

UNDECLARED = "not declared in benchmarks/leaderboard/definitions.py, so not ranked"


@dataclass(frozen=True)
class SuiteMeta:
    """What the leaderboard needs to know about a suite: its columns and its controls."""

    name: str
    metrics: tuple[MetricDef, ...]
    description: str = ""
    references: References | None = None

    @property
    def headline_metrics(self) -> tuple[str, ...]:
        """Every column, ranked or not, in order."""
        return tuple(m.name for m in self.metrics)

    @property
    def ranked_metrics(self) -> tuple[str, ...]:
        """The columns that are ranked."""
        return tuple(m.name for m in self.metrics if m.ranked)

    @property
    def higher_is_better(self) -> dict[str, bool]:
        """Metric → direction."""
        return {m.name: m.higher_is_better for m in self.metrics}

    def metric(self, name: str) -> MetricDef:
        """The definition of column ``name``."""
        return next(m for m in self.metrics if m.name == name)

    def better_high(self, metric: str) -> bool:
        """Whether a higher value of ``metric`` is better (default ``True``)."""
        return bool(self.higher_is_better.get(metric, True))

    def is_ranked(self, metric: str) -> bool:
        """Whether ``metric`` is ranked."""
        return metric in self.ranked_metrics


def suite_meta(name: str, records: Sequence[Mapping[str, Any]] = ()) -> SuiteMeta:
    """Metadata of a suite: its declared columns, else its class's or its records' metrics (unranked)."""
    description = ""
    fallback: tuple[str, ...] = ()
    directions: Mapping[str, bool] = {}
    try:
        from benchmarks.registry import suite_class

        cls = suite_class(name)
        doc = (cls.__doc__ or "").strip().splitlines()
        description = doc[0] if doc else ""
        fallback = tuple(cls.headline_metrics)
        directions = dict(getattr(cls, "higher_is_better", {}) or {})
    except Exception:  # unknown or unimportable suite: fall back on the records themselves
        fallback = tuple(sorted({m for r in records for m in (r.get("metrics") or {})}))
    declared = suite_metrics(name)
    if declared is None:
        declared = tuple(
            MetricDef(m, bool(directions.get(m, True)), False, "", f"suite {name}", why_not_ranked=UNDECLARED)
            for m in fallback
        )
    return SuiteMeta(name, declared, description, REFERENCES.get(name))


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
    """One (suite, dataset, model label, row configuration) row of the leaderboard."""

    summary: SummaryRow
    name: str
    variant: str
    provenance: Provenance
    records: list[Mapping[str, Any]]
    config_hash: str = ""
    """:func:`~benchmarks.leaderboard.configs.row_config_hash` shared by all its records."""
    suite_key: str = ""
    """Hash of the suite settings: controls with the same key are its scaling references."""
    config: dict[str, Any] = field(default_factory=dict)
    config_tag: str = ""
    """What tells this row apart from other configurations of the model on the dataset."""
    ranks: dict[str, float] = field(default_factory=dict)
    scaled: dict[str, float] = field(default_factory=dict)
    """Ranked metric → control-scaled score."""
    score: float | None = None
    """Mean of ``scaled`` over the metrics scaled on this dataset."""
    overall_rank: float | None = None
    unranked: str = ""
    """Why the row has no overall rank (empty when it has one)."""
    best: set[str] = field(default_factory=set)
    control_reaches_best: set[str] = field(default_factory=set)

    @property
    def label(self) -> str:
        """``name`` or ``name:variant``."""
        return self.summary.model

    @property
    def display(self) -> str:
        """The label plus the configuration tag when the model has several on the dataset."""
        return f"{self.label} [{self.config_tag}]" if self.config_tag else self.label

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


def _scales(rows: Sequence[Row], meta: SuiteMeta, suite_key: str) -> dict[str, Scale]:
    """Ranked metric → scale between the controls run with the suite settings ``suite_key``."""
    refs = meta.references
    if refs is None:
        return {}
    out = {}
    for metric in meta.ranked_metrics:

        def means(labels: Sequence[str], metric: str = metric) -> list[float]:
            return [
                r.summary.metrics[metric][0]
                for r in rows
                if r.is_control
                and r.label in labels
                and r.suite_key == suite_key
                and metric in r.summary.metrics
            ]

        positive = means(refs.positive)
        if not positive and metric in refs.oracle:
            positive = [refs.oracle[metric]]
        scale = reference_scale(means(refs.negative), positive, meta.better_high(metric))
        if scale is not None:
            out[metric] = scale
    return out


def _why_not_run(row: Row) -> str:
    s = row.summary
    if s.statuses.get("FINISHED"):
        return ""
    if s.reasons:
        return "could not run: " + "; ".join(s.reasons)
    if s.errors:
        return "failed: " + "; ".join(s.errors)
    return "no finished run"


def rank_rows(rows: Sequence[Row], meta: SuiteMeta, dataset: str = "") -> None:
    """Fill ranks, scaled scores, ``overall_rank``, ``unranked`` and best marks of ``rows`` in place.

    The ranked metrics of a dataset are the suite's ranked metrics that at least one of its rows
    reports (GRN's ``program_coherence`` exists only on expression data sets).
    """
    present = {m for r in rows for m in r.summary.metrics}
    ranked_here = [m for m in meta.ranked_metrics if m in present]
    scales = {key: _scales(rows, meta, key) for key in {r.suite_key for r in rows}}
    for row in rows:
        for metric, scale in scales[row.suite_key].items():
            if metric in row.summary.metrics:
                row.scaled[metric] = scale(row.summary.metrics[metric][0])
    fixture = UNRANKED_DATASETS.get(dataset)
    candidates = []
    for row in rows:
        not_run = _why_not_run(row)
        if row.is_control:
            why = "control (unranked)" + (f"; {not_run}" if not_run else "")
        else:
            why = fixture or not_run
        row.unranked = why or ""
        if not why:
            candidates.append(row)
    if fixture:
        return
    for metric in ranked_here:
        have = [r for r in candidates if metric in r.summary.metrics]
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
    scored = []
    for row in rows:
        used = [m for m in ranked_here if m in scales[row.suite_key]]
        if row in candidates:
            missing = [m for m in ranked_here if m not in row.summary.metrics]
            if missing:
                row.unranked = "no value for " + ", ".join(missing)
                continue
            if not used:
                refs = meta.references
                need = ", ".join((*refs.negative, *refs.positive)) if refs else "none declared"
                row.unranked = (
                    f"no control reference on this dataset with these suite settings (controls: {need})"
                )
                continue
        if used and all(m in row.scaled for m in used):
            row.score = float(np.mean([row.scaled[m] for m in used]))
            if row in candidates:
                scored.append(row)
    if scored:
        ranks = rankdata([-r.score for r in scored], method="average")  # type: ignore[operator]
        for row, rank in zip(scored, ranks, strict=True):
            row.overall_rank = float(rank)


def _sort_key(row: Row) -> tuple[int, float, str]:
    group = 2 if row.is_control else (0 if row.overall_rank is not None else 1)
    return (group, row.overall_rank if row.overall_rank is not None else np.inf, row.display)


def build_boards(records: Iterable[Mapping[str, Any]]) -> list[SuiteBoard]:
    """Group records into suites, datasets and configurations, aggregate over seeds and rank."""
    by_suite: dict[str, list[Mapping[str, Any]]] = {}
    for r in records:
        by_suite.setdefault(str(r["suite"]), []).append(r)
    boards = []
    for suite, recs in sorted(by_suite.items()):
        meta = suite_meta(suite, recs)
        groups: dict[tuple[str, str, str], list[Mapping[str, Any]]] = {}
        for r in recs:
            groups.setdefault((r["dataset"]["name"], r["model"]["label"], row_config_hash(r)), []).append(r)
        by_dataset: dict[str, list[Row]] = {}
        for (dataset, _label, chash), members in sorted(groups.items()):
            members = sorted(members, key=lambda r: int(r["seed"]))
            (summary,) = summarize(members)
            model = members[0]["model"]
            row = Row(
                summary=summary,
                name=str(model.get("name", summary.model)),
                variant=str(model.get("variant") or ""),
                provenance=merge_provenance(members),
                records=members,
                config_hash=chash,
                suite_key=suite_config_hash(members[0]),
                config=row_config(members[0]),
            )
            by_dataset.setdefault(dataset, []).append(row)
        datasets = []
        for dataset, rows in sorted(by_dataset.items()):
            by_label: dict[str, list[Row]] = {}
            for row in rows:
                by_label.setdefault(row.label, []).append(row)
            for same in by_label.values():
                for row, tag in zip(same, config_tags([r.config for r in same]), strict=True):
                    row.config_tag = tag
            rank_rows(rows, meta, dataset)
            datasets.append(DatasetBoard(suite, dataset, sorted(rows, key=_sort_key)))
        boards.append(SuiteBoard(meta, datasets))
    return boards


def cross_suite(boards: Sequence[SuiteBoard]) -> dict[tuple[str, str], tuple[float, int]]:
    """(row display label, suite) → (mean control-scaled score over the suite's ranked datasets, n).

    Fixture datasets (:data:`~.definitions.UNRANKED_DATASETS`) and rows without a score are left out.
    """
    scores: dict[tuple[str, str], list[float]] = {}
    for b in boards:
        for d in b.datasets:
            if d.dataset in UNRANKED_DATASETS:
                continue
            for row in d.rows:
                if row.score is not None:
                    scores.setdefault((row.display, b.meta.name), []).append(row.score)
    return {k: (float(np.mean(v)), len(v)) for k, v in scores.items()}


def unscored_suites(boards: Sequence[SuiteBoard]) -> dict[str, str]:
    """Suite → why no model of it has a score (the first non-control row's reason)."""
    out = {}
    for b in boards:
        rows = [r for r in b.rows if not r.is_control]
        if rows and not any(r.score is not None for r in rows):
            reasons = sorted({r.unranked for r in rows if r.unranked})
            out[b.meta.name] = "; ".join(reasons[:2]) or "no scores"
    return out
