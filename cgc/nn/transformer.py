"""Transformer over the nodes of each cell (eq. 7–9).

Nodes arrive packed as in PyG (all cells concatenated, ``ptr`` marking boundaries).
Attention uses :func:`torch.nn.functional.scaled_dot_product_attention` on a padded
``[B, L, d]`` layout with a key padding mask, or ``flash_attn_varlen_func`` directly on the
packed layout when flash-attn is installed and the tensors are fp16/bf16 on CUDA.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

try:  # pragma: no cover - optional GPU dependency
    from flash_attn import flash_attn_varlen_func
except Exception:  # pragma: no cover
    flash_attn_varlen_func = None


@dataclass
class PackedLayout:
    """Where each packed node sits in the padded ``[B, L]`` layout.

    Attributes
    ----------
    ptr
        ``[B + 1]`` offsets of the cells in the packed node list.
    batch
        ``[N]`` cell index of each node.
    pos
        ``[N]`` position of each node inside its cell.
    max_len
        Longest cell.
    valid
        ``[B, L]`` boolean mask of real (non-padding) positions.

    """

    ptr: Tensor
    batch: Tensor
    pos: Tensor
    max_len: int
    valid: Tensor

    @classmethod
    def from_ptr(cls, ptr: Tensor) -> PackedLayout:
        """Build the layout from PyG's ``ptr`` vector."""
        sizes = ptr[1:] - ptr[:-1]
        b = len(sizes)
        batch = torch.repeat_interleave(torch.arange(b, device=ptr.device), sizes)
        pos = torch.arange(int(ptr[-1]), device=ptr.device) - ptr[:-1][batch]
        max_len = int(sizes.max()) if b else 0
        valid = torch.arange(max_len, device=ptr.device)[None, :] < sizes[:, None]
        return cls(ptr, batch, pos, max_len, valid)

    def to_dense(self, x: Tensor) -> Tensor:
        """Scatter packed ``[N, ...]`` into zero-padded ``[B, L, ...]``."""
        out = x.new_zeros((len(self.ptr) - 1, self.max_len, *x.shape[1:]))
        out[self.batch, self.pos] = x
        return out

    def to_packed(self, x: Tensor) -> Tensor:
        """Gather ``[B, L, ...]`` back to packed ``[N, ...]``."""
        return x[self.batch, self.pos]


class MultiHeadSelfAttention(nn.Module):
    """Multi-head self-attention restricted to the nodes of each cell.

    Parameters
    ----------
    d_model, n_heads
        Width and number of heads.
    dropout
        Attention dropout (training only).

    """

    def __init__(self, d_model: int, n_heads: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.d_head = d_model // n_heads
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.out = nn.Linear(d_model, d_model)
        self.dropout = dropout

    def forward(self, x: Tensor, layout: PackedLayout) -> Tensor:
        """Attend within cells; ``x`` is packed ``[N, d]``."""
        n, d = x.shape
        qkv = self.qkv(x).view(n, 3, self.n_heads, self.d_head)
        p = self.dropout if self.training else 0.0
        if (flash_attn_varlen_func is not None and x.is_cuda
                and x.dtype in (torch.float16, torch.bfloat16)):  # pragma: no cover
            cu = layout.ptr.to(torch.int32)
            o = flash_attn_varlen_func(qkv[:, 0], qkv[:, 1], qkv[:, 2], cu, cu,
                                       layout.max_len, layout.max_len, dropout_p=p)
            return self.out(o.reshape(n, d))
        dense = layout.to_dense(qkv)  # [B, L, 3, H, Dh]
        q, k, v = (dense[:, :, i].transpose(1, 2) for i in range(3))  # [B, H, L, Dh]
        mask = layout.valid[:, None, None, :]
        o = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p)
        o = layout.to_packed(o.transpose(1, 2)).reshape(n, d)
        return self.out(o)


class TransformerBlock(nn.Module):
    """Pre-norm Transformer block: ``x + attn(LN(x))`` then ``x + FFN(LN(x))``.

    Parameters
    ----------
    d_model, n_heads, d_ff
        Width, heads and feed-forward width.
    dropout
        Dropout of residual branches and FFN.
    attn_dropout
        Dropout of attention weights.

    """

    def __init__(self, d_model: int, n_heads: int, d_ff: int, dropout: float = 0.0,
                 attn_dropout: float = 0.0) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(d_model)
        self.attn = MultiHeadSelfAttention(d_model, n_heads, attn_dropout)
        self.norm2 = nn.LayerNorm(d_model)
        self.ffn = nn.Sequential(nn.Linear(d_model, d_ff), nn.GELU(), nn.Dropout(dropout),
                                 nn.Linear(d_ff, d_model))
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor, layout: PackedLayout) -> Tensor:
        """Apply the block to packed node states ``[N, d]``."""
        x = x + self.drop(self.attn(self.norm1(x), layout))
        return x + self.drop(self.ffn(self.norm2(x)))


class CellTransformer(nn.Module):
    """Stack of :class:`TransformerBlock` with a final LayerNorm.

    Parameters
    ----------
    d_model, n_layers, n_heads, d_ff
        Sizes (paper: 512, 12, 8, 512).
    dropout, attn_dropout
        Dropout probabilities (see :class:`TransformerBlock`).

    """

    def __init__(self, d_model: int, n_layers: int, n_heads: int, d_ff: int,
                 dropout: float = 0.0, attn_dropout: float = 0.0) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(
            TransformerBlock(d_model, n_heads, d_ff, dropout, attn_dropout)
            for _ in range(n_layers)
        )
        self.norm = nn.LayerNorm(d_model)

    def forward(self, x: Tensor, layout: PackedLayout) -> Tensor:
        """Return packed node states ``[N, d]``."""
        for block in self.blocks:
            x = block(x, layout)
        return self.norm(x)
