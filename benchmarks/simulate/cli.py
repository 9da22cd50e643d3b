"""``cgcbench datasets simulate NAME``: materialise a simulated dataset card (SERGIO)."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from benchmarks.errors import CgcbenchError, InputError

app = typer.Typer(help="Simulated datasets (SERGIO).", no_args_is_help=True)

CELL_KEY = {"batches": "cells_per_type", "perturb": "cells_per_condition", "bulk_ko": "cells_per_replicate"}
"""What ``--cells`` sets in each design."""


@app.callback()
def _group() -> None:
    """Simulated datasets (SERGIO)."""


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """``key=value`` strings → dict; values parsed as JSON when they can be (numbers, lists)."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise InputError(f"--set {item!r}: expected KEY=VALUE, e.g. --set n_genes=200")
        try:
            out[key.strip()] = json.loads(raw)
        except json.JSONDecodeError:
            out[key.strip()] = raw
    return out


@app.command("simulate")
def simulate_command(
    name: Annotated[str, typer.Argument(help="A dataset card with kind='simulated', e.g. sergio_perturb.")],
    out: Annotated[Path | None, typer.Option("--out", help="Also copy the h5ad to this path.")] = None,
    cells: Annotated[
        int | None,
        typer.Option(
            "--cells",
            help="Cells per unit: per cell type (batches), per condition (perturb), per replicate (bulk_ko).",
        ),
    ] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="Override a [simulation] parameter: KEY=VALUE (repeatable)."),
    ] = None,
    n_jobs: Annotated[
        int | None, typer.Option("--jobs", help="Worker processes (output does not change).")
    ] = None,
) -> None:
    """Simulate NAME (cached by its parameters) and print where the h5ad is."""
    from benchmarks.data.cards import get_card
    from benchmarks.simulate import card_params, materialize

    try:
        card = get_card(name)
        overrides = parse_overrides(set_ or [])
        if cells is not None:
            design = card_params(card, overrides)["design"]
            overrides[CELL_KEY[design]] = cells
        started = time.perf_counter()
        path = materialize(card, overrides=overrides, n_jobs=n_jobs)
        elapsed = time.perf_counter() - started
        if out is not None:
            out.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, out)
            path = out
    except CgcbenchError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=2) from exc
    typer.echo(f"{path}  ({elapsed:.1f} s)")
