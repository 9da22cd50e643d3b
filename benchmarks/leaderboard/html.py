"""Render the static HTML site: ``index.html`` (overview) and one ``suite-<name>.html`` per suite."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
from markupsafe import Markup

import benchmarks.leaderboard.templates as templates
from benchmarks.leaderboard.ablation import AblationResult
from benchmarks.leaderboard.aggregate import Provenance, Row, SuiteBoard
from benchmarks.leaderboard.assets import PLOT_KINDS, SiteImage
from benchmarks.leaderboard.charts import Bar, bar_chart
from benchmarks.leaderboard.configs import is_quick
from benchmarks.leaderboard.definitions import SCALING_RULE, UNRANKED_DATASETS
from benchmarks.leaderboard.site_info import DatasetInfo, MethodInfo

ROW_POLICY = (
    "A row averages only records with the same configuration (suite settings, dataset version, "
    "model string and model parameters; the seed aside). Different configurations of one model "
    "on one dataset, e.g. --quick and full settings, are different rows, tagged with what differs; "
    "a re-run of the same configuration and seed replaces the earlier record."
)


@dataclass
class SiteContext:
    """What every page shows in its footer and disclaimer."""

    generated_at: str
    version: str
    n_records: int
    sources: list[str]
    dropped: str = ""
    provenance_banner: str = ""
    provenance_clean: bool = True
    summary_svg: str = ""
    unscored: dict[str, str] = field(default_factory=dict)
    """Suite → why none of its models has a score (shown under the summary figure)."""


def _env() -> jinja2.Environment:
    loader = jinja2.DictLoader(
        {
            "base.html": templates.BASE,
            "macros.html": templates.MACROS,
            "index.html": templates.INDEX,
            "suite.html": templates.SUITE,
            "definitions.html": templates.DEFINITIONS,
        }
    )
    return jinja2.Environment(loader=loader, autoescape=True, trim_blocks=True, lstrip_blocks=True)


def suite_href(suite: str) -> str:
    """File name of a suite's page."""
    return f"suite-{re.sub(r'[^A-Za-z0-9_-]', '_', suite)}.html"


def anchor(text: str) -> str:
    """An HTML id made of ``text``."""
    return "d-" + re.sub(r"[^A-Za-z0-9_-]", "_", text)


def _num(value: float | None, digits: int = 3) -> str:
    return "—" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def _prov_view(row: Row) -> dict[str, Any]:
    p: Provenance = row.provenance
    wall = f"{p.wall_time_s[0]:.1f} s mean, {p.wall_time_s[1]:.1f} s max per run" if p.wall_time_s else "—"
    mem = f"{p.peak_rss_mb:.0f} MB RSS" if p.peak_rss_mb is not None else "—"
    if p.gpu_peak_mb is not None:
        mem += f", {p.gpu_peak_mb:.0f} MB GPU"
    summary = " · ".join(
        x
        for x in (
            f"data {p.dataset_version}",
            f"git {', '.join(p.git_commits)}",
            f"{p.wall_time_s[0]:.1f} s" if p.wall_time_s else "",
            f"{p.peak_rss_mb:.0f} MB" if p.peak_rss_mb is not None else "",
        )
        if x
    )
    return {
        "summary": summary,
        "dataset": row.summary.dataset,
        "version": p.dataset_version,
        "sha256": p.dataset_sha256,
        "model": row.display,
        "init": p.init,
        "checkpoints": p.checkpoint_sha256,
        "seeds": ", ".join(map(str, p.seeds)),
        "git": ", ".join(p.git_commits),
        "hardware": "; ".join(p.hardware),
        "wall": wall,
        "memory": mem,
        "packages": ", ".join(f"{k} {v}" for k, v in p.packages.items()) or "—",
        "records": p.record_ids,
    }


def _short_unranked(row: Row) -> str:
    why = row.unranked
    if row.is_control:
        return "control"
    if why in UNRANKED_DATASETS.values():
        return "fixture"
    if why.startswith("could not run"):
        return "n/a"
    if why.startswith("failed"):
        return "failed"
    if why.startswith("no value"):
        return "incomplete"
    if why.startswith("no control"):
        return "no controls"
    return "—"


