"""Learning-rate schedule of SPEC §4: linear warm-up, then step-wise exponential decay."""

from __future__ import annotations

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR


def lr_factor(step: int, warmup_steps: int, decay_gamma: float, decay_every: int) -> float:
    """Return the multiplier of the peak learning rate at optimiser step ``step``.

    ``(step + 1) / warmup_steps`` during warm-up, then
    ``decay_gamma ** ((step - warmup_steps) // decay_every)``.
    """
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    return float(decay_gamma ** ((step - warmup_steps) // max(decay_every, 1)))


def make_scheduler(optimizer: Optimizer, warmup_steps: int, decay_gamma: float,
                   decay_every: int) -> LambdaLR:
    """Return a :class:`~torch.optim.lr_scheduler.LambdaLR` following :func:`lr_factor`."""
    return LambdaLR(optimizer, lambda s: lr_factor(s, warmup_steps, decay_gamma, decay_every))
