"""Build the leaderboard: load records, aggregate, copy plots, write HTML, Markdown and JSON."""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from benchmarks.leaderboard.ablation import AblationResult, ablations
from benchmarks.leaderboard.aggregate import SuiteBoard, build_boards, cross_suite, unscored_suites
from benchmarks.leaderboard.assets import AssetCopier, SiteImage
from benchmarks.leaderboard.charts import heatmap
from benchmarks.leaderboard.html import SiteContext, render_site
from benchmarks.leaderboard.load import LoadReport, load_records
from benchmarks.leaderboard.markdown import render_json, render_markdown
from benchmarks.leaderboard.publish import ProvenanceCheck, check_provenance, require_clean
from benchmarks.leaderboard.site_info import dataset_info, method_infos

GENERATED = ("index.html", "definitions.html", "summary.svg", "results.json", "README.md")
"""Files the build owns in the output folder (plus ``suite-*.html`` and ``assets/``)."""


@dataclass
class BuildResult:
    """What :func:`build` wrote."""

    out: Path
    boards: list[SuiteBoard]
    ablations: list[AblationResult]
    load: LoadReport
    provenance: ProvenanceCheck
    files: list[Path] = field(default_factory=list)
    assets_bytes: int = 0
    skipped_images: list[str] = field(default_factory=list)

    @property
    def index(self) -> Path:
        """The overview page."""
        return self.out / "index.html"


def _version() -> str:
    try:
        return version("cgcbench")
    except PackageNotFoundError:
        return "unknown"


def _clean(out: Path) -> None:
    """Remove what a previous build wrote (never other files, e.g. a committed screenshot)."""
    for name in GENERATED:
        (out / name).unlink(missing_ok=True)
    for page in out.glob("suite-*.html"):
        page.unlink()
    if (out / "assets").is_dir():
        shutil.rmtree(out / "assets")


def build(
    out: Path,
    records_dirs: Sequence[Path] = (),
    tracking_uris: Sequence[str] = (),
    *,
    max_image_px: int = 1400,
    max_assets_mb: float = 40.0,
    publish: bool = False,
    allow_mixed: bool = False,
) -> BuildResult:
    """Build the static leaderboard into ``out``.

    Parameters
    ----------
    out
        Output folder; created if needed. Files of a previous build are replaced.
    records_dirs
        Result directories (``records/`` + ``artifacts/``).
    tracking_uris
        MLflow tracking URIs whose ``cgcbench/*`` runs carry a ``record.json``.
    max_image_px
        Plot images larger than this (either side) are downscaled.
    max_assets_mb
        Cap on the total size of copied plots; later images are skipped beyond it.
    publish
        Refuse (before writing anything) records made from a dirty working tree, without a
        commit or from more than one commit (:func:`.publish.require_clean`).
    allow_mixed
        With ``publish``, build anyway; the banner of every page says the provenance is mixed.

    Returns
    -------
    BuildResult
        The boards, ablations and the files written.

    Raises
    ------
    InputError
        With ``publish`` and records of mixed provenance, unless ``allow_mixed``.

    """
    report = load_records(records_dirs, tracking_uris)
    prov = check_provenance(report.records, allow_mixed=allow_mixed)
    if publish:
        require_clean(prov)
    recs = [r.data for r in report.records]
    boards = build_boards(recs)
    abl = ablations(
        recs,
        {b.meta.name: b.meta.headline_metrics for b in boards},
        {b.meta.name: dict(b.meta.higher_is_better) for b in boards},
    )
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    _clean(out)
    copier = AssetCopier(out, max_px=max_image_px, max_total_mb=max_assets_mb)
    shown = _shown_records(boards)
    images: dict[str, list[SiteImage]] = {}
    for rec in report.records:
        if rec.record_id in shown:
            images[rec.record_id] = copier.copy(
                rec.record_id, list(rec.data.get("artifacts") or []), rec.resolve
            )
    dropped = []
    if report.duplicates:
        dropped.append(f"{report.duplicates} duplicate record id(s) ignored")
    if report.superseded:
        dropped.append(f"{len(report.superseded)} record(s) superseded by a later run of the same cell")
    summary = summary_svg(boards)
    (out / "summary.svg").write_text(summary, encoding="utf-8")
    ctx = SiteContext(
        generated_at=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        version=_version(),
        n_records=len(recs),
        sources=report.sources,
        dropped="; ".join(dropped),
        provenance_banner=prov.banner,
        provenance_clean=prov.clean,
        summary_svg=summary,
    )
    datasets = {d.dataset: dataset_info(d.dataset) for b in boards for d in b.datasets}
    ctx.unscored = unscored_suites(boards)
    files = render_site(out, boards, abl, images, ctx, datasets, method_infos(recs))
    (out / "README.md").write_text(render_markdown(boards, abl, ctx), encoding="utf-8")
    extra = {
        "provenance": prov.to_json(),
        "superseded": report.superseded,
        "skipped_images": copier.skipped,
    }
    (out / "results.json").write_text(render_json(boards, abl, ctx, extra), encoding="utf-8")
    files += [out / "summary.svg", out / "README.md", out / "results.json"]
    return BuildResult(out, boards, abl, report, prov, files, copier.total_bytes, copier.skipped)


def summary_svg(boards: Sequence[SuiteBoard]) -> str:
    """The cross-suite figure: methods × suites, mean control-scaled score (:func:`.cross_suite`)."""
    values = cross_suite(boards)
    suites = [b.meta.name for b in boards]
    controls = frozenset(r.display for b in boards for r in b.rows if r.is_control)
    methods = sorted({m for m, _ in values})
    mean = {m: sum(v[0] for (mm, _), v in values.items() if mm == m) for m in methods}
    count = {m: sum(1 for (mm, _) in values if mm == m) for m in methods}
    methods.sort(key=lambda m: (m in controls, -mean[m] / count[m], m))
    title = "Control-scaled score per method and suite (0 = negative control, 1 = positive control)"
    return heatmap(methods, suites, values, controls, title)


def _shown_records(boards: Sequence[SuiteBoard]) -> set[str]:
    """Record ids whose plots the suite pages show: the lowest finished seed of each row."""
    shown = set()
    for b in boards:
        for row in b.rows:
            finished = [r for r in row.records if r["status"] == "FINISHED" and r.get("artifacts")]
            if finished:
                shown.add(str(finished[0]["record_id"]))
    return shown
