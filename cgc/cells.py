"""One cell → one model input: gene choice, binning, targets and masking (the single path).

Pre-training (:mod:`cgc.train.data`), fine-tuning and inference (:mod:`cgc.finetune.data`,
:mod:`cgc.embed`) all build a cell's graph through :func:`cell_example`, so the model
always sees the same kind of input it was trained on.

What a cell's graph holds depends on :class:`~cgc.config.CGCConfig`:

* ``input_genes="expressed"`` (paper): at most ``max_genes`` of the cell's non-zero genes
  (sampled by expression when masking, the highest otherwise);
* ``input_genes="panel"``: every gene of a fixed panel (the data set's most variable
  genes), zeros included, so silent genes are seen as such.

Node values are the within-cell bins ``0..n_bins-1`` (zeros in bin 0). Targets are the
bins (``value_target="bin"``, scaled to ``[0, 1]`` when ``node_norm``) or the per-gene
standardised log-expression (``value_target="zscore"``, see :class:`GeneStats`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import scipy.sparse as sp

from cgc.config import CGCConfig
from cgc.preprocess import Seed, as_rng, bin_values, mask_values, sample_genes

if TYPE_CHECKING:  # GeneStats is read by corpus code that must not import torch
    from torch_geometric.data import Batch, Data

    from cgc.graph import CellGraphBuilder, CellInput

ZSCORE_CLIP = 8.0
"""Standardised targets are clipped to ``±ZSCORE_CLIP``."""
STD_FLOOR = 0.25
"""Floor of the per-gene standard deviation (log1p scale) of standardised targets."""


def column_moments(x: sp.spmatrix) -> tuple[np.ndarray, np.ndarray]:
    """Per-column sums of values and of squared values of a sparse matrix."""
    return np.asarray(x.sum(0)).ravel(), np.asarray(x.multiply(x).sum(0)).ravel()


@dataclass
class GeneStats:
    """Per-gene mean and standard deviation of log-normalised expression over a data set.

    Zeros count: the statistics are over all cells, so a gene's z-score says how far this
    cell is from the gene's typical level in the data set.

    Attributes
    ----------
    mean, std
        Arrays indexed by vocabulary id (length = vocabulary size); genes the data set does
        not measure have mean 0 and std 1.

    """

    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def from_moments(cls, n_vocab: int, ids: np.ndarray, s1: np.ndarray, s2: np.ndarray,
                     n: int) -> GeneStats:
        """Build from per-gene sums of values and squared values over ``n`` cells."""
        mean = np.zeros(n_vocab, np.float32)
        std = np.ones(n_vocab, np.float32)
        m = s1 / max(n, 1)
        var = np.maximum(s2 / max(n, 1) - m**2, 0.0)
        mean[ids] = m
        std[ids] = np.sqrt(var)
        return cls(mean, std)

    @classmethod
    def from_matrix(cls, n_vocab: int, ids: np.ndarray, x: sp.spmatrix) -> GeneStats:
        """Build from a ``cells × genes`` CSR matrix whose columns are vocabulary ids ``ids``."""
        s1, s2 = column_moments(x)
        return cls.from_moments(n_vocab, ids, s1, s2, x.shape[0])

    def zscore(self, genes: np.ndarray, values: np.ndarray) -> np.ndarray:
        """Standardised ``values`` of ``genes`` (std floored at :data:`STD_FLOOR`, clipped)."""
        z = (values - self.mean[genes]) / np.maximum(self.std[genes], STD_FLOOR)
        return np.clip(z, -ZSCORE_CLIP, ZSCORE_CLIP).astype(np.float32)


def prepare_example(
    config: CGCConfig,
    genes: np.ndarray,
    values: np.ndarray,
    seed: Seed = 0,
    *,
    mask: bool = False,
    stats: GeneStats | None = None,
) -> tuple[CellInput, np.random.Generator]:
    """Choose, bin and mask one cell's genes: the node inputs of its graph.

    Takes the arguments of :func:`cell_example` (without the builder) and returns the
    :class:`~cgc.graph.CellInput` plus the Generator whose state the edge budget must
    continue from, so ``builder.build(*cell, seed=rng)`` is exactly :func:`cell_example`
    and ``builder.build_batch(cells, rngs)`` builds many at once.
    """
    from cgc.graph import CellInput

    rng = as_rng(seed)
    genes = np.asarray(genes, dtype=np.int64)
    values = np.asarray(values, dtype=np.float32)
    if config.input_genes == "expressed":
        mode = config.sample_mode if mask else "top"
        pick = sample_genes(values, config.max_genes, rng, mode)
    elif len(genes) > config.max_genes:
        pick = np.sort(rng.choice(len(genes), config.max_genes, replace=False))
    else:
        pick = np.arange(len(genes))
    g, v = genes[pick], values[pick]
    binned = bin_values(v, config.n_bins)
    if config.value_target == "zscore" and stats is not None:
        target = stats.zscore(g, v)
    elif config.node_norm:
        target = (binned / (config.n_bins - 1)).astype(np.float32)
    else:
        target = binned.astype(np.float32)
    if mask and config.mask_ratio > 0:
        inp, m = mask_values(binned, config.mask_ratio, rng, config.mask_value)
    else:
        inp, m = binned.astype(np.float32), np.zeros(len(g), dtype=bool)
    return CellInput(g, inp, target, m), rng


def cell_example(
    builder: CellGraphBuilder,
    config: CGCConfig,
    genes: np.ndarray,
    values: np.ndarray,
    seed: Seed = 0,
    *,
    mask: bool = False,
    stats: GeneStats | None = None,
) -> Data:
    """Build the graph of one cell, masked as in pre-training when ``mask``.

    Parameters
    ----------
    builder, config
        Graph builder and model configuration.
    genes
        Distinct vocabulary ids: the cell's non-zero genes (``input_genes="expressed"``) or
        the whole panel, zeros included (``"panel"``).
    values
        Their log-normalised expression (same length as ``genes``).
    seed
        Seed or Generator of gene sampling, masking and the edge budget.
    mask
        Hide ``config.mask_ratio`` of the values (pre-training, masked fine-tuning).
    stats
        Per-gene statistics; required for ``value_target="zscore"`` when targets matter
        (``mask=True``). Without them targets are the scaled bins.

    Returns
    -------
    torch_geometric.data.Data
        The cell graph with node fields ``value`` (bins), ``target`` and ``mask``.

    """
    cell, rng = prepare_example(config, genes, values, seed, mask=mask, stats=stats)
    return builder.build(*cell, seed=rng)


def cell_batch(
    builder: CellGraphBuilder,
    config: CGCConfig,
    cells: list[tuple[np.ndarray, np.ndarray]],
    seeds: list[Seed],
    *,
    mask: bool = False,
    stats: GeneStats | None = None,
) -> Batch:
    """The graphs of many cells as one batch: equal to collating :func:`cell_example`'s.

    Parameters
    ----------
    builder, config, mask, stats
        As for :func:`cell_example`.
    cells
        ``(genes, values)`` per cell.
    seeds
        One seed or Generator per cell.

    Returns
    -------
    torch_geometric.data.Batch
        Built by :meth:`~cgc.graph.CellGraphBuilder.build_batch`.

    """
    prepared = [prepare_example(config, g, v, s, mask=mask, stats=stats)
                for (g, v), s in zip(cells, seeds, strict=True)]
    return builder.build_batch([c for c, _ in prepared], [r for _, r in prepared])
