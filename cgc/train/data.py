"""Seeded, resumable training and validation streams of cell graphs.

Sample ``k`` of a rank's training stream is cell ``perm_e[k mod n]`` of epoch
``e = k // n``, where ``perm_e`` is a permutation seeded by ``(seed, rank, e)``; gene
sampling and masking of that sample are seeded by ``(seed, rank, e, cell)``. So the stream
is a pure function of ``k``: resuming at step ``s`` just starts at
``k = s × grad_accum × batch_size``, and data-loader workers cannot change the result.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from torch.utils.data import Dataset
from torch_geometric.data import Batch, Data

from cgc.cells import prepare_example
from cgc.config import CGCConfig
from cgc.graph import CellGraphBuilder, CellInput
from cgc.train.corpus import CorpusReader


class PretrainStream(Dataset[Data]):
    """Infinite (epoch-cycling) map-style stream of masked cell graphs.

    Parameters
    ----------
    reader
        This rank's part of the training split.
    builder
        Cell-graph builder.
    config
        Model configuration (``max_genes``, ``n_bins``, ``mask_ratio``...).
    seed, rank
        Seeds of permutations, sampling and masking.

    """

    def __init__(self, reader: CorpusReader, builder: CellGraphBuilder, config: CGCConfig,
                 seed: int = 0, rank: int = 0) -> None:
        self.reader, self.builder, self.config = reader, builder, config
        self.seed, self.rank = seed, rank
        self._perm_epoch = -1
        self._perm = np.zeros(0, dtype=np.int64)

    def __len__(self) -> int:
        return 2**62  # indices are positions in an endless stream

    def _cell(self, k: int) -> tuple[int, int]:
        n = len(self.reader)
        epoch = k // n
        if epoch != self._perm_epoch:
            rng = np.random.default_rng([self.seed, self.rank, epoch])
            self._perm, self._perm_epoch = rng.permutation(n), epoch
        return epoch, int(self._perm[k % n])

    def example(self, k: int) -> tuple[CellInput, np.random.Generator]:
        """Node inputs of sample ``k`` and the Generator its edge budget continues from."""
        epoch, cell = self._cell(int(k))
        return make_input(self.reader, self.config, cell, [self.seed, self.rank, epoch, cell],
                          self.builder.priors.n_genes)

    def __getitem__(self, k: int) -> Data:
        cell, rng = self.example(k)
        return self.builder.build(*cell, seed=rng)


class EvalSet(Dataset[Data]):
    """Validation graphs with fixed (seeded) sampling and masking.

    Parameters
    ----------
    reader
        This rank's part of the validation split.
    builder, config
        As for :class:`PretrainStream`.
    seed
        Seed of the validation masks (fixed across evaluations).
    limit
        Use at most this many cells.

    """

    def __init__(self, reader: CorpusReader, builder: CellGraphBuilder, config: CGCConfig,
                 seed: int = 0, limit: int | None = None) -> None:
        self.reader, self.builder, self.config, self.seed = reader, builder, config, seed
        self.n = len(reader) if limit is None else min(limit, len(reader))

    def __len__(self) -> int:
        return self.n

    def example(self, i: int) -> tuple[CellInput, np.random.Generator]:
        """Node inputs of validation cell ``i`` and its edge-budget Generator."""
        return make_input(self.reader, self.config, int(i), [self.seed, 7_777_777, int(i)],
                          self.builder.priors.n_genes)

    def __getitem__(self, i: int) -> Data:
        cell, rng = self.example(i)
        return self.builder.build(*cell, seed=rng)


class InputView(Dataset[tuple[CellInput, np.random.Generator]]):
    """A stream's node inputs (no graphs) for a loader that batches with :class:`GraphCollator`."""

    def __init__(self, dataset: PretrainStream | EvalSet) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, k: int) -> tuple[CellInput, np.random.Generator]:
        return self.dataset.example(k)


class GraphCollator:
    """Collate function building a batch's graphs at once (:meth:`CellGraphBuilder.build_batch`).

    Equal to ``Batch.from_data_list([dataset[k] for k in batch])``.
    """

    def __init__(self, builder: CellGraphBuilder) -> None:
        self.builder = builder

    def __call__(self, items: Sequence[tuple[CellInput, Any]]) -> Batch:
        """Build the batch of ``(CellInput, Generator)`` items."""
        return self.builder.build_batch([c for c, _ in items], [r for _, r in items])


def make_example(reader: CorpusReader, builder: CellGraphBuilder, config: CGCConfig,
                 cell: int, seed: list[int]) -> Data:
    """Sample, bin, mask and build the graph of one corpus cell (:func:`cgc.cells.cell_example`).

    With ``input_genes="panel"`` the cell's genes are its input data set's panel (zeros
    included); targets are standardised with that data set's per-gene statistics.
    """
    cell_input, rng = make_input(reader, config, cell, seed, builder.priors.n_genes)
    return builder.build(*cell_input, seed=rng)


def make_input(reader: CorpusReader, config: CGCConfig, cell: int, seed: list[int],
               n_vocab: int) -> tuple[CellInput, np.random.Generator]:
    """:func:`make_example` without the graph: node inputs and the edge-budget Generator."""
    rng = np.random.default_rng(seed)
    genes, values = reader[cell]
    k = reader.source_of(cell)
    if config.input_genes == "panel":
        genes, values = densify(genes, values, reader.source_panel(k)[: config.max_genes])
    stats = reader.source_stats(k, n_vocab)
    return prepare_example(config, genes, values, rng, mask=True, stats=stats)


def densify(genes: np.ndarray, values: np.ndarray, panel: np.ndarray
            ) -> tuple[np.ndarray, np.ndarray]:
    """Values of a cell's non-zero ``genes`` laid out over ``panel`` (zeros elsewhere)."""
    dense = np.zeros(len(panel), np.float32)
    order = np.argsort(panel)
    pos = np.searchsorted(panel, genes, sorter=order)
    pos = np.minimum(pos, len(panel) - 1)
    hit = panel[order[pos]] == genes
    dense[order[pos[hit]]] = values[hit]
    return np.asarray(panel, dtype=np.int64), dense
