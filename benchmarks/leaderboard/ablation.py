"""Ablations: each model variant against its base model, paired by (dataset, seed).

A variant is a record whose ``model.variant`` is non-empty (label ``cgc:no-graph``); its base
is the record of the same suite, dataset, suite settings and seed whose model label equals
``model.name`` (``cgc``). For each metric the difference ``variant − base`` is taken per seed present in
both, and summarised by its mean and a two-sided t-interval (``scipy.stats.t``) over the
paired differences. Fewer than two pairs give no interval (``note = "n<2"``).

Used by the leaderboard and by ``cgcbench ablate``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy import stats


@dataclass(frozen=True)
class Interval:
    """Mean of paired differences and its confidence interval."""

    mean: float
    low: float | None
    high: float | None
    n: int
    note: str = ""


@dataclass(frozen=True)
class AblationResult:
    """One (suite, dataset, variant, metric) comparison with the base model.

    ``diff`` is ``variant − base``; ``improves`` says whether the mean difference goes in the
    metric's better direction (``None`` when the interval contains 0 or is not computable).
    """

    suite: str
    dataset: str
    base: str
    variant: str
    metric: str
    higher_is_better: bool
    base_mean: float
    variant_mean: float
    diff: Interval
    seeds: tuple[int, ...]
    confidence: float = 0.95

    @property
    def improves(self) -> bool | None:
        """``True``/``False`` when the interval excludes 0, else ``None``."""
        d = self.diff
        if d.low is None or d.high is None or d.low <= 0 <= d.high:
            return None
        return (d.mean > 0) == self.higher_is_better

    def interval_text(self, digits: int = 3) -> str:
        """``[low, high]`` or the reason there is none."""
        d = self.diff
        if d.low is None or d.high is None:
            return d.note or "—"
        return f"[{d.low:+.{digits}f}, {d.high:+.{digits}f}]"

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        out = asdict(self)
        out["seeds"] = list(self.seeds)
        out["improves"] = self.improves
        return out


def t_interval(diffs: Sequence[float], confidence: float = 0.95) -> Interval:
    """Mean and two-sided t-interval of paired differences.

    Parameters
    ----------
    diffs
        Paired differences (one per seed).
    confidence
        Coverage of the interval.

    Returns
    -------
    Interval
        ``low``/``high`` are ``None`` and ``note`` is ``"n<2"`` with fewer than two differences.

    """
    values = np.asarray(diffs, dtype=float)
    n = int(values.size)
    if n == 0:
        return Interval(math.nan, None, None, 0, "no pairs")
    mean = float(values.mean())
    if n < 2:
        return Interval(mean, None, None, n, "n<2")
    sem = float(values.std(ddof=1)) / math.sqrt(n)
    half = float(stats.t.ppf(0.5 + confidence / 2, df=n - 1)) * sem
    return Interval(mean, mean - half, mean + half, n)


def _finished(records: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    return [r for r in records if r.get("status") == "FINISHED"]


def paired_differences(
    base: Iterable[Mapping[str, Any]], variant: Iterable[Mapping[str, Any]], metric: str
) -> dict[int, tuple[float, float]]:
    """Seed → (base value, variant value) for seeds where both records have ``metric``."""
    b = {int(r["seed"]): r["metrics"].get(metric) for r in _finished(base)}
    v = {int(r["seed"]): r["metrics"].get(metric) for r in _finished(variant)}
    return {
        s: (float(b[s]), float(v[s]))
        for s in sorted(b.keys() & v.keys())
        if b[s] is not None and v[s] is not None
    }


def ablations(
    records: Iterable[Mapping[str, Any]],
    metrics: Mapping[str, Sequence[str]],
    higher_is_better: Mapping[str, Mapping[str, bool]] | None = None,
    confidence: float = 0.95,
) -> list[AblationResult]:
    """Compare every variant with its base model.

    Parameters
    ----------
    records
        Result records (any status; only ``FINISHED`` ones are compared).
    metrics
        Suite → metrics to compare (e.g. the suite's headline metrics).
    higher_is_better
        Suite → metric → direction (default: higher is better).
    confidence
        Coverage of the intervals.

    Returns
    -------
    list of AblationResult
        Sorted by suite, dataset, variant label and metric order; pairs with no common seed
        are left out.

    """
    higher_is_better = higher_is_better or {}
    from benchmarks.leaderboard.configs import suite_config_hash

    groups: dict[tuple[str, str, str, str], list[Mapping[str, Any]]] = {}
    for r in records:  # records of other suite settings (--quick) are never paired
        key = (r["suite"], r["dataset"]["name"], suite_config_hash(r), r["model"]["label"])
        groups.setdefault(key, []).append(r)
    out: list[AblationResult] = []
    for (suite, dataset, settings, label), recs in sorted(groups.items()):
        model = recs[0]["model"]
        if not model.get("variant"):
            continue
        base_label = str(model["name"])
        base = groups.get((suite, dataset, settings, base_label))
        if not base:
            continue
        for metric in metrics.get(suite, ()):
            pairs = paired_differences(base, recs, metric)
            if not pairs:
                continue
            b = np.array([p[0] for p in pairs.values()])
            v = np.array([p[1] for p in pairs.values()])
            out.append(
                AblationResult(
                    suite=suite,
                    dataset=dataset,
                    base=base_label,
                    variant=label,
                    metric=metric,
                    higher_is_better=bool(higher_is_better.get(suite, {}).get(metric, True)),
                    base_mean=float(b.mean()),
                    variant_mean=float(v.mean()),
                    diff=t_interval(v - b, confidence),
                    seeds=tuple(pairs),
                    confidence=confidence,
                )
            )
    return out
