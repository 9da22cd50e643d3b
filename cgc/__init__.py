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
    Per-cell PyG graphs from the global CSR prior graph (:mod:`cgc.graph`).
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
"""

from cgc import preprocess
from cgc.config import CGCConfig, RunConfig, TrainConfig, load_config
from cgc.embed import embed_cells
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
from cgc.graph import CellGraphBuilder
from cgc.model import CGCModel, CGCOutput
from cgc.priors import GenePriors, MappingReport, PriorSources
from cgc.train.checkpoint import load_checkpoint, save_checkpoint
from cgc.train.corpus import build_corpus

__version__ = "0.1.0"


def __getattr__(name: str) -> object:
    # Imported lazily so that ``python -m cgc.train.pretrain`` runs cleanly.
    if name in ("pretrain", "PretrainResult"):
        from cgc.train import pretrain as _pretrain_module

        return getattr(_pretrain_module, name)
    raise AttributeError(f"module 'cgc' has no attribute {name!r}")

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
