"""Pre-training heads: gene value (eq. 10) and cell value (eq. 11)."""

from __future__ import annotations

from torch import Tensor, nn

from cgc.nn.encoders import MLP3


class GeneValueHead(nn.Module):
    r"""Predict each gene's value from its node state: :math:`\hat x_i = \mathrm{mlp}_g(h_i)`.

    Parameters
    ----------
    d_model
        Node-state width.

    """

    def __init__(self, d_model: int) -> None:
        super().__init__()
        self.mlp_g = MLP3(d_model, d_model, 1)

    def forward(self, h: Tensor) -> Tensor:
        """Return ``[N]`` predictions."""
        return self.mlp_g(h).squeeze(-1)


class CellValueHead(nn.Module):
    r"""Predict gene values from the cell state (eq. 11).

    .. math:: \hat x'_i = \langle \mathrm{mlp}_c(\mathrm{emb}_g(g_i)),\, h_c \rangle

    Parameters
    ----------
    d_model
        Width of ``emb_g`` and of ``h_c``.

    """

    def __init__(self, d_model: int) -> None:
        super().__init__()
        self.mlp_c = MLP3(d_model, d_model, d_model)

    def forward(self, gene_emb: Tensor, h_cell_per_node: Tensor) -> Tensor:
        """Return ``[N]`` predictions from ``emb_g(g_i)`` and the state of node i's cell."""
        return (self.mlp_c(gene_emb) * h_cell_per_node).sum(-1)
