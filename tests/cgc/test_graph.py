"""Cell-graph construction on a hand-built prior graph."""

from __future__ import annotations

import json
from pathlib import Path

import anndata as ad
import numpy as np
import pytest
import scipy.sparse as sp

from cgc import CellGraphBuilder, CGCConfig, GenePriors
from cgc.graph import EDGE_FROM_CELL, EDGE_GENE, EDGE_TO_CELL
from cgc.priors.positions import position_edges

GENES = ["A", "B", "C", "D", "E", "F"]


@pytest.fixture()
def toy_priors(tmp_path: Path) -> GenePriors:
    vocab = {"<pad>": 0, "<cls>": 1, "<eoc>": 2, **{g: i + 3 for i, g in enumerate(GENES)}}
    (tmp_path / "vocab.json").write_text(json.dumps(vocab))
    (tmp_path / "trrust.tsv").write_text("A\tB\tActivation\t1\nA\tC\tUnknown\t2\nD\tE\tRepression\t3\n")
    (tmp_path / "pos.csv").write_text(
        "hgnc_symbol,chromosome_name,start_position\n"
        "A,1,100\nB,1,200\nC,1,300\nF,1,400\nD,2,100\nE,2,50\n"
    )
    # co-expression: B and F perfectly correlated, A anti-correlated with them.
    rng = np.random.default_rng(0)
    base = rng.poisson(5, 200).astype(float) + 1
    x = np.stack([20 - base, base, rng.poisson(3, 200), rng.poisson(3, 200),
                  rng.poisson(3, 200), base * 2], axis=1)
    corpus = ad.AnnData(sp.csr_matrix(x))
    corpus.var_names = GENES
    return GenePriors.build(tmp_path / "vocab.json", trrust_path=tmp_path / "trrust.tsv",
                            positions_path=tmp_path / "pos.csv", corpus=[corpus],
                            text_encoder=None, pos_window=2, coexpr_min_cells=1)


def _edges(data) -> set[tuple[int, int]]:
    ei = data.edge_index.numpy()
    return set(zip(ei[0].tolist(), ei[1].tolist(), strict=True))


def test_prior_graph_content(toy_priors: GenePriors) -> None:
    c = toy_priors.edge_counts()
    assert c["tftg"] == 3
    assert c["pos"] == 8  # A-B, B-C, C-F, E-D in both directions
    assert c["coexpr"] >= 2  # B <-> F at least


def test_induced_subgraph(toy_priors: GenePriors) -> None:
    cfg = CGCConfig.small(pos_window=2, node_features=("token", "value"))
    b = CellGraphBuilder(toy_priors, cfg)
    vid = {g: toy_priors.vocab.id_of(g) for g in GENES}
    genes = np.array([vid["A"], vid["C"], vid["D"], vid["E"]])  # B and F absent
    d = b.build(genes, np.ones(4, np.float32))
    local = {g: k + 1 for k, g in enumerate(["A", "C", "D", "E"])}  # node 0 = cell
    kind = d.edge_kind.numpy()
    ei = d.edge_index.numpy()
    gg = {(int(s), int(t)) for s, t, k in zip(ei[0], ei[1], kind, strict=True) if k == EDGE_GENE}
    # Only edges between present genes: A->C (tftg), D->E (tftg), D<->E (pos). Not A-B, C-F.
    assert gg == {(local["A"], local["C"]), (local["D"], local["E"]), (local["E"], local["D"])}
    # Cell node connected to every gene in both directions.
    to_cell = {int(s) for s, t, k in zip(ei[0], ei[1], kind, strict=True) if k == EDGE_TO_CELL}
    from_cell = {int(t) for s, t, k in zip(ei[0], ei[1], kind, strict=True)
                 if k == EDGE_FROM_CELL}
    assert to_cell == from_cell == {1, 2, 3, 4}
    assert int(d.gene[0]) == toy_priors.vocab.cls_id and bool(d.is_cell[0])
    # Attributes: tftg flag, position offsets (E is before D on chr2).
    attrs = {(int(s), int(t)): (int(tf), int(p) - cfg.pos_window)
             for s, t, tf, p, k in zip(ei[0], ei[1], d.edge_tftg, d.edge_pos, kind, strict=True)
             if k == EDGE_GENE}
    assert attrs[(local["A"], local["C"])] == (1, 0)
    assert attrs[(local["D"], local["E"])] == (1, -1)
    assert attrs[(local["E"], local["D"])] == (0, 1)


def test_coexpr_attribute_and_edge_type_ablation(toy_priors: GenePriors) -> None:
    vid = [toy_priors.vocab.id_of(g) for g in ("B", "F")]
    cfg = CGCConfig.small(pos_window=2)
    d = CellGraphBuilder(toy_priors, cfg).build(np.array(vid), np.ones(2, np.float32))
    gene_edges = d.edge_kind == EDGE_GENE
    assert gene_edges.sum() == 2 and (d.edge_corr[gene_edges] > 0.99).all()
    d2 = CellGraphBuilder(toy_priors, cfg.replace(edge_types=("tftg", "pos"))).build(
        np.array(vid), np.ones(2, np.float32))
    assert int((d2.edge_kind == EDGE_GENE).sum()) == 0


def test_edge_budget_seeded(priors: GenePriors) -> None:
    cfg = CGCConfig.small(edge_budget=1.5)
    b = CellGraphBuilder(priors, cfg)
    rng = np.random.default_rng(0)
    valid = np.flatnonzero(priors.arrays["text_mask"])
    genes = rng.choice(valid, 600, replace=False)
    full = CellGraphBuilder(priors, cfg.replace(edge_budget=1e9)).build(genes, np.ones(600))
    d1 = b.build(genes, np.ones(600), seed=1)
    d2 = b.build(genes, np.ones(600), seed=1)
    assert _edges(d1) == _edges(d2)
    assert _edges(d1) <= _edges(full)
    protected = (full.edge_tftg == 1) | (full.edge_pos != cfg.pos_window) | (full.edge_kind > 0)
    assert int(protected.sum()) <= d1.num_edges <= max(int(protected.sum()), int(1.5 * 601))
    kept = _edges(d1)
    ei = full.edge_index.numpy()
    for s, t in zip(ei[0][protected.numpy()], ei[1][protected.numpy()], strict=True):
        assert (int(s), int(t)) in kept


def test_position_edges_window() -> None:
    ids = np.arange(10, 20)
    chrom = np.array(["1"] * 6 + ["2"] * 4)
    start = np.arange(10) * 10
    s, d, o = position_edges(ids, chrom, start, window=3)
    pairs = {(int(a), int(b)): int(c) for a, b, c in zip(s, d, o, strict=True)}
    assert pairs[(10, 12)] == 2 and pairs[(12, 10)] == -2
    assert (10, 13) not in pairs  # 3 apart is not < 3
    assert (15, 16) not in pairs  # different chromosomes
