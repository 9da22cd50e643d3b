"""Task heads on top of :class:`cgc.model.CGCOutput` (SPEC §5.3–§5.6)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from cgc.nn.encoders import MLP3


class CellClassifierHead(nn.Module):
    """Three-layer MLP on the standardised cell embedding ``h_c`` (annotation, SPEC §5.4).

    The head first standardises ``h_c`` per dimension with a batch normalisation without
    affine weights: a pre-trained ``h_c`` has a large component shared by all cells and
    small cell-to-cell differences, and an MLP fed the raw vector learns the majority class.
    Its running statistics start from the reference cells' ``h_c`` under the starting
    weights (:meth:`fit_standardization`) and then follow ``h_c`` as the encoder is
    fine-tuned, instead of staying frozen at the untrained embedding.

    Parameters
    ----------
    d_model
        Width of ``h_c``.
    n_classes
        Number of cell types.
    momentum
        Momentum of the running statistics.

    """

    def __init__(self, d_model: int, n_classes: int, momentum: float = 0.05) -> None:
        super().__init__()
        self.norm = nn.BatchNorm1d(d_model, affine=False, momentum=momentum)
        self.mlp = MLP3(d_model, d_model, n_classes)

    @torch.no_grad()
    def fit_standardization(self, h_cell: Tensor) -> None:
        """Set the running mean/variance to those of ``h_cell`` (``[n >= 2, d_model]``)."""
        d = self.norm.num_features
        if h_cell.ndim != 2 or h_cell.shape[0] < 2 or h_cell.shape[1] != d:
            raise ValueError(f"fit_standardization needs [n>=2, {d}] embeddings, "
                             f"got {tuple(h_cell.shape)}")
        h = h_cell.to(self.norm.running_mean.device, torch.float32)
        self.norm.running_mean.copy_(h.mean(0))
        self.norm.running_var.copy_(h.var(0))

    def forward(self, h_cell: Tensor) -> Tensor:
        """Return ``[B, n_classes]`` logits."""
        if self.training and h_cell.shape[0] < 2:
            return self.mlp(torch.nn.functional.batch_norm(
                h_cell, self.norm.running_mean, self.norm.running_var, training=False,
                eps=self.norm.eps))
        return self.mlp(self.norm(h_cell))


class BatchDiscriminator(nn.Module):
    """Batch classifier behind a gradient-reversal layer (scGPT's domain adaptation, DAR).

    Parameters
    ----------
    d_model
        Width of ``h_c``.
    n_batches
        Number of batches.

    """

    def __init__(self, d_model: int, n_batches: int) -> None:
        super().__init__()
        self.mlp = MLP3(d_model, d_model, n_batches)

    def forward(self, h_cell: Tensor) -> Tensor:
        """Return ``[B, n_batches]`` logits (apply :func:`~cgc.finetune.losses.grad_reverse` first)."""
        return self.mlp(h_cell)


class GeneDecoder(nn.Module):
    r"""Shared per-gene MLP decoder: :math:`\hat y_i = b_i + \mathrm{mlp}([h_i, b_i])_k`.

    One MLP is applied to every gene node (SPEC §5.5); ``b_i`` is the gene's input value
    (control or pre-knockout expression), so the first output is the predicted change.
    Further outputs are extra per-gene logits (the two-step classifier of SPEC §5.6).

    Parameters
    ----------
    d_model
        Node-state width.
    n_out
        Outputs per gene: 1 (regression) or 3 (regression, "changed?", "up?").

    """

    def __init__(self, d_model: int, n_out: int = 1) -> None:
        super().__init__()
        self.n_out = n_out
        self.mlp = MLP3(d_model + 1, d_model, n_out)

    def forward(self, h: Tensor, base: Tensor) -> Tensor:
        """Return ``[N, n_out]``; column 0 is the predicted value ``b_i + Δ_i``."""
        out = self.mlp(torch.cat([h, base.unsqueeze(-1).to(h.dtype)], dim=-1))
        return torch.cat([base.unsqueeze(-1).to(out.dtype) + out[:, :1], out[:, 1:]], dim=-1)
