"""``cgcbench leaderboard``: build the static leaderboard site, and screenshot its overview."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from benchmarks.errors import CgcbenchError

app = typer.Typer(
    help="Build the static leaderboard (HTML + Markdown + JSON) from result records.",
    no_args_is_help=True,
)
console = Console(stderr=True)


@app.command("build")
def build_cmd(
    records: Annotated[
        list[Path] | None,
        typer.Option(
            "--records",
            help="a results dir (records/ + artifacts/), as written by cgcbench run; repeatable",
        ),
    ] = None,
    tracking_uri: Annotated[
        list[str] | None,
        typer.Option(help="MLflow tracking URI whose cgcbench/* runs carry record.json; repeatable"),
    ] = None,
    out: Annotated[Path, typer.Option(help="output folder")] = Path("leaderboard"),
    max_image_px: Annotated[int, typer.Option(help="downscale plots larger than this")] = 1400,
    max_assets_mb: Annotated[float, typer.Option(help="cap on the total size of copied plots")] = 40.0,
    publish: Annotated[
        bool,
        typer.Option(
            "--publish",
            help="refuse records made from a dirty working tree or from more than one commit (exit 2)",
        ),
    ] = False,
    allow_mixed: Annotated[
        bool,
        typer.Option(
            "--allow-mixed",
            help="with --publish: build anyway; every page's banner says the provenance is mixed",
        ),
    ] = False,
) -> None:
    """Turn result records into a static site (index.html), README.md and results.json.

    Without --records or --tracking-uri, reads $CGCBENCH_RESULTS or ./cgcbench-results.
    """
    import os

    from benchmarks.leaderboard.build import build

    dirs = list(records or [])
    uris = list(tracking_uri or [])
    if not dirs and not uris:
        default = Path(os.environ.get("CGCBENCH_RESULTS", "cgcbench-results"))
        if default.is_dir():
            dirs = [default]
    result = build(
        out,
        dirs,
        uris,
        max_image_px=max_image_px,
        max_assets_mb=max_assets_mb,
        publish=publish,
        allow_mixed=allow_mixed,
    )
    n_rows = sum(len(b.rows) for b in result.boards)
    console.print(
        f"{len(result.load.records)} records → {n_rows} rows in {len(result.boards)} suite(s), "
        f"{len(result.ablations)} ablation comparison(s), plots {result.assets_bytes / 1e6:.1f} MB"
    )
    for skipped in result.skipped_images[:20]:
        console.print(f"[yellow]image skipped:[/yellow] {skipped}")
    if result.load.superseded:
        console.print(
            f"{len(result.load.superseded)} superseded record(s) left out (a later run of the same cell)"
        )
    style = "green" if result.provenance.clean else "yellow"
    console.print(f"[{style}]{result.provenance.banner}[/{style}]")
    console.print(f"open {result.index.resolve().as_uri()}")


@app.command("screenshot")
def screenshot_cmd(
    site: Annotated[Path, typer.Argument(help="a built leaderboard folder")] = Path("leaderboard"),
    dest: Annotated[Path | None, typer.Option("--out", help="PNG path (default SITE/overview.png)")] = None,
    width: Annotated[int, typer.Option(help="viewport width")] = 1280,
    height: Annotated[int, typer.Option(help="viewport height")] = 820,
) -> None:
    """Save a PNG of the overview with headless Chromium (for the README)."""
    from benchmarks.leaderboard.browser import missing_requirements, screenshot

    if not (site / "index.html").is_file():
        raise CgcbenchError(f"{site}/index.html not found; run cgcbench leaderboard build first")
    reason = missing_requirements()
    if reason:
        raise CgcbenchError(f"cannot take a screenshot: {reason}")
    path = screenshot(site, dest or site / "overview.png", width=width, height=height)
    console.print(f"wrote {path}")
