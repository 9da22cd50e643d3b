"""Bitwise-reproducible training on CPU, whatever else the machine is doing.

Some CPU kernels accumulate in an order that depends on thread timing: ``index_put_`` with
``accumulate=True`` (the backward of advanced indexing such as ``x[edge_index[0]]``) and
``put_``. On a quiet machine two runs with the same seed agree bit for bit, but under load
they drift apart in the 7th digit after a hundred steps and then by more (measured: default
CGC pre-training, validation loss 1.92432467 alone vs 1.92432458 beside two busy processes at
step 120). :func:`deterministic_cpu` switches PyTorch to its deterministic implementations of
those kernels for the duration of a training loop (``torch.use_deterministic_algorithms``,
warn-only) and restores the previous setting afterwards; it does nothing off CPU, where the
cost and the CUDA requirements (``CUBLAS_WORKSPACE_CONFIG``) are the caller's choice.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


@contextlib.contextmanager
def deterministic_cpu(device: torch.device | str | None) -> Iterator[None]:
    """Use PyTorch's deterministic kernels inside the block when ``device`` is the CPU.

    Parameters
    ----------
    device
        Device the loop trains on; ``None`` or a CPU device enables determinism.

    """
    import torch  # here, not at import: adapters import this module and `cgcbench list` must not load torch

    on_cpu = device is None or torch.device(device).type == "cpu"
    if not on_cpu:
        yield
        return
    was = torch.are_deterministic_algorithms_enabled()
    was_warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(was, warn_only=was_warn_only)
