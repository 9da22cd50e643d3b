"""``cgcbench weights list|verify``: official releases and local copies of them.

Only typer and rich are imported here; torch and the loaders are imported inside the commands.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(
    help="Official pretrained releases: where to get them, and check a local copy.", no_args_is_help=True
)


@app.command("list")
def list_releases() -> None:
    """Print each supported release: model, download location, files, published sha256."""
    from benchmarks.weights import RELEASES

    table = Table(title="supported pretrained releases (download by hand; nothing is fetched)")
    for col in ("release", "model", "download", "files", "use"):
        table.add_column(col, overflow="fold")
    for r in RELEASES:
        table.add_row(r.name, r.model, r.url, "\n".join(r.files), r.how)
    console = Console(width=200)
    console.print(table)
    console.print(
        "sha256 of release files (sha256sum format; large weight files have no published "
        "checksum — `cgcbench weights verify PATH` prints theirs):"
    )
    for r in RELEASES:
        for name, sha in r.sha256.items():
            console.print(f"{sha}  {r.name}/{name}", soft_wrap=True)


@app.command("verify")
def verify_release(
    path: Annotated[Path, typer.Argument(help="a downloaded release file or directory")],
) -> None:
    """Check PATH (format, consistency, safe loading) and print its sha256; writes nothing."""
    from benchmarks.weights import verify

    found = verify(path)
    console = Console(width=200)
    console.print(f"[bold]{found.path}[/bold]: {found.format} — release [bold]{found.release}[/bold]")
    for name, sha in found.files.items():
        console.print(f"  sha256 {name}: {sha}")
    for check in found.checks:
        console.print(f"  ok: {check}")
