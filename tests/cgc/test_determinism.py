"""Training loops run PyTorch's deterministic CPU kernels, and leave the global setting as found.

Without them, ``index_put_(accumulate=True)`` (the backward of ``x[edge_index[0]]``) sums in a
thread-timing-dependent order: the default pre-training drifted in the 7th digit after 120
steps when two busy processes shared the cores (measured; see ``cgc/determinism.py``). A
timing-dependent failure cannot be provoked reliably in a test, so these tests check the
switch itself where the loops run.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from cgc import pretrain
from cgc.finetune.train import TrainSettings, run_loop
from tests.cgc.test_pretrain import tiny_run


def test_fine_tuning_loop_uses_deterministic_kernels_and_restores_the_setting() -> None:
    seen: list[bool] = []
    lin = torch.nn.Linear(3, 1)
    X = torch.as_tensor(np.random.default_rng(0).normal(size=(32, 3)), dtype=torch.float32)

    def step(idx: np.ndarray, _rng: np.random.Generator) -> torch.Tensor:
        seen.append(torch.are_deterministic_algorithms_enabled())
        return lin(X[idx]).pow(2).mean()

    assert not torch.are_deterministic_algorithms_enabled()
    run_loop(lin.parameters(), 32, TrainSettings(epochs=2, batch_size=8, grad_accum=1), 0, step, [lin])
    assert seen and all(seen)
    assert not torch.are_deterministic_algorithms_enabled()


def test_pretraining_loop_uses_deterministic_kernels_and_restores_the_setting(
        corpus_dir: Path, tmp_path: Path, determinism_probe: list[bool]) -> None:
    pretrain(corpus_dir, tmp_path / "run", tiny_run(checkpoint_every=6, eval_every=6), steps=6,
             seed=0, progress=False, log=None)
    assert len(determinism_probe) == 7 and all(determinism_probe)
