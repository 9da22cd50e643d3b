"""Static leaderboard: result records → HTML site, Markdown tables and a versioned JSON file.

``cgcbench leaderboard build --records DIR --out leaderboard/`` (see :mod:`.cli`) runs
:func:`build`: :mod:`.load` reads and de-duplicates records (result directories or MLflow),
:mod:`.aggregate` computes mean ± sd over seeds and ranks, :mod:`.ablation` compares model
variants with their base model, :mod:`.assets` copies plots, :mod:`.html` and
:mod:`.markdown` render the outputs.
"""

from benchmarks.leaderboard.build import BuildResult, build

__all__ = ["BuildResult", "build"]
