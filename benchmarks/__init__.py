"""cgcbench's harness: task interface, suites, dataset registry, runner, tracking and CLI.

The Python API (:func:`run`, :func:`evaluate_embedding`, :func:`embed`) lives in
:mod:`benchmarks.api` and is re-exported here and as ``import cgcbench``; it is imported on
first use, so ``import benchmarks`` stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from benchmarks.api import embed, evaluate_embedding, records_frame, run

__all__ = ["__version__", "embed", "evaluate_embedding", "records_frame", "run"]


def __getattr__(name: str) -> Any:
    if name in ("embed", "evaluate_embedding", "records_frame", "run"):
        from benchmarks import api

        return getattr(api, name)
    raise AttributeError(f"module 'benchmarks' has no attribute {name!r}")
