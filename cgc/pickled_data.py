"""Allow-list pieces shared by the readers of the official release's pickles.

The official CGCompass release ships pickles that hold pandas Series of NumPy arrays
(``embeding.pickle``; ``tf_s``/``tf_s_inv`` inside the DGL graph files). Their readers
(:mod:`cgc.official_weights`, :mod:`cgc.official_graphs`) never unpickle freely: each allows
:data:`SERIES_GLOBALS` plus the few globals of its own format, and resolves NumPy's globals
with :func:`numpy_global`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

SERIES_GLOBALS: frozenset[tuple[str, str]] = frozenset(
    {
        ("pandas.core.series", "Series"),
        ("pandas.core.indexes.base", "_new_Index"),
        ("pandas.core.indexes.base", "Index"),
        ("pandas.core.indexes.numeric", "Int64Index"),
        ("pandas.core.indexes.range", "RangeIndex"),
        ("pandas.core.internals.managers", "SingleBlockManager"),
        ("pandas.core.internals.blocks", "new_block"),
        ("pandas._libs.internals", "_unpickle_block"),
        ("builtins", "slice"),
        ("collections", "OrderedDict"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
    }
)
"""``(module, name)`` globals a pickled pandas Series of NumPy arrays names (pandas 1 and 2)."""


def numpy_global(module: str, name: str) -> Any:
    """The NumPy object a pickle names as ``module.name``, under NumPy 1 or 2.

    NumPy 2 renamed ``numpy.core`` to ``numpy._core``; a pickle written under either names
    its own spelling, so both resolve to the installed module.
    """
    if module == "numpy":
        return getattr(np, name)
    core = np._core if hasattr(np, "_core") else np.core  # type: ignore[attr-defined]
    return getattr(getattr(core, module.split(".")[-1]), name)
