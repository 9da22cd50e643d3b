"""Static leaderboard: result records → HTML site, Markdown tables and a versioned JSON file.

``cgcbench leaderboard build --records DIR --out leaderboard/`` (see :mod:`.cli`) runs
:func:`build`: :mod:`.load` reads and de-duplicates records (result directories or MLflow),
:mod:`.aggregate` computes mean ± sd over seeds and ranks, :mod:`.ablation` compares model
variants with their base model, :mod:`.assets` copies plots, :mod:`.html` and
:mod:`.markdown` render the outputs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from benchmarks.leaderboard.build import BuildResult, build


def __getattr__(name: str) -> Any:
    # Loaded on first use: ``cgcbench --help`` mounts the leaderboard commands without
    # importing the renderers (pandas, jinja2, charts).
    if name in ("BuildResult", "build"):
        import importlib

        value = getattr(importlib.import_module("benchmarks.leaderboard.build"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["BuildResult", "build"]
