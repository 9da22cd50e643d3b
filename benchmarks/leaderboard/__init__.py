"""Static leaderboard: result records → HTML site, Markdown tables and a versioned JSON file.

``cgcbench leaderboard build --records DIR --out leaderboard/`` (see :mod:`.cli`) runs
:func:`build`: :mod:`.load` reads and de-duplicates records (result directories or MLflow),
:mod:`.publish` checks their provenance (``--publish``), :mod:`.aggregate` groups them into
configuration-pure rows (:mod:`.configs`), computes mean ± sd over seeds, control-scaled scores
(:mod:`.scaling`) and ranks of the metrics :mod:`.definitions` declares ranked,
:mod:`.ablation` compares model variants with their base model, :mod:`.assets` copies plots,
:mod:`.site_info` reads dataset and method cards, :mod:`.html` and :mod:`.markdown` render the
outputs.
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
