"""Row-sparse Adam for the gene table: dense parameters as Adam, touched rows as Adam, others untouched."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from torch import nn

from cgc import CGCConfig, CGCModel, TrainConfig, load_checkpoint, pretrain
from cgc.config import RunConfig
from cgc.train.optim import RowSparseAdam, clip_grad_norm


class _Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(50, 8)
        self.lin = nn.Linear(8, 3)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return self.lin(torch.tanh(self.emb(idx))).pow(2).sum()


def _run(model: nn.Module, opt: torch.optim.Optimizer, batches: list[torch.Tensor]) -> None:
    for idx in batches:
        opt.zero_grad()
        model(idx).backward()
        opt.step()


@pytest.mark.parametrize("weight_decay", [0.0, 0.05])
def test_dense_parameters_follow_adam_exactly(weight_decay: float) -> None:
    torch.manual_seed(0)
    a = _Tiny()
    b = copy.deepcopy(a)
    batches = [torch.randint(0, 50, (12,)) for _ in range(6)]
    _run(a, torch.optim.Adam(a.parameters(), lr=1e-2, weight_decay=weight_decay), batches)
    _run(b, RowSparseAdam(b.parameters(), lr=1e-2, weight_decay=weight_decay), batches)
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=0, atol=1e-7)


def test_sparse_table_updates_touched_rows_like_adam_and_leaves_others() -> None:
    torch.manual_seed(1)
    dense = _Tiny()
    sparse = copy.deepcopy(dense)
    sparse.emb.sparse = True
    init = sparse.emb.weight.detach().clone()
    every = torch.tensor([1, 2, 3, 3, 7])  # rows touched at every step
    batches = [torch.cat([every, torch.tensor([20])]) if s == 0 else every for s in range(5)]
    _run(dense, torch.optim.Adam(dense.parameters(), lr=1e-2), batches)
    _run(sparse, RowSparseAdam(sparse.parameters(), lr=1e-2), batches)
    rows = torch.tensor([1, 2, 3, 7])
    torch.testing.assert_close(sparse.emb.weight[rows], dense.emb.weight[rows], rtol=0, atol=1e-6)
    torch.testing.assert_close(sparse.lin.weight, dense.lin.weight, rtol=0, atol=1e-6)
    untouched = torch.ones(50, dtype=torch.bool)
    untouched[rows] = False
    untouched[20] = False
    assert torch.equal(sparse.emb.weight[untouched], init[untouched])
    # row 20 was touched at step 1 only: lazy Adam moves it once, dense Adam keeps moving it
    assert not torch.equal(sparse.emb.weight[20], init[20])
    assert not torch.allclose(sparse.emb.weight[20], dense.emb.weight[20], atol=1e-4)


def test_clip_grad_norm_with_sparse_gradients() -> None:
    torch.manual_seed(2)
    a = _Tiny()
    b = copy.deepcopy(a)
    b.emb.sparse = True
    idx = torch.tensor([4, 4, 9, 30])
    a(idx).backward()
    b(idx).backward()
    ta = torch.nn.utils.clip_grad_norm_(a.parameters(), 0.5)
    tb = clip_grad_norm(b.parameters(), 0.5)
    torch.testing.assert_close(ta, tb)
    torch.testing.assert_close(a.emb.weight.grad, b.emb.weight.grad.to_dense())
    torch.testing.assert_close(a.lin.weight.grad, b.lin.weight.grad)


def test_pretraining_with_sparse_gene_table(corpus_dir: Path, tmp_path: Path) -> None:
    model = CGCConfig.small(d_model=32, n_heads=4, d_ff=64, max_genes=96,
                            n_transformer_layers=1, n_gnn_layers=2)
    train = TrainConfig.small(batch_size=8, lr=2e-3, warmup_steps=5, eval_every=10,
                              checkpoint_every=10, val_batches=4, sparse_gene_table=True)
    torch.manual_seed(0)
    res = pretrain(corpus_dir, tmp_path / "run", RunConfig(model, train), steps=10, seed=0,
                   progress=False, log=None)
    assert res.step == 10 and all(v == v for v in res.val_losses)
    trained, priors, _ = load_checkpoint(res.checkpoint)
    torch.manual_seed(0)
    fresh = CGCModel(model, priors)  # the same initial weights (seed 0)
    w0, w1 = fresh.node_encoder.emb_g.weight, trained.node_encoder.emb_g.weight
    moved = (w0 != w1).any(dim=1)
    assert 0 < int(moved.sum()) < 0.5 * priors.n_genes  # only rows of genes the cells hold
