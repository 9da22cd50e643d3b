"""CGCConv implements eq. 5-6: checked on hand-built 4-node graphs."""

from __future__ import annotations

import math

import torch
from torch import nn

from cgc.nn.gnn_conv import CGCConv, cgc_conv_reference


def gelu(v: float) -> float:
    return 0.5 * v * (1.0 + math.erf(v / math.sqrt(2.0)))


def _set_mlp(mlp: nn.Sequential, first: list[float]) -> None:
    """First layer: weights ``first`` (over [x_i, x_j, e]), then identity 1x1 layers."""
    lins = [m for m in mlp if isinstance(m, nn.Linear)]
    with torch.no_grad():
        lins[0].weight.copy_(torch.tensor([first]))
        for lin in lins:
            lin.bias.zero_()
        lins[1].weight.fill_(1.0)
        lins[2].weight.fill_(1.0)


def test_eq5_eq6_hand_computed() -> None:
    conv = CGCConv(1)
    _set_mlp(conv.mlp_n, [1.0, 1.0, 1.0])  # mlp_n = gelu(gelu(x_i + x_j + e))
    _set_mlp(conv.mlp_e, [1.0, -1.0, 2.0])  # mlp_e = gelu(gelu(x_i - x_j + 2e))
    x = torch.tensor([[1.0], [2.0], [3.0], [4.0]])
    # edges j -> i: 0->1, 2->1, 3->2 ; node 0 and 3 receive nothing
    edge_index = torch.tensor([[0, 2, 3], [1, 1, 2]])
    e = torch.tensor([[0.5], [-1.0], [2.0]])
    x_new, e_new = conv(x, edge_index, e)

    def f(v: float) -> float:
        return gelu(gelu(v))

    expected_x = [
        0.0,
        (f(2 + 1 + 0.5) + f(2 + 3 - 1.0)) / 2,  # mean over j in {0, 2}
        f(3 + 4 + 2.0),
        0.0,
    ]
    expected_e = [f(2 - 1 + 1.0), f(2 - 3 - 2.0), f(3 - 4 + 4.0)]
    torch.testing.assert_close(x_new.squeeze(1), torch.tensor(expected_x), atol=1e-6, rtol=0)
    torch.testing.assert_close(e_new.squeeze(1), torch.tensor(expected_e), atol=1e-6, rtol=0)


def test_matches_literal_concatenation() -> None:
    torch.manual_seed(0)
    conv = CGCConv(8, hidden=16)
    x = torch.randn(4, 8)
    edge_index = torch.tensor([[0, 1, 2, 3, 0, 2], [1, 2, 3, 0, 2, 1]])
    e = torch.randn(6, 8)
    got = conv(x, edge_index, e)
    ref = cgc_conv_reference(conv, x, edge_index, e)
    torch.testing.assert_close(got[0], ref[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(got[1], ref[1], atol=1e-5, rtol=1e-5)


def test_reset_and_repr_and_skip_edges() -> None:
    torch.manual_seed(0)
    conv = CGCConv(4, update_edges=False)
    assert "CGCConv(4" in repr(conv) and "update_edges=False" in repr(conv)
    w = conv.mlp_n[0].weight.clone()
    conv.reset_parameters()
    assert not torch.equal(w, conv.mlp_n[0].weight)
    x, e = torch.randn(3, 4), torch.randn(2, 4)
    _, e_out = conv(x, torch.tensor([[0, 1], [1, 2]]), e)
    assert e_out is e


def test_factored_edges_equal_dense_edges() -> None:
    """``(table, index)`` edges give the dense layer's output (the first GNN layer's fast path)."""
    torch.manual_seed(1)
    conv = CGCConv(8, hidden=16)
    x = torch.randn(5, 8)
    edge_index = torch.tensor([[0, 1, 2, 3, 4, 0, 2], [1, 2, 3, 4, 0, 2, 1]])
    table = torch.randn(3, 8)
    index = torch.tensor([0, 2, 2, 1, 0, 0, 1])
    got = conv(x, edge_index, (table, index))
    dense = conv(x, edge_index, table[index])
    ref = cgc_conv_reference(conv, x, edge_index, table[index])
    for a, b, c in zip(got, dense, ref, strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-6)
        torch.testing.assert_close(a, c, atol=1e-5, rtol=1e-5)
    last = CGCConv(8, hidden=16, update_edges=False)
    _, e_out = last(x, edge_index, (table, index))
    torch.testing.assert_close(e_out, table[index])
