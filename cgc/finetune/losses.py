"""Fine-tuning losses: focal loss with negative sampling, gradient reversal, elastic cell similarity.

All functions are pure (no global state); random choices take a :class:`torch.Generator`.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor


def focal_loss(logits: Tensor, targets: Tensor, alpha: float = 0.5, gamma: float = 2.0,
               weight: float = 1.0) -> Tensor:
    r"""Binary focal loss (Lin et al. 2017), averaged over the given elements.

    .. math::
        FL = -w \left[\alpha\, y\,(1-p)^\gamma \log p
             + (1-\alpha)(1-y)\, p^\gamma \log(1-p)\right],\quad p = \sigma(z)

    Parameters
    ----------
    logits
        ``[n]`` logits ``z``.
    targets
        ``[n]`` labels in ``{0, 1}``.
    alpha
        Weight of the positive class (SPEC §5.6: 0.5).
    gamma
        Focusing exponent.
    weight
        Overall weight ``w`` (SPEC §5.6: 1).

    Returns
    -------
    torch.Tensor
        Scalar mean loss (0 for empty input).

    """
    if logits.numel() == 0:
        return logits.sum() * 0.0
    y = targets.to(logits.dtype)
    logp = F.logsigmoid(logits)
    log1mp = F.logsigmoid(-logits)
    p = logp.exp()
    pos = alpha * y * (1 - p).pow(gamma) * logp
    neg = (1 - alpha) * (1 - y) * p.pow(gamma) * log1mp
    return -weight * (pos + neg).mean()


def sample_negatives(targets: Tensor, ratio: float = 3.0, min_negatives: int = 8,
                     generator: torch.Generator | None = None) -> Tensor:
    """Select every positive and a random subset of the negatives (negative sampling).

    Parameters
    ----------
    targets
        ``[n]`` labels in ``{0, 1}``.
    ratio
        Negatives kept per positive.
    min_negatives
        Keep at least this many negatives (all of them when fewer exist), so that a batch
        without positives still trains the "unchanged" side.
    generator
        Source of randomness (seeded by the caller).

    Returns
    -------
    torch.Tensor
        Sorted ``int64`` positions into ``targets``: all positives plus
        ``min(n_neg, max(min_negatives, round(ratio * n_pos)))`` negatives drawn without
        replacement.

    """
    pos = torch.nonzero(targets > 0, as_tuple=False).flatten()
    neg = torch.nonzero(targets <= 0, as_tuple=False).flatten()
    k = min(len(neg), max(int(min_negatives), int(round(ratio * len(pos)))))
    perm = torch.randperm(len(neg), generator=generator)[:k]
    return torch.sort(torch.cat([pos, neg[perm]])).values


class _GradReverse(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: Tensor, lambd: float) -> Tensor:  # type: ignore[override]
        ctx.lambd = lambd
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:  # type: ignore[override]
        return -ctx.lambd * grad, None


def grad_reverse(x: Tensor, lambd: float = 1.0) -> Tensor:
    """Identity in the forward pass; multiplies the gradient by ``-lambd`` (domain adaptation)."""
    return _GradReverse.apply(x, lambd)  # type: ignore[no-any-return]


def ecs_loss(h_cell: Tensor, threshold: float = 0.8) -> Tensor:
    r"""Elastic cell similarity loss of scGPT.

    .. math:: L = \mathrm{mean}_{i \ne j}\left[1 - (\mathrm{relu}(\cos(h_i, h_j)) - \beta)^2\right]

    It pulls pairs with similarity above ``β`` together and pushes the others apart.

    Parameters
    ----------
    h_cell
        ``[B, d]`` cell embeddings.
    threshold
        ``β`` (SPEC §5.3: 0.8).

    """
    z = F.normalize(h_cell.float(), dim=-1)
    sim = z @ z.t()
    eye = torch.eye(len(z), dtype=torch.bool, device=z.device)
    sim = F.relu(sim.masked_fill(eye, 0.0))
    return torch.mean(1 - (sim - threshold) ** 2)
