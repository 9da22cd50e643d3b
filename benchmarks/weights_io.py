"""Read user-supplied weight files without running code from them.

Every ``torch.load`` of a file a user names goes through :func:`load_tensor_file`, which uses
``torch.load(weights_only=True)``: PyTorch's restricted unpickler rebuilds tensors, containers,
strings and numbers only. A file that needs arbitrary unpickling (a pickled model object, a
``__reduce__`` payload) is refused, as are truncated files and files that are not PyTorch
archives; each failure is an :class:`~benchmarks.errors.InputError` with a one-line message.
torch is imported inside the functions, so importing this module costs nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from benchmarks.errors import InputError


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__


def load_tensor_file(path: str | Path, what: str) -> Any:
    """Return the object stored in a PyTorch file, read with ``weights_only=True``.

    Parameters
    ----------
    path
        The ``.pt`` / ``.bin`` / ``.ckpt`` file.
    what
        What the file is meant to be (used in messages), e.g. ``"scGPT best_model.pt"``.

    Raises
    ------
    InputError
        The file is missing, truncated, not a PyTorch archive, or holds objects outside the
        ``weights_only`` allow-list.

    """
    import pickle

    import torch

    f = Path(path)
    if not f.is_file():
        raise InputError(f"{f}: {what} not found; pass the path of the downloaded file")
    try:
        return torch.load(f, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise InputError(
            f"{f}: refused to load {what}: it holds objects other than tensors, containers and "
            f"numbers, which torch.load(weights_only=True) does not rebuild ({_first_line(exc)[:80]}); "
            "it is not a weights file, or was saved as a whole pickled model — re-save its "
            "state_dict() with torch.save"
        ) from exc
    except (RuntimeError, KeyError, EOFError, ValueError, OSError, IndexError) as exc:
        size = f.stat().st_size
        raise InputError(
            f"{f}: cannot read {what} ({size:,} bytes): the file is truncated or not a PyTorch "
            f"file ({_first_line(exc)[:120]}); download it again and check its sha256 "
            "(cgcbench weights list)"
        ) from exc


def tensors_only(obj: Any, path: str | Path, what: str) -> dict[str, Any]:
    """Return ``obj`` as a ``{name: tensor}`` dict, or refuse it naming the first non-tensor.

    Raises
    ------
    InputError
        ``obj`` is not a mapping of parameter names to tensors.

    """
    import torch

    if not isinstance(obj, Mapping) or not obj:
        raise InputError(
            f"{path}: {what} holds no tensor state dict (found {type(obj).__name__}); pass the "
            "release's weight file"
        )
    bad = [str(k) for k, v in obj.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise InputError(
            f"{path}: {what} holds no tensor state dict ({len(bad)} of {len(obj)} entries are not "
            f"tensors, e.g. {bad[0]!r}); pass the release's weight file"
        )
    return {str(k): v for k, v in obj.items()}


def load_state_dict(path: str | Path, what: str) -> dict[str, Any]:
    """:func:`load_tensor_file` + :func:`tensors_only`: a flat ``{name: tensor}`` state dict."""
    return tensors_only(load_tensor_file(path, what), path, what)


def safetensors_names(path: str | Path, what: str) -> dict[str, tuple[int, ...]]:
    """Return ``{name: shape}`` of a ``.safetensors`` file (header only; no code can run).

    Raises
    ------
    InputError
        The file is missing, truncated or not a safetensors file.

    """
    from safetensors import safe_open

    f = Path(path)
    if not f.is_file():
        raise InputError(f"{f}: {what} not found; pass the path of the downloaded file")
    try:
        with safe_open(str(f), framework="pt", device="cpu") as fh:
            return {k: tuple(fh.get_slice(k).get_shape()) for k in fh.keys()}  # noqa: SIM118
    except Exception as exc:  # safetensors raises its own SafetensorError for every defect
        raise InputError(
            f"{f}: cannot read {what} ({f.stat().st_size:,} bytes): the file is truncated or not a "
            f"safetensors file ({_first_line(exc)[:120]}); download it again and check its sha256"
        ) from exc


def load_pickled_tensors(path: str | Path, what: str) -> Any:
    """Unpickle a plain ``pickle.dump`` of data that may contain tensors, without running code.

    Some releases pickle configs holding tensors with :mod:`pickle` rather than
    :func:`torch.save` (GEARS's ``config.pkl`` holds its GO / co-expression graphs). A tensor
    pickles as ``torch._utils._rebuild_tensor_v2`` over a storage serialised by
    ``torch.storage._load_from_bytes`` — which would call ``torch.load(weights_only=False)``.
    This unpickler allows the plain-data globals of :mod:`benchmarks.safe_pickle` plus those
    two, and rebuilds each storage with ``torch.load(weights_only=True)``. Anything else is
    refused with an :class:`~benchmarks.errors.InputError`.
    """
    import io
    import pickle

    import torch

    from benchmarks.safe_pickle import ALLOWED_GLOBALS

    f = Path(path)

    def storage_from_bytes(b: bytes) -> Any:
        return torch.load(io.BytesIO(b), map_location="cpu", weights_only=True)

    class _Unpickler(pickle.Unpickler):
        def find_class(self, module: str, name: str) -> Any:
            if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
                return torch._utils._rebuild_tensor_v2
            if (module, name) == ("torch.storage", "_load_from_bytes"):
                return storage_from_bytes
            if (module, name) in ALLOWED_GLOBALS and not module.startswith("numpy"):
                return super().find_class(module, name)
            raise InputError(
                f"{f}: refused to unpickle {module}.{name} in {what}: only plain data and tensors are "
                "read from pickle files; replace the file with the original release"
            )

    if not f.is_file():
        raise InputError(f"{f}: {what} not found")
    try:
        with open(f, "rb") as fh:
            return _Unpickler(fh).load()
    except InputError:
        raise
    except Exception as exc:
        raise InputError(
            f"{f}: cannot read {what} ({_first_line(exc)[:160]}); the file is truncated or corrupt"
        ) from exc


DATA_PICKLE_GLOBALS = frozenset(
    {
        "builtins.bytes",
        "builtins.dict",
        "builtins.list",
        "builtins.tuple",
        "builtins.set",
        "builtins.frozenset",
        "builtins.slice",
        "builtins.str",
        "builtins.int",
        "builtins.float",
        "builtins.bool",
        "collections.defaultdict",
        "collections.OrderedDict",
        "numpy.ndarray",
        "numpy.dtype",
        "numpy.core.multiarray._reconstruct",
        "numpy._core.multiarray._reconstruct",
        "numpy.core.multiarray.scalar",
        "numpy._core.multiarray.scalar",
        "pandas._libs.internals._unpickle_block",
        "pandas.core.frame.DataFrame",
        "pandas.core.series.Series",
        "pandas.core.indexes.base.Index",
        "pandas.core.indexes.base._new_Index",
        "pandas.core.indexes.range.RangeIndex",
        "pandas.core.internals.managers.BlockManager",
        "pandas.core.internals.managers.SingleBlockManager",
    }
)
"""Globals a data-only PyTorch pickle may name: containers, NumPy arrays, pandas frames."""


def check_pickle_globals(path: str | Path, what: str, allowed: frozenset[str] = DATA_PICKLE_GLOBALS) -> None:
    """Refuse a PyTorch file whose pickle names any global outside ``allowed`` (or NumPy dtypes).

    For libraries that must load a user file with ``weights_only=False`` (scvi-tools stores
    its registry and training history as NumPy/pandas objects): the file is scanned first
    (:func:`torch.serialization.get_unsafe_globals_in_checkpoint` lists every global the
    pickle would import besides PyTorch's own tensor rebuilders), so a file that would import
    anything else — a function, ``os.system``, a class with a ``__reduce__`` payload — is
    refused before it is unpickled.

    Raises
    ------
    InputError
        Unreadable file, or a global outside the allow-list (named).

    """
    import torch

    f = Path(path)
    try:
        needed = torch.serialization.get_unsafe_globals_in_checkpoint(f)
    except Exception as exc:
        raise InputError(
            f"{f}: cannot read {what} ({_first_line(exc)[:120]}); the file is truncated or not a PyTorch file"
        ) from exc
    bad = sorted(g for g in needed if g not in allowed and not g.startswith("numpy.dtypes."))
    if bad:
        raise InputError(
            f"{f}: refused to load {what}: it would import {', '.join(bad[:3])}, which a saved model "
            "does not need (allowed: containers, NumPy arrays, pandas frames); only load files you trust"
        )
