"""Deferred imports for adapters whose heavy dependencies (torch, PyG) are needed only to run.

``cgcbench list models`` imports every adapter module to read its capabilities; a module that
binds ``torch = lazy_module("torch")`` and ``f = lazy_callable("pkg.mod", "f")`` at the top
imports nothing heavy until a model is actually built.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any


class lazy_module:  # noqa: N801 - stands in for a module name
    """A module imported on first attribute access.

    Parameters
    ----------
    name
        Dotted module name, e.g. ``"torch"``.

    """

    def __init__(self, name: str) -> None:
        self._name = name
        self._module: ModuleType | None = None

    def _load(self) -> ModuleType:
        if self._module is None:
            self._module = importlib.import_module(self._name)
        return self._module

    def __getattr__(self, attr: str) -> Any:
        return getattr(self._load(), attr)

    def __repr__(self) -> str:
        return f"<lazy module {self._name!r}>"


class lazy_callable:  # noqa: N801 - stands in for a function or class name
    """A function or class imported from ``module`` on its first call or attribute access.

    Parameters
    ----------
    module, name
        Where the object lives: ``getattr(import_module(module), name)``.

    """

    def __init__(self, module: str, name: str) -> None:
        self._module, self._name = module, name
        self._target: Any = None

    def _load(self) -> Any:
        if self._target is None:
            self._target = getattr(importlib.import_module(self._module), self._name)
        return self._target

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._load()(*args, **kwargs)

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("_"):
            raise AttributeError(attr)
        return getattr(self._load(), attr)

    def __instancecheck__(self, obj: Any) -> bool:
        return isinstance(obj, self._load())

    def __repr__(self) -> str:
        return f"<lazy {self._module}.{self._name}>"
