"""Compatibility layer that lets PyPI ``scgpt`` 0.2.4 import beside torch 2.13.

scGPT imports ``torchtext.vocab`` (``Vocab`` and ``vocab``) for its :class:`GeneVocab`. The
torchtext wheels stop at torch 2.3 and their compiled extension does not load beside newer
torch, so :func:`install_torchtext_shim` registers the small pure-Python stand-in of
:mod:`baselines._scgpt_compat.torchtext_vocab` under the names ``torchtext`` and
``torchtext.vocab`` — only when a working torchtext cannot be imported. Nothing is installed
on disk and no other module is affected.
"""

from __future__ import annotations

import importlib
import sys
import types


def install_torchtext_shim() -> bool:
    """Make ``import torchtext.vocab`` work; return whether the stand-in was installed."""
    try:
        real = importlib.import_module("torchtext.vocab")
        if getattr(real, "__cgcbench_shim__", False):
            return True
        real.vocab  # noqa: B018 - touching it loads the compiled extension
        return False
    except Exception:  # noqa: BLE001 - any failure of the real package means: use the shim
        for name in [n for n in sys.modules if n == "torchtext" or n.startswith("torchtext.")]:
            del sys.modules[name]
    from baselines._scgpt_compat import torchtext_vocab

    package = types.ModuleType("torchtext")
    package.__path__ = []  # a namespace-like package
    package.vocab = torchtext_vocab  # type: ignore[attr-defined]
    package.__cgcbench_shim__ = True  # type: ignore[attr-defined]
    sys.modules["torchtext"] = package
    sys.modules["torchtext.vocab"] = torchtext_vocab
    return True
