"""Regression tests of the node-encoding defect (issue 13): gene identity must be visible.

Taken literally, eq. 1 adds an ``emb_g`` row (std 0.02) to an MLP of the raw bin number
(0..50); the value term then outweighs gene identity ~100:1 and every cell's ``h_c`` is
nearly the same vector. ``node_norm=True`` (the default) normalises each term.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch_geometric.data import Batch

from cgc import CGCConfig, CGCModel, GenePriors
from cgc.finetune import embedding_graphs, map_matrix
from cgc.priors import HashingTextEncoder

LITERAL = {"node_norm": False, "input_genes": "expressed", "value_target": "bin"}
"""The publication's eq. 1 and pre-training input taken literally (the old code)."""


@pytest.fixture(scope="module")
def priors(tmp_path_factory) -> GenePriors:
    from baselines.gene_ids import resource_path

    return GenePriors.build(vocab_path=resource_path("cgc_vocab"),
                            positions_path=resource_path("gene_positions_hg38"),
                            trrust_path=resource_path("trrust_human"),
                            gene_info_path=resource_path("gene_info_hs"),
                            text_encoder=HashingTextEncoder(16),
                            text_cache_dir=tmp_path_factory.mktemp("text"), extend_vocab=False)


@pytest.fixture(scope="module")
def two_types(pbmc68k_raw):
    """40 CD14+ monocytes and 40 CD19+ B cells of pbmc68k_reduced (real labels)."""
    labels = pbmc68k_raw.obs["bulk_labels"].astype(str).to_numpy()
    rows = np.concatenate([np.flatnonzero(labels == "CD14+ Monocyte")[:40],
                           np.flatnonzero(labels == "CD19+ B")[:40]])
    return pbmc68k_raw[rows].copy(), labels[rows]


def _model(priors: GenePriors, **over) -> CGCModel:
    torch.manual_seed(0)
    return CGCModel(CGCConfig.small(**over), priors).eval()


def _batch(model: CGCModel, adata) -> Batch:
    cfg = model.config
    cm = map_matrix(model.priors, adata.X, list(adata.var_names),
                    panel_size=cfg.max_genes if cfg.input_genes == "panel" else None)
    return Batch.from_data_list(embedding_graphs(model, cm))


def _token_share(model: CGCModel, batch: Batch) -> float:
    enc = model.node_encoder
    text = model.text_table[batch.gene].float() if enc.mlp_t is not None else None
    with torch.no_grad():
        terms = enc.terms(batch.gene, batch.value, batch.special, text)
    sq = {k: (v.float() ** 2).sum(-1) for k, v in terms.items()}
    return float((sq["token"] / sum(sq.values())).mean())


def test_gene_identity_is_a_visible_share_of_the_node_input(priors, two_types) -> None:
    adata, _ = two_types
    fixed = _model(priors)
    share = _token_share(fixed, _batch(fixed, adata))
    assert share > 0.15, f"gene token carries {share:.3f} of the node input's energy"
    literal = _model(priors, **LITERAL)
    old = _token_share(literal, _batch(literal, adata))
    assert old < 0.05  # the defect this guards against: identity drowned by the raw bin value


def test_mask_embedding_replaces_masked_values(priors, two_types) -> None:
    adata, _ = two_types
    model = _model(priors)
    batch = _batch(model, adata[:2])
    enc = model.node_encoder
    mask = torch.zeros_like(batch.mask)
    mask[1:4] = True
    with torch.no_grad():
        a = enc.terms(batch.gene, batch.value, batch.special, None, mask)["value"]
        b = enc.terms(batch.gene, batch.value + 7.0, batch.special, None, mask)["value"]
    assert torch.equal(a[1:4], b[1:4])  # a masked node's value term ignores the (hidden) value
    assert not torch.allclose(a[4:], b[4:])
    assert torch.allclose(a[1], a[2])  # one learned mask vector
