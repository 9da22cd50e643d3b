"""Build the leaderboard: load records, aggregate, copy plots, write HTML, Markdown and JSON."""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from benchmarks.leaderboard.ablation import AblationResult, ablations
from benchmarks.leaderboard.aggregate import SuiteBoard, build_boards
from benchmarks.leaderboard.assets import AssetCopier, SiteImage
from benchmarks.leaderboard.html import SiteContext, render_site
from benchmarks.leaderboard.load import LoadReport, load_records
from benchmarks.leaderboard.markdown import render_json, render_markdown

GENERATED = ("index.html", "results.json", "README.md")
"""Files the build owns in the output folder (plus ``suite-*.html`` and ``assets/``)."""


@dataclass
class BuildResult:
    """What :func:`build` wrote."""

    out: Path
    boards: list[SuiteBoard]
    ablations: list[AblationResult]
    load: LoadReport
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

    Returns
    -------
    BuildResult
        The boards, ablations and the files written.

    """
    report = load_records(records_dirs, tracking_uris)
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
    ctx = SiteContext(
        generated_at=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        version=_version(),
        n_records=len(recs),
        sources=report.sources,
        dropped="; ".join(dropped),
    )
    files = render_site(out, boards, abl, images, ctx)
    (out / "README.md").write_text(render_markdown(boards, abl, ctx), encoding="utf-8")
    extra = {"superseded": report.superseded, "skipped_images": copier.skipped}
    (out / "results.json").write_text(render_json(boards, abl, ctx, extra), encoding="utf-8")
    files += [out / "README.md", out / "results.json"]
    return BuildResult(out, boards, abl, report, files, copier.total_bytes, copier.skipped)


def _shown_records(boards: Sequence[SuiteBoard]) -> set[str]:
    """Record ids whose plots the suite pages show: the lowest finished seed of each row."""
    shown = set()
    for b in boards:
        for row in b.rows:
            finished = [r for r in row.records if r["status"] == "FINISHED" and r.get("artifacts")]
            if finished:
                shown.add(str(finished[0]["record_id"]))
    return shown
