"""The CGC message-passing layer (eq. 5–6)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.nn import MessagePassing

from cgc.nn.encoders import MLP3


class CGCConv(MessagePassing):
    r"""Graph layer of Cell-Graph Compass updating nodes and edges.

    For every edge :math:`j \to i` with attribute :math:`e_{ij}`:

    .. math::
        x_i' = \operatorname{mean}_{j \in \mathcal{N}(i)}
               \mathrm{mlp}_n\big([x_i \,\|\, x_j \,\|\, e_{ij}]\big)
        \qquad \text{(eq. 5)}

    .. math::
        e_{ij}' = \mathrm{mlp}_e\big([x_i \,\|\, x_j \,\|\, e_{ij}]\big)
        \qquad \text{(eq. 6)}

    where :math:`\mathrm{mlp}_n, \mathrm{mlp}_e` are three-layer perceptrons on the
    concatenation. Nodes without incoming edges get :math:`x_i' = 0`. The first linear
    layer of each MLP is applied to the node features once per node and gathered per edge
    (an exact rewrite of the concatenation that saves ``O(E·d²)`` work).

    Parameters
    ----------
    channels
        Width of node and edge features.
    hidden
        Hidden width of both MLPs (default: ``channels``).
    update_edges
        Compute eq. 6. The last layer of a stack can skip it (its edge output is unused);
        ``forward`` then returns the input edge features unchanged.

    Shapes
    ------
    - input: node features ``(N, channels)``, ``edge_index`` ``(2, E)`` (row 0 = source
      ``j``, row 1 = target ``i``), edge features ``(E, channels)``
    - output: node features ``(N, channels)``, edge features ``(E, channels)``

    The edge features may also be given factored, as ``(table, index)`` with
    ``edge_attr = table[index]`` (:meth:`cgc.nn.encoders.EdgeEncoder.factored`): the first
    linear layers then project the ``U`` distinct rows instead of all ``E`` edges.

    """

    def __init__(self, channels: int, hidden: int | None = None,
                 update_edges: bool = True) -> None:
        super().__init__(aggr="mean", flow="source_to_target")
        self.channels = channels
        self.hidden = hidden or channels
        self.mlp_n = MLP3(3 * channels, self.hidden, channels)
        self.mlp_e = MLP3(3 * channels, self.hidden, channels) if update_edges else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Re-initialise both MLPs."""
        super().reset_parameters()
        self.mlp_n.reset_parameters()
        if self.mlp_e is not None:
            self.mlp_e.reset_parameters()

    def _first_layer(self, mlp: nn.Sequential, x: Tensor, edge_attr: Tensor | tuple[Tensor, Tensor]
                     ) -> tuple[Tensor, Tensor, Tensor]:
        lin = mlp[0]
        assert isinstance(lin, nn.Linear)
        c = self.channels
        w = lin.weight
        a_i = F.linear(x, w[:, :c])
        a_j = F.linear(x, w[:, c : 2 * c])
        if isinstance(edge_attr, tuple):
            table, index = edge_attr
            a_e = F.linear(table, w[:, 2 * c :], lin.bias).index_select(0, index)
        else:
            a_e = F.linear(edge_attr, w[:, 2 * c :], lin.bias)
        return a_i, a_j, a_e

    def forward(self, x: Tensor, edge_index: Tensor, edge_attr: Tensor | tuple[Tensor, Tensor]
                ) -> tuple[Tensor, Tensor]:
        """Return updated node and edge features ``(x', e')``.

        ``e'`` is ``edge_attr`` itself (densified if it was factored) when the layer does not
        update edges.
        """
        n_i, n_j, n_e = self._first_layer(self.mlp_n, x, edge_attr)
        x_new = self.propagate(edge_index, a=n_i, b=n_j, e=n_e, size=(x.size(0), x.size(0)))
        if self.mlp_e is None:
            return x_new, dense_edges(edge_attr)
        e_i, e_j, e_e = self._first_layer(self.mlp_e, x, edge_attr)
        e_new = self.edge_updater(edge_index, a=e_i, b=e_j, e=e_e,
                                  size=(x.size(0), x.size(0)))
        return x_new, e_new

    def message(self, a_i: Tensor, b_j: Tensor, e: Tensor) -> Tensor:
        """Compute ``mlp_n([x_i, x_j, e_ij])`` from the pre-projected first layer."""
        return _tail(self.mlp_n, a_i + b_j + e)

    def edge_update(self, a_i: Tensor, b_j: Tensor, e: Tensor) -> Tensor:
        """Compute ``mlp_e([x_i, x_j, e_ij])`` from the pre-projected first layer."""
        assert self.mlp_e is not None
        return _tail(self.mlp_e, a_i + b_j + e)

    def __repr__(self) -> str:
        return (f"{self.__class__.__name__}({self.channels}, hidden={self.hidden}, "
                f"update_edges={self.mlp_e is not None})")


def dense_edges(edge_attr: Tensor | tuple[Tensor, Tensor]) -> Tensor:
    """Per-edge features from either form of ``edge_attr``."""
    if isinstance(edge_attr, tuple):
        table, index = edge_attr
        return table.index_select(0, index)
    return edge_attr


def _tail(mlp: nn.Sequential, h: Tensor) -> Tensor:
    """Apply every layer of ``mlp`` but the first."""
    for layer in list(mlp)[1:]:
        h = layer(h)
    return h


def cgc_conv_reference(conv: CGCConv, x: Tensor, edge_index: Tensor,
                       edge_attr: Tensor | tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
    """Compute eq. 5–6 literally (concatenate, MLP, mean) for testing :class:`CGCConv`."""
    src, dst = edge_index
    edge_attr = dense_edges(edge_attr)
    h = torch.cat([x[dst], x[src], edge_attr], dim=-1)
    msg = conv.mlp_n(h)
    e_new = conv.mlp_e(h) if conv.mlp_e is not None else edge_attr
    out = torch.zeros_like(x)
    cnt = torch.zeros(x.size(0), 1, dtype=x.dtype, device=x.device)
    out.index_add_(0, dst, msg)
    cnt.index_add_(0, dst, torch.ones_like(msg[:, :1]))
    return out / cnt.clamp(min=1), e_new
