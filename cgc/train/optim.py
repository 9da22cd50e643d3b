"""Adam with row-sparse updates of embedding tables (the gene table ``emb_g``).

``emb_g`` holds most of the model's parameters (3.7 M of 3.9 M at the small config, 29 M of
58 M at paper size) while a batch touches a few thousand rows. With
``TrainConfig.sparse_gene_table`` the table's gradient is sparse
(``nn.Embedding(sparse=True)``) and :class:`RowSparseAdam` updates only the rows a step
touched ("lazy" Adam, as :class:`torch.optim.SparseAdam`): a row's moments decay only on the
steps that touch it. Dense parameters get exactly :class:`torch.optim.Adam`'s update, in the
same optimiser (one learning-rate schedule, one checkpointed state).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor, nn
from torch.optim.adam import adam


class RowSparseAdam(torch.optim.Optimizer):
    """Adam; parameters with a sparse gradient are updated row by row (lazy Adam).

    Parameters
    ----------
    params
        Parameters or parameter groups, dense or with sparse gradients.
    lr, betas, eps, weight_decay
        As for :class:`torch.optim.Adam` (L2 weight decay added to the gradient; for sparse
        gradients, on the touched rows only).

    """

    def __init__(self, params: Iterable[Any], lr: float = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0) -> None:
        super().__init__(params, {"lr": lr, "betas": betas, "eps": eps,
                                  "weight_decay": weight_decay})

    def _state(self, p: Tensor) -> dict[str, Any]:
        st = self.state[p]
        if not st:
            st["step"] = torch.tensor(0.0, dtype=torch.float32)
            st["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            st["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        return st

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        """Update every parameter that has a gradient."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            lr, eps, wd = group["lr"], group["eps"], group["weight_decay"]
            dense: list[Tensor] = []
            for p in group["params"]:
                if p.grad is None:
                    continue
                if not p.grad.is_sparse:
                    dense.append(p)
                    continue
                st = self._state(p)
                st["step"] += 1
                step = float(st["step"])
                grad = p.grad.coalesce()
                rows, vals = grad.indices()[0], grad.values()
                if wd:
                    vals = vals + wd * p.index_select(0, rows)
                m = st["exp_avg"].index_select(0, rows).mul_(beta1).add_(vals, alpha=1 - beta1)
                v = st["exp_avg_sq"].index_select(0, rows).mul_(beta2).addcmul_(
                    vals, vals, value=1 - beta2)
                st["exp_avg"].index_copy_(0, rows, m)
                st["exp_avg_sq"].index_copy_(0, rows, v)
                denom = (v.sqrt() / math.sqrt(1 - beta2**step)).add_(eps)
                p.index_add_(0, rows, m.div_(denom), alpha=-lr / (1 - beta1**step))
            if dense:
                states = [self._state(p) for p in dense]
                adam(dense, [p.grad for p in dense], [s["exp_avg"] for s in states],
                     [s["exp_avg_sq"] for s in states], [], [s["step"] for s in states],
                     foreach=False, amsgrad=False, beta1=beta1, beta2=beta2, lr=lr,
                     weight_decay=wd, eps=eps, maximize=False)
        return loss


def clip_grad_norm(params: Iterable[Tensor], max_norm: float) -> Tensor:
    """:func:`torch.nn.utils.clip_grad_norm_` that also accepts sparse gradients.

    The norm of a sparse gradient is that of its (coalesced) values; the scale is the same
    ``max_norm / (total + 1e-6)`` applied when the total exceeds ``max_norm``.
    """
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return torch.tensor(0.0)
    norms = [torch.linalg.vector_norm(g.coalesce().values() if g.is_sparse else g) for g in grads]
    total = torch.linalg.vector_norm(torch.stack(norms))
    coef = torch.clamp(max_norm / (total + 1e-6), max=1.0)
    for g in grads:
        g.mul_(coef.to(g.dtype))
    return total


def use_sparse_gene_table(model: nn.Module) -> None:
    """Make ``model.node_encoder.emb_g`` produce sparse gradients (weights unchanged)."""
    model.node_encoder.emb_g.sparse = True  # type: ignore[union-attr]
