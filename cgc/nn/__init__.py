"""Neural-network building blocks of CGC."""

from cgc.nn.encoders import MLP3, EdgeEncoder, NodeEncoder
from cgc.nn.gnn_conv import CGCConv
from cgc.nn.heads import CellValueHead, GeneValueHead
from cgc.nn.transformer import CellTransformer, PackedLayout

__all__ = [
    "MLP3",
    "CGCConv",
    "CellTransformer",
    "CellValueHead",
    "EdgeEncoder",
    "GeneValueHead",
    "NodeEncoder",
    "PackedLayout",
]
