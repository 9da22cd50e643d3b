"""Cell-Graph Compass (CGC): a graph foundation model for single-cell transcriptomics.

Public API
----------
GenePriors
    Vocabulary, prior gene graph (TF→target, co-expression, chromosome position) and gene
    text embeddings; ``GenePriors.build(vocab_path=..., trrust_path=..., positions_path=...,
    gene_info_path=..., gene2go_path=..., go_terms_path=..., corpus=[...],
    text_encoder=...)``, ``.save(path)``, ``GenePriors.load(path)``, ``.content_hash``,
    ``.map_genes(var_names, id_type) -> (ids, MappingReport)``.
CGCConfig, TrainConfig, load_config
    Architecture/ablation settings (``CGCConfig.small()``, ``CGCConfig.paper()``; fields
    ``use_graph``, ``edge_types``, ``node_features``) and optimisation settings.
CGCModel
    ``CGCModel(config, priors)``; ``forward(batch) -> CGCOutput(h, h_cell, ...)``,
    ``pretrain_loss(batch)``, ``gene_embeddings() -> DataFrame``,
    ``gene_features(ids, readout)``; cell embeddings: ``cgc.embed_cells(model, adata)``.
CellGraphBuilder
    Per-cell PyG graphs from the global CSR prior graph (:mod:`cgc.graph`);
    ``build_batch`` builds many cells' graphs at once.
preprocess
    ``qc_filter``, ``normalize_log1p``, ``sample_genes``, ``bin_values``, ``mask_values``,
    ``prepare_cell``.
pretrain, build_corpus
    Masked pre-training (single process or ``torchrun``) and corpus building.
save_checkpoint, load_checkpoint
    Checkpoint directories with weights, config, priors bundle and sha256 manifest;
    ``load_checkpoint(path) -> (model, priors, meta)``.
errors
    :class:`CGCError` (a :class:`ValueError`) and its subclasses.

Names are imported on first use (PEP 562), so ``import cgc`` (and the command line that
mounts :mod:`cgc.cli`) does not import torch or PyG until a model, graph or checkpoint is
actually needed.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from cgc.errors import (
    CGCError,
    CheckpointError,
    ConfigError,
    CorpusError,
    InputFileError,
    MemoryBudgetError,
    NoOverlapError,
    PriorsMismatchError,
    VocabularyError,
)

__version__ = "0.1.0"

_LAZY: dict[str, str] = {
    "preprocess": "cgc.preprocess",
    "CGCConfig": "cgc.config",
    "RunConfig": "cgc.config",
    "TrainConfig": "cgc.config",
    "load_config": "cgc.config",
    "embed_cells": "cgc.embed",
    "CellGraphBuilder": "cgc.graph",
    "CGCModel": "cgc.model",
    "CGCOutput": "cgc.model",
    "GenePriors": "cgc.priors",
    "MappingReport": "cgc.priors",
    "PriorSources": "cgc.priors",
    "load_checkpoint": "cgc.train.checkpoint",
    "save_checkpoint": "cgc.train.checkpoint",
    "build_corpus": "cgc.train.corpus",
    "pretrain": "cgc.train.pretrain",
    "PretrainResult": "cgc.train.pretrain",
}

if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from cgc import preprocess
    from cgc.config import CGCConfig, RunConfig, TrainConfig, load_config
    from cgc.embed import embed_cells
    from cgc.graph import CellGraphBuilder
    from cgc.model import CGCModel, CGCOutput
    from cgc.priors import GenePriors, MappingReport, PriorSources
    from cgc.train.checkpoint import load_checkpoint, save_checkpoint
    from cgc.train.corpus import build_corpus
    from cgc.train.pretrain import PretrainResult, pretrain


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'cgc' has no attribute {name!r}")
    mod = importlib.import_module(module)
    value = mod if module == f"cgc.{name}" else getattr(mod, name)
    if name not in ("pretrain", "PretrainResult"):
        # cache (``cgc.pretrain`` stays a lookup: ``python -m cgc.train.pretrain`` re-runs
        # that module as __main__ and the attribute must not shadow the sub-package)
        globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "CGCConfig",
    "CGCError",
    "CGCModel",
    "CGCOutput",
    "CellGraphBuilder",
    "CheckpointError",
    "ConfigError",
    "CorpusError",
    "GenePriors",
    "InputFileError",
    "MappingReport",
    "MemoryBudgetError",
    "NoOverlapError",
    "PretrainResult",
    "PriorSources",
    "PriorsMismatchError",
    "RunConfig",
    "TrainConfig",
    "VocabularyError",
    "build_corpus",
    "embed_cells",
    "load_checkpoint",
    "load_config",
    "preprocess",
    "pretrain",
    "save_checkpoint",
]
