"""Peak-memory estimate of a training step, checked before training starts."""

from __future__ import annotations

import psutil
import torch

from cgc.config import CGCConfig, TrainConfig
from cgc.errors import MemoryBudgetError

_F32 = 4


def estimate_train_bytes(n_parameters: int, config: CGCConfig, train: TrainConfig,
                         text_table_bytes: int = 0) -> dict[str, int]:
    """Estimate the peak memory of one training micro-batch (an upper bound).

    Parameters
    ----------
    n_parameters
        Trainable parameters.
    config, train
        Model and training configuration (batch size, ``max_genes``, widths).
    text_table_bytes
        Size of the gene text-embedding buffer.

    Returns
    -------
    dict
        ``states`` (weights, gradients, two Adam moments), ``activations`` and ``total``
        in bytes.

    """
    b, seq, d = train.batch_size, config.max_genes + 1, config.d_model
    nodes = b * seq
    edges = int(nodes * config.edge_budget) if config.use_graph else 0
    # Per GNN layer: two edge MLPs keep ~8 edge-sized activations each, plus norms.
    gnn = config.n_gnn_layers * (edges * d * 16 + nodes * d * 8) if config.use_graph else 0
    # Per Transformer layer: qkv/attn/ffn activations and the attention matrix.
    tf = config.n_transformer_layers * (
        nodes * (d * 12 + config.d_ff * 3) + b * config.n_heads * seq * seq * 2
    )
    states = n_parameters * _F32 * 4
    acts = (gnn + tf + nodes * d * 8) * _F32
    return {"states": states, "activations": acts, "total": states + acts + text_table_bytes}


def available_bytes(device: torch.device) -> int:
    """Return free memory on ``device`` (CUDA free memory, or available host RAM)."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    return int(psutil.virtual_memory().available)


def check_fits(n_parameters: int, config: CGCConfig, train: TrainConfig, device: torch.device,
               text_table_bytes: int = 0) -> dict[str, int]:
    """Raise :class:`MemoryBudgetError` if the estimate exceeds the allowed fraction.

    Returns
    -------
    dict
        The estimate (see :func:`estimate_train_bytes`) plus ``available``.

    """
    est = estimate_train_bytes(n_parameters, config, train, text_table_bytes)
    avail = available_bytes(device)
    est["available"] = avail
    if est["total"] > train.memory_fraction * avail:
        gib = 2**30
        raise MemoryBudgetError(
            f"the configuration needs about {est['total'] / gib:.1f} GiB "
            f"(states {est['states'] / gib:.1f} GiB, activations "
            f"{est['activations'] / gib:.1f} GiB at batch_size={train.batch_size}, "
            f"max_genes={config.max_genes}) but only {avail / gib:.1f} GiB is free on "
            f"{device} (limit {train.memory_fraction:.0%}); lower batch_size (raise "
            "grad_accum to keep the effective batch), max_genes or d_model"
        )
    return est
