"""Seeded, resumable training and validation streams of cell graphs.

Sample ``k`` of a rank's training stream is cell ``perm_e[k mod n]`` of epoch
``e = k // n``, where ``perm_e`` is a permutation seeded by ``(seed, rank, e)``; gene
sampling and masking of that sample are seeded by ``(seed, rank, e, cell)``. So the stream
is a pure function of ``k``: resuming at step ``s`` just starts at
``k = s × grad_accum × batch_size``, and data-loader workers cannot change the result.
"""

from __future__ import annotations

import numpy as np
from torch.utils.data import Dataset
from torch_geometric.data import Data

from cgc.cells import cell_example
from cgc.config import CGCConfig
from cgc.graph import CellGraphBuilder
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

    def __getitem__(self, k: int) -> Data:
        epoch, cell = self._cell(int(k))
        return make_example(self.reader, self.builder, self.config, cell,
                            [self.seed, self.rank, epoch, cell])


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

    def __getitem__(self, i: int) -> Data:
        return make_example(self.reader, self.builder, self.config, int(i),
                            [self.seed, 7_777_777, int(i)])


def make_example(reader: CorpusReader, builder: CellGraphBuilder, config: CGCConfig,
                 cell: int, seed: list[int]) -> Data:
    """Sample, bin, mask and build the graph of one corpus cell (:func:`cgc.cells.cell_example`).

    With ``input_genes="panel"`` the cell's genes are its input data set's panel (zeros
    included); targets are standardised with that data set's per-gene statistics.
    """
    rng = np.random.default_rng(seed)
    genes, values = reader[cell]
    k = reader.source_of(cell)
    if config.input_genes == "panel":
        genes, values = densify(genes, values, reader.source_panel(k)[: config.max_genes])
    stats = reader.source_stats(k, builder.priors.n_genes)
    return cell_example(builder, config, genes, values, rng, mask=True, stats=stats)


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
