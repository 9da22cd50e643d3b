"""Array kernels of the batched cell-graph builder (:meth:`cgc.graph.CellGraphBuilder.build_batch`).

A batch's gene–gene edges are held as one ``int64`` per edge, the *edge key*::

    src_node | vocab_id(dst) | edge_pos | dst_node        (high to low bits)

so that one :func:`numpy.sort` of the keys puts the edges in the order the per-cell builder
reads them from the CSR (by source node, then target vocabulary id), and the output fields are
read back from the sorted keys with shifts and masks instead of gathers. ``edge_pos`` is the
model's position field (offset clipped to ``pos_window``, plus ``pos_window``).

Position edges are never read from storage: they are the pairs of a cell's genes fewer than
``window`` genome ranks apart (:func:`position_edge_keys`).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

KEY_BITS = 63  # bits of an edge key (a non-negative int64)


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
        """Whether a key fits in :data:`KEY_BITS` bits (a non-negative ``int64``)."""
        return 2 * self.node_bits + self.vocab_bits + self.pos_bits <= KEY_BITS

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


def position_edge_keys(sorted_keys: np.ndarray, src_part: np.ndarray, dst_part: np.ndarray,
                       window: int, pos_window: int, node_bits: int,
                       extra: np.ndarray | None = None) -> np.ndarray:
    """Edge keys of both directions of every pair of genes fewer than ``window`` apart.

    Parameters
    ----------
    sorted_keys
        Non-decreasing genome keys of a batch's genes; keys of different cells or chromosomes
        must differ by at least ``window``.
    src_part, dst_part
        Each gene's edge-key part as a source and as a target
        (:meth:`EdgeKeyLayout.pack` with the other fields zero).
    window
        The position window as stored (pairs ``0 < key_j - key_i < window``).
    pos_window
        The model's window: the ``edge_pos`` field is ``clip(key_dst - key_src) + pos_window``.
    node_bits
        :attr:`EdgeKeyLayout.node_bits` (the ``edge_pos`` field's shift).
    extra
        Further keys appended to the result (saves a copy).

    Returns
    -------
    numpy.ndarray
        Unsorted edge keys, both directions of each pair, then ``extra``.

    Notes
    -----
    The pairs are found by stepping ``t = 1, 2, …`` positions ahead while any gene still has
    a neighbour fewer than ``window`` ahead, so the work is the number of pairs plus the
    number of genes, not a search per gene.

    """
    n = len(sorted_keys)
    base = pos_window << node_bits
    parts = []
    act = np.arange(max(n - 1, 0), dtype=np.int64)
    t = 1
    while len(act):
        d = sorted_keys.take(act + t)
        d -= sorted_keys.take(act)
        ok = np.flatnonzero(d < window)  # flatnonzero + take: faster than a boolean mask
        act = act.take(ok)
        j = act + t
        off = np.minimum(d.take(ok), pos_window)
        off <<= node_bits
        fwd = src_part.take(act)  # i -> j, offset key_j - key_i
        fwd |= dst_part.take(j)
        fwd += off
        fwd += base
        bwd = src_part.take(j)  # j -> i
        bwd |= dst_part.take(act)
        bwd -= off
        bwd += base
        parts += [fwd, bwd]
        t += 1
        act = act[: np.searchsorted(act, n - t - 1, side="right")]  # keep act + t < n
    if extra is not None:
        parts.append(extra)
    return np.concatenate(parts) if parts else np.zeros(0, np.int64)
