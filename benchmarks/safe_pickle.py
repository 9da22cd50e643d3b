"""Read pickle files that a user or a dataset card supplies, without running code from them.

Some official releases ship their vocabularies as pickles (Geneformer's token, median and
name → id dictionaries; GEARS's ``gene2go_all.pkl``). :func:`pickle.load` would run any
callable such a file names, so a hostile vocabulary directory or card file could execute code.
:func:`load_plain_pickle` uses a restricted unpickler instead:

* containers and scalars pickled natively (``dict``, ``list``, ``tuple``, ``set``,
  ``frozenset``, ``str``, ``bytes``, ``int``, ``float``, ``bool``, ``None``) need no global and
  are always allowed;
* the only globals allowed are the ones in :data:`ALLOWED_GLOBALS`: the builtin container
  types (older pickle protocols name them), ``collections.OrderedDict``, ``_codecs.encode``
  (protocol 2 stores bytes through it), and NumPy scalars
  (``numpy.dtype`` plus ``numpy.core.multiarray.scalar``), because Geneformer's dictionaries
  store ``numpy.float32`` / ``numpy.int64`` values. NumPy dtypes are further limited to
  booleans, integers, floats and strings: an object dtype is refused.

Anything else — a class, a function, ``os.system``, ``builtins.exec`` — raises
:class:`~benchmarks.errors.InputError` naming the file and the refused global.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any

from benchmarks.errors import InputError

ALLOWED_GLOBALS: frozenset[tuple[str, str]] = frozenset(
    {
        ("builtins", "dict"),
        ("builtins", "list"),
        ("builtins", "tuple"),
        ("builtins", "set"),
        ("builtins", "frozenset"),
        ("builtins", "str"),
        ("builtins", "bytes"),
        ("builtins", "int"),
        ("builtins", "float"),
        ("builtins", "bool"),
        ("__builtin__", "set"),
        ("collections", "OrderedDict"),
        ("_codecs", "encode"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
    }
)
"""``(module, name)`` pairs a plain-data pickle may reference (see the module docstring)."""

_SAFE_DTYPE_KINDS = frozenset("biufUS")
"""NumPy dtype kinds allowed for scalars: bool, int, uint, float, unicode, bytes."""


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, fh: io.BufferedReader, where: str) -> None:
        super().__init__(fh)
        self.where = where

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in ALLOWED_GLOBALS:
            raise InputError(
                f"{self.where}: refused to unpickle {module}.{name} — only plain data (dicts, "
                "lists, strings, numbers, NumPy scalars) is read from pickle files; replace the "
                "file with the official release"
            )
        if module.startswith("numpy"):
            import numpy as np

            if name == "dtype":
                return _checked_dtype(self.where)
            core = np._core if hasattr(np, "_core") else np.core  # numpy 2 renamed numpy.core
            return core.multiarray.scalar
        return super().find_class(module, name)


def _checked_dtype(where: str) -> Any:
    import numpy as np

    def make(spec: Any, *args: Any) -> Any:
        dt = np.dtype(spec, *args)
        if dt.kind not in _SAFE_DTYPE_KINDS:
            raise InputError(f"{where}: refused NumPy dtype {dt} in a pickle (only numbers and strings)")
        return dt

    return make


def load_plain_pickle(path: str | Path) -> Any:
    """Unpickle ``path`` allowing only plain data (see :data:`ALLOWED_GLOBALS`).

    Parameters
    ----------
    path
        A pickle file from a user directory or a dataset card.

    Returns
    -------
    Any
        The unpickled dicts, lists, strings and numbers.

    Raises
    ------
    InputError
        If the file references any other global, or is not a readable pickle.

    """
    path = Path(path)
    with open(path, "rb") as fh:
        try:
            return _RestrictedUnpickler(fh, str(path)).load()
        except InputError:
            raise
        except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as exc:
            raise InputError(
                f"{path}: not a readable pickle of plain data ({type(exc).__name__}: {exc})"
            ) from exc
