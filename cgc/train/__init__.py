"""Pre-training: corpus, data streams, schedule, checkpoints, DDP and the training loop."""

from cgc.train.checkpoint import load_checkpoint, save_checkpoint
from cgc.train.corpus import CorpusReader, build_corpus


def __getattr__(name: str) -> object:
    # Imported lazily so that ``python -m cgc.train.pretrain`` runs cleanly.
    if name in ("pretrain", "PretrainResult"):
        import importlib

        return getattr(importlib.import_module("cgc.train.pretrain"), name)
    raise AttributeError(f"module 'cgc.train' has no attribute {name!r}")

__all__ = [
    "CorpusReader",
    "PretrainResult",
    "build_corpus",
    "load_checkpoint",
    "pretrain",
    "save_checkpoint",
]
