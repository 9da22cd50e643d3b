"""Pre-training: corpus, data streams, schedule, checkpoints, DDP and the training loop."""

import importlib

_LAZY = {"load_checkpoint": "cgc.train.checkpoint", "save_checkpoint": "cgc.train.checkpoint",
         "CorpusReader": "cgc.train.corpus", "build_corpus": "cgc.train.corpus",
         "pretrain": "cgc.train.pretrain", "PretrainResult": "cgc.train.pretrain"}


def __getattr__(name: str) -> object:
    # Imported on first use: importing a sibling (``cgc.train.checkpoint``) must not load
    # torch through the others, and ``python -m cgc.train.pretrain`` must run cleanly.
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'cgc.train' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


__all__ = [
    "CorpusReader",
    "PretrainResult",
    "build_corpus",
    "load_checkpoint",
    "pretrain",
    "save_checkpoint",
]
