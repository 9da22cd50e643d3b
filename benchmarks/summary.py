"""Aggregate records over seeds: mean ± sd per (suite, dataset, model) and metric."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class SummaryRow:
    """One (suite, dataset, model) group of records."""

    suite: str
    dataset: str
    model: str
    init: str
    is_control: bool
    statuses: dict[str, int]
    metrics: dict[str, tuple[float, float, int]] = field(default_factory=dict)
    """metric → (mean, sd, n seeds). sd is the sample sd (ddof=1), 0 for a single seed."""
    reasons: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    seeds: list[int] = field(default_factory=list)
    checkpoint_sha256: str | None = None

    def cell(self, metric: str, digits: int = 3) -> str:
        """``mean ± sd`` for display, or why there is no value."""
        if metric in self.metrics:
            mean, sd, n = self.metrics[metric]
            return f"{mean:.{digits}f} ± {sd:.{digits}f}" if n > 1 else f"{mean:.{digits}f}"
        if self.statuses.get("NOT_APPLICABLE"):
            return "n/a"
        if self.statuses.get("FAILED"):
            return "failed"
        return "—"


COLLAPSE_NOTE = "predicts (almost) one class (collapsed to a constant; no better than the majority control)"


def _collapsed(finished: list[dict[str, Any]], model: dict[str, Any]) -> set[str]:
    """Flag a non-control model whose annotation predictions collapsed to one class (any seed).

    Collapsed: one predicted class, or >= 95 % of the cells in one class with an accuracy no
    better than always answering the most common label (+0.01).
    """
    if model.get("is_control"):
        return set()
    def collapsed(m: dict[str, Any]) -> bool:
        if m.get("predicted_classes") == 1:
            return True
        top, const, acc = m.get("predicted_top_share"), m.get("constant_accuracy"), m.get("accuracy")
        return None not in (top, const, acc) and top >= 0.95 and acc <= const + 0.01

    n = sum(1 for r in finished if collapsed(r["metrics"]))
    return {f"{COLLAPSE_NOTE}: {n}/{len(finished)} seeds"} if n else set()


def summarize(records: Iterable[dict[str, Any]], metrics: Sequence[str] | None = None) -> list[SummaryRow]:
    """Group records by (suite, dataset, model label) and aggregate metrics over seeds."""
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for rec in records:
        key = (rec["suite"], rec["dataset"]["name"], rec["model"]["label"])
        groups.setdefault(key, []).append(rec)
    rows = []
    for (suite, dataset, model), recs in sorted(groups.items()):
        statuses: dict[str, int] = {}
        for r in recs:
            statuses[r["status"]] = statuses.get(r["status"], 0) + 1
        finished = [r for r in recs if r["status"] == "FINISHED"]
        names = metrics or sorted({m for r in finished for m in r["metrics"]})
        agg = {}
        for m in names:
            vals = np.array(
                [r["metrics"][m] for r in finished if r["metrics"].get(m) is not None], dtype=float
            )
            if vals.size:
                sd = float(vals.std(ddof=1)) if vals.size > 1 else 0.0
                agg[m] = (float(vals.mean()), sd, int(vals.size))
        first = recs[0]["model"]
        rows.append(
            SummaryRow(
                suite=suite,
                dataset=dataset,
                model=model,
                init=str(first.get("init") or "unknown"),
                is_control=bool(first.get("is_control", False)),
                statuses=statuses,
                metrics=agg,
                reasons=sorted({r["reason"] for r in recs if r.get("reason")} | _collapsed(finished, first)),
                errors=sorted(
                    {f"{r['error']['type']}: {r['error']['message'][:200]}" for r in recs if r.get("error")}
                ),
                seeds=sorted(r["seed"] for r in recs),
                checkpoint_sha256=first.get("checkpoint_sha256"),
            )
        )
    return rows
