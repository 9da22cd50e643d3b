"""Fine-tuning heads and loops of Cell-Graph Compass (SPEC §5.3–§5.6).

Benchmark-free: these functions take a :class:`~cgc.model.CGCModel`, expression matrices
mapped to its vocabulary (:class:`CellMatrix`) and plain arrays; the cgcbench adapter
(:mod:`baselines.cgc_model`) wires them to the harness.

Heads
    :class:`CellClassifierHead` (annotation), :class:`BatchDiscriminator` (domain
    adaptation), :class:`GeneDecoder` (perturbation and bulk knockout: shared per-gene MLP).
Losses
    :func:`focal_loss`, :func:`sample_negatives`, :func:`grad_reverse`, :func:`ecs_loss`,
    :func:`perturbation_loss` (eq. 14), :class:`KnockoutLoss` (regression / two-step).
Loops
    :func:`finetune_masked`, :func:`train_classifier`, :func:`train_decoder`, with
    :class:`TrainSettings` and :class:`TrainLog`; :func:`train_official_classifier` (the
    official CGCompass network, official annotation recipe, :mod:`cgc.finetune.official`).
"""

from cgc.finetune.data import (
    PERTURBED_TOKEN,
    CellMatrix,
    choose_panel,
    expressed_graph,
    map_matrix,
    panel_graph,
)
from cgc.finetune.heads import BatchDiscriminator, CellClassifierHead, GeneDecoder
from cgc.finetune.losses import ecs_loss, focal_loss, grad_reverse, sample_negatives
from cgc.finetune.official import mask_values, official_cell_outputs, train_official_classifier
from cgc.finetune.train import (
    KnockoutLoss,
    TrainLog,
    TrainSettings,
    cell_outputs,
    decode,
    embedding_graphs,
    finetune_masked,
    perturbation_loss,
    run_loop,
    train_classifier,
    train_decoder,
)

__all__ = [
    "PERTURBED_TOKEN",
    "BatchDiscriminator",
    "CellClassifierHead",
    "CellMatrix",
    "GeneDecoder",
    "KnockoutLoss",
    "TrainLog",
    "TrainSettings",
    "cell_outputs",
    "choose_panel",
    "decode",
    "ecs_loss",
    "embedding_graphs",
    "expressed_graph",
    "finetune_masked",
    "focal_loss",
    "grad_reverse",
    "map_matrix",
    "mask_values",
    "official_cell_outputs",
    "panel_graph",
    "perturbation_loss",
    "run_loop",
    "sample_negatives",
    "train_classifier",
    "train_decoder",
    "train_official_classifier",
]