def _row_view(row: Row, board: SuiteBoard, row_id: str) -> dict[str, Any]:
    s = row.summary
    cells = []
    na_reason = "; ".join(s.reasons) if s.reasons else ""
    for metric in board.meta.headline_metrics:
        stat = s.metrics.get(metric)
        rank = row.ranks.get(metric)
        title = ""
        if stat is None:
            title = f"not applicable: {na_reason}" if s.statuses.get("NOT_APPLICABLE") else ""
            if not title and s.statuses.get("FAILED"):
                title = "failed: " + "; ".join(s.errors)
        elif metric in row.control_reaches_best:
            title = "this control reaches the best model's mean"
        if stat is None:
            text, sd = s.cell(metric), ""
        else:
            text, sd = f"{stat[0]:.3f}", (f"±{stat[1]:.3f}" if stat[2] > 1 else "")
        cells.append(
            {
                "metric": metric,
                "text": text,
                "sd": sd,
                "sort": "" if stat is None else repr(stat[0]),
                "rank": (f"{rank:g}" if rank is not None else ""),
                "best": metric in row.best,
                "reach": metric in row.control_reaches_best,
                "na": stat is None,
                "ranked": board.meta.is_ranked(metric),
                "title": title,
            }
        )
    scaled = ", ".join(f"{m} {v:.2f}" for m, v in row.scaled.items()) or "—"
    return {
        "id": row_id,
        "suite": s.suite,
        "suite_href": suite_href(s.suite),
        "dataset": s.dataset,
        "anchor": anchor(s.dataset),
        "label": row.label,
        "display": row.display,
        "config_tag": row.config_tag,
        "config_hash": row.config_hash,
        "init": s.init,
        "is_control": row.is_control,
        "n_seeds": len(s.seeds),
        "seeds": ", ".join(map(str, s.seeds)),
        "cells": cells,
        "all_na": all(c["na"] for c in cells),
        "score": _num(row.score, 2) if row.score is not None else "—",
        "score_sort": "" if row.score is None else repr(row.score),
        "overall": f"{row.overall_rank:g}" if row.overall_rank is not None else _short_unranked(row),
        "overall_sort": "" if row.overall_rank is None else repr(row.overall_rank),
        "unranked": row.unranked,
        "scaled": scaled,
        "status": row.status_text,
        "prov": _prov_view(row),
    }


def _metric_views(board: SuiteBoard) -> list[dict[str, Any]]:
    return [
        {
            "name": m.name,
            "title": m.title,
            "high": m.higher_is_better,
            "first": "descending" if m.higher_is_better else "ascending",
            "ranked": m.ranked,
            "definition": m.definition,
            "source": m.source,
            "url": m.url,
            "why_not_ranked": m.why_not_ranked,
        }
        for m in board.meta.metrics
    ]


def _charts(rows: Sequence[Row], board: SuiteBoard) -> list[Markup]:
    out = []
    for metric in board.meta.headline_metrics:
        bars = [
            Bar(r.display, *r.summary.metrics[metric][:2], is_control=r.is_control, best=metric in r.best)
            for r in rows
            if metric in r.summary.metrics
        ]
        if bars:
            out.append(Markup(bar_chart(metric, bars, board.meta.better_high(metric))))
    return out


def _plots(
    rows: Sequence[Row], images: Mapping[str, list[SiteImage]]
) -> list[tuple[str, list[dict[str, Any]]]]:
    order = [k for k, _ in PLOT_KINDS] + ["other plot"]
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        finished = [r for r in row.records if r["status"] == "FINISHED" and images.get(r["record_id"])]
        if not finished:
            continue
        rec = finished[0]
        for img in images[rec["record_id"]]:
            by_kind.setdefault(img.kind, []).append(
                {"src": img.relpath, "model": row.label, "init": row.summary.init, "seed": rec["seed"]}
            )
    return [(k, by_kind[k]) for k in order if k in by_kind]


def _ablation_views(results: Sequence[AblationResult], init_of: Mapping[str, str]) -> list[dict[str, Any]]:
    out = []
    for a in results:
        improves = a.improves
        out.append(
            {
                "variant": a.variant,
                "base": a.base,
                "metric": a.metric,
                "high": a.higher_is_better,
                "init": init_of.get(a.variant, ""),
                "n": a.diff.n,
                "seeds": ", ".join(map(str, a.seeds)),
                "base_mean": repr(a.base_mean),
                "variant_mean": repr(a.variant_mean),
                "base_text": _num(a.base_mean),
                "variant_text": _num(a.variant_mean),
                "diff": repr(a.diff.mean),
                "diff_text": f"{a.diff.mean:+.3f}",
                "interval": a.interval_text(),
                "css": "" if improves is None else ("improve" if improves else "worsen"),
            }
        )
    return out


def _run_views(rows: Sequence[Row]) -> list[dict[str, Any]]:
    out = []
    for row in rows:
        for r in row.records:
            prov = r.get("provenance") or {}
            res = prov.get("resources") or {}
            git = prov.get("git") or {}
            hw = prov.get("hardware") or {}
            status = r["status"].lower().replace("_", " ")
            if r.get("reason"):
                status += f": {r['reason']}"
            elif r.get("error"):
                status += f": {r['error'].get('type')}: {str(r['error'].get('message'))[:160]}"
            out.append(
                {
                    "model": row.label,
                    "display": row.display,
                    "is_control": row.is_control,
                    "seed": r["seed"],
                    "status": status,
                    "init": r["model"].get("init"),
                    "checkpoint": r["model"].get("checkpoint_sha256") or "—",
                    "git": str(git.get("commit") or "unknown")[:12] + ("+dirty" if git.get("dirty") else ""),
                    "wall": _num(res.get("wall_time_s"), 1),
                    "wall_v": res.get("wall_time_s") if res.get("wall_time_s") is not None else "",
                    "rss": _num(res.get("peak_rss_mb"), 0),
                    "rss_v": res.get("peak_rss_mb") if res.get("peak_rss_mb") is not None else "",
                    "gpu": _num(res.get("gpu_peak_mb"), 0),
                    "gpu_v": res.get("gpu_peak_mb") if res.get("gpu_peak_mb") is not None else "",
                    "hardware": ", ".join(
                        str(x)
                        for x in (hw.get("gpu") or hw.get("device"), hw.get("cpu"), hw.get("platform"))
                        if x
                    ),
                    "record_id": r["record_id"],
                    "run_id": (r.get("mlflow") or {}).get("run_id"),
                }
            )
    return out


