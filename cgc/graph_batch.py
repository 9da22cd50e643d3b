"""Array kernels of the batched cell-graph builder (:meth:`cgc.graph.CellGraphBuilder.build_batch`).

A batch's gene–gene edges are held as one ``int64`` per edge, the *edge key*::

    src_node | vocab_id(dst) | edge_pos | dst_node        (high to low bits)

so that one :func:`numpy.sort` of the keys puts the edges in the order the per-cell builder
reads them from the CSR (by source node, then target vocabulary id), and the output fields are
read back from the sorted keys with shifts and masks instead of gathers. ``edge_pos`` is the
model's position field (offset clipped to ``pos_window``, plus ``pos_window``).

Position edges are never read from storage: they are the pairs of a cell's genes fewer than
``window`` genome ranks apart (:func:`position_pairs`).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


class EdgeKeyLayout(NamedTuple):
    """Bit widths of the fields of an edge key.

    Parameters
    ----------
    node_bits
        Bits of a node index (source and target).
    vocab_bits
        Bits of a vocabulary id (the target's, the sort's tie-breaker within a source).
    pos_bits
        Bits of the ``edge_pos`` field (``0..2·pos_window``).

    """

    node_bits: int
    vocab_bits: int
    pos_bits: int

    @classmethod
    def for_batch(cls, n_nodes: int, n_vocab: int, pos_window: int) -> EdgeKeyLayout:
        """The layout for ``n_nodes`` nodes, ``n_vocab`` gene ids and ``pos_window``."""
        return cls(max(1, int(n_nodes).bit_length()), max(1, int(n_vocab - 1).bit_length()),
                   max(1, int(2 * pos_window).bit_length()))

    @property
    def fits(self) -> bool:
        """Whether a key fits in 63 bits (non-negative ``int64``)."""
        return 2 * self.node_bits + self.vocab_bits + self.pos_bits <= 63

    @property
    def src_shift(self) -> int:
        """Shift of the source node field."""
        return self.node_bits + self.pos_bits + self.vocab_bits

    @property
    def node_mask(self) -> int:
        """Mask of the target node field."""
        return (1 << self.node_bits) - 1

    def pack(self, src: np.ndarray, dst_vocab: np.ndarray, pos: np.ndarray | int,
             dst: np.ndarray) -> np.ndarray:
        """Edge keys of edges ``src → dst`` (all ``int64``, non-negative)."""
        k = src << self.src_shift
        k |= dst_vocab << (self.node_bits + self.pos_bits)
        k |= np.left_shift(pos, self.node_bits)
        k |= dst
        return k

    def src(self, keys: np.ndarray) -> np.ndarray:
        """Source nodes of ``keys``."""
        return keys >> self.src_shift

    def dst(self, keys: np.ndarray) -> np.ndarray:
        """Target nodes of ``keys``."""
        return keys & self.node_mask

    def pos(self, keys: np.ndarray) -> np.ndarray:
        """``edge_pos`` fields of ``keys``."""
        return (keys >> self.node_bits) & ((1 << self.pos_bits) - 1)


def position_pairs(sorted_keys: np.ndarray, window: int
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairs of sorted genome keys fewer than ``window`` apart.

    Parameters
    ----------
    sorted_keys
        Non-decreasing genome keys; keys of different cells or chromosomes must differ by at
        least ``window``.
    window
        The position window as stored (pairs ``0 < key_j - key_i < window``).

    Returns
    -------
    i, j : numpy.ndarray
        Positions in ``sorted_keys`` of each pair, ``i < j``.
    d : numpy.ndarray
        ``sorted_keys[j] - sorted_keys[i]``.

    Notes
    -----
    The pairs are found by stepping ``t = 1, 2, …`` positions ahead while any key still has a
    neighbour fewer than ``window`` ahead, so the work is the number of pairs plus the number
    of keys, not a search per key.

    """
    n = len(sorted_keys)
    ii, jj, dd = [], [], []
    act = np.arange(max(n - 1, 0), dtype=np.int64)
    t = 1
    while len(act):
        j = act + t
        d = sorted_keys[j]
        d -= sorted_keys[act]
        ok = np.flatnonzero(d < window)  # flatnonzero + take: faster than a boolean mask
        act = act.take(ok)
        ii.append(act)
        jj.append(j.take(ok))
        dd.append(d.take(ok))
        t += 1
        act = act[: np.searchsorted(act, n - t - 1, side="right")]  # keep act + t < n
    if not ii:
        e = np.zeros(0, np.int64)
        return e, e, e
    return np.concatenate(ii), np.concatenate(jj), np.concatenate(dd)
