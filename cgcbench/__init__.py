"""cgcbench from Python: ``import cgcbench as cb``.

``cb.run(suite, models, datasets=None, adata=None, seeds=(0,), ...)`` runs the same matrix as
``cgcbench run`` and returns a :class:`pandas.DataFrame`; ``cb.evaluate_embedding(adata,
obsm_key, suite, label_key, batch_key)`` scores an embedding you already have beside the
suite's controls; ``cb.embed(adata, model="cgc")`` writes a model's cell embeddings to
``adata.obsm``. See :mod:`benchmarks.api`. Importing this package is cheap: the harness (and
torch) load on the first call.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from benchmarks import __version__

if TYPE_CHECKING:
    from benchmarks.api import embed, evaluate_embedding, records_frame, run

__all__ = ["__version__", "embed", "evaluate_embedding", "records_frame", "run"]


def __getattr__(name: str) -> Any:
    if name in ("embed", "evaluate_embedding", "records_frame", "run"):
        from benchmarks import api

        return getattr(api, name)
    raise AttributeError(f"module 'cgcbench' has no attribute {name!r}")