def _filter_options(boards: Sequence[SuiteBoard]) -> dict[str, list[str]]:
    rows = [r for b in boards for r in b.rows]
    return {
        "suite": sorted({b.meta.name for b in boards}),
        "dataset": sorted({r.summary.dataset for r in rows}),
        "model": sorted({r.label for r in rows}),
        "init": sorted({r.summary.init for r in rows}),
    }


def render_site(
    out: Path,
    boards: Sequence[SuiteBoard],
    ablations: Sequence[AblationResult],
    images: Mapping[str, list[SiteImage]],
    ctx: SiteContext,
    datasets_info: Mapping[str, DatasetInfo] | None = None,
    methods_info: Sequence[MethodInfo] = (),
) -> list[Path]:
    """Write ``index.html``, ``definitions.html`` and the suite pages into ``out``."""
    datasets_info = datasets_info or {}
    env = _env()
    nav = [{"name": b.meta.name, "href": suite_href(b.meta.name)} for b in boards]
    common = {
        "css": Markup(templates.CSS),
        "js": Markup(templates.JS),
        "suites": nav,
        "generated_at": ctx.generated_at,
        "version": ctx.version,
        "n_records": ctx.n_records,
        "sources": ctx.sources,
        "dropped": ctx.dropped,
        "provenance_banner": ctx.provenance_banner,
        "provenance_clean": ctx.provenance_clean,
        "row_policy": ROW_POLICY,
        "scaling_rule": SCALING_RULE,
        "filter_options": _filter_options(boards),
        "n_pretrained": sum(r.summary.init == "pretrained" for b in boards for r in b.rows),
        "n_quick": sum(any(is_quick(rec) for rec in r.records) for b in boards for r in b.rows),
        "n_rows": sum(len(b.rows) for b in boards),
    }
    written = []
    suites_view = []
    for b in boards:
        suites_view.append(
            {
                "name": b.meta.name,
                "href": suite_href(b.meta.name),
                "description": b.meta.description,
                "metrics": _metric_views(b),
                "references": b.meta.references.describe() if b.meta.references else "none declared",
                "rows": [_row_view(r, b, f"i-{b.meta.name}-{i}") for i, r in enumerate(b.rows)],
            }
        )
    index = env.get_template("index.html").render(
        **{**common, "suites": suites_view},
        page="index",
        title="Overview",
        summary_svg=Markup(ctx.summary_svg),
        unscored=ctx.unscored,
    )
    (out / "index.html").write_text(index, encoding="utf-8")
    written.append(out / "index.html")
    on_board = sorted({d.dataset for b in boards for d in b.datasets})
    page = env.get_template("definitions.html").render(
        **{**common, "suites": suites_view},
        page="definitions",
        title="Definitions",
        methods=[m.view() for m in methods_info],
        datasets=[datasets_info[d].view() for d in on_board if d in datasets_info],
        unranked_datasets=UNRANKED_DATASETS,
    )
    (out / "definitions.html").write_text(page, encoding="utf-8")
    written.append(out / "definitions.html")
    for b in boards:
        datasets = []
        for d in b.datasets:
            first = d.rows[0].records[0]["dataset"]
            init_of = {r.label: r.summary.init for r in d.rows}
            datasets.append(
                {
                    "name": d.dataset,
                    "anchor": anchor(d.dataset),
                    "version": first.get("version"),
                    "sha256": first.get("sha256") or {},
                    "rows": [_row_view(r, b, f"r-{anchor(d.dataset)}-{i}") for i, r in enumerate(d.rows)],
                    "card": datasets_info[d.dataset].view() if d.dataset in datasets_info else None,
                    "unranked": UNRANKED_DATASETS.get(d.dataset, ""),
                    "charts": _charts(d.rows, b),
                    "plots": _plots(d.rows, images),
                    "ablations": _ablation_views(
                        [a for a in ablations if a.suite == b.meta.name and a.dataset == d.dataset], init_of
                    ),
                    "runs": _run_views(d.rows),
                }
            )
        view = {
            "name": b.meta.name,
            "description": b.meta.description,
            "references": b.meta.references.describe() if b.meta.references else "none declared",
            "metrics": _metric_views(b),
            "datasets": datasets,
        }
        page = env.get_template("suite.html").render(
            **common, page=b.meta.name, title=b.meta.name, suite=view
        )
        path = out / suite_href(b.meta.name)
        path.write_text(page, encoding="utf-8")
        written.append(path)
    return written
