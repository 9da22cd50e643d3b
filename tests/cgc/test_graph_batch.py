"""The batched cell-graph builder equals collating the per-cell builder, edge by edge."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch_geometric.data import Batch

from cgc import CellGraphBuilder, CGCConfig, CGCModel, GenePriors
from cgc.cells import cell_batch, cell_example
from cgc.graph import CellInput, genome_keys
from cgc.priors.bundle import FLAG_COEXPR, FLAG_POS
from cgc.train.corpus import CorpusReader
from cgc.train.data import GraphCollator, InputView, PretrainStream


def _assert_same_batch(ref: Batch, new: Batch) -> None:
    assert sorted(ref.keys()) == sorted(new.keys())
    for k in ref.keys():
        a, b = ref[k], new[k]
        if isinstance(a, torch.Tensor):
            assert a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b), k
        else:
            assert a == b, k
    assert ref.num_graphs == new.num_graphs
    for k, v in ref._slice_dict.items():
        assert torch.equal(v, new._slice_dict[k]) and torch.equal(ref._inc_dict[k], new._inc_dict[k]), k
    for i in (0, ref.num_graphs - 1):  # indexing a batch gives back the cell's graph
        assert torch.equal(ref[i].edge_index, new[i].edge_index)


def _cells(priors: GenePriors, sizes: list[int], seed: int = 0) -> list[CellInput]:
    rng = np.random.default_rng(seed)
    pool = np.arange(4, priors.n_genes)
    out = []
    for i, n in enumerate(sizes):
        g = rng.choice(pool, n, replace=False)
        v = rng.integers(0, 51, n).astype(np.float32)
        extra = (rng.normal(size=n).astype(np.float32), rng.random(n) < 0.4,
                 rng.integers(0, 3, n)) if i % 2 else (None, None, None)
        out.append(CellInput(g, v, *extra))
    return out


@pytest.mark.parametrize("overrides", [
    {"edge_budget": 1e9},  # the budget never bites
    {},  # default budget: co-expression edges subsampled (seeded) in large cells
    {"edge_budget": 1.5},
    {"edge_budget": 2.5, "edge_budget_types": ("tftg", "coexpr", "pos")},  # binds on every type
    {"edge_types": ("tftg", "coexpr")},
    {"edge_types": ("pos",), "pos_window": 7},
    {"use_graph": False},
])
def test_build_batch_equals_collated_builds(priors: GenePriors, overrides: dict) -> None:
    cfg = CGCConfig.small(**overrides)
    b = CellGraphBuilder(priors, cfg)
    cells = _cells(priors, [1200, 3, 600, 0, 1, 250, 1200])
    ref = b.collate([b.build(*c, seed=np.random.default_rng([7, i])) for i, c in enumerate(cells)])
    new = b.build_batch(cells, [np.random.default_rng([7, i]) for i in range(len(cells))])
    _assert_same_batch(ref, new)
    if len(cfg.edge_budget_types) == 3:
        per_cell = torch.diff(new._slice_dict["edge_index"])
        sizes = torch.tensor([len(c.genes) for c in cells])
        budget = (cfg.edge_budget * (sizes + 1)).long()
        assert (per_cell <= torch.maximum(budget, 2 * sizes)).all()
        assert int(per_cell[0]) == int(cfg.edge_budget * 1201)  # cut to the budget exactly
    if cfg.use_graph and "pos" in cfg.edge_types:
        assert b._batch_tables()[3] is not None  # position edges came from genome ranks
        assert (new.edge_kind == 0).sum() > 1000


@pytest.mark.parametrize("split", ["cells", "key_bits"])
def test_build_batch_in_runs_equals_collated_builds(priors: GenePriors, monkeypatch: pytest.MonkeyPatch,
                                                    split: str) -> None:
    """Batches built in several runs of cells (cache-sized runs; node ids too wide for one
    edge key, so ids relative to each run) give the same graphs, budget included."""
    import cgc.graph as graph
    import cgc.graph_batch as graph_batch

    if split == "cells":  # co-expression-only budget with integer seeds: cells without room
        cfg = CGCConfig.small(edge_budget=1.5)  # drop all their optional edges, without a draw
        seeds: list = list(range(7))
    else:
        cfg = CGCConfig.small(edge_budget=2.5, edge_budget_types=("tftg", "coexpr", "pos"))
        seeds = [np.random.default_rng([3, i]) for i in range(7)]
    cells = _cells(priors, [1200, 3, 600, 0, 1, 250, 1200], seed=4)
    # the large cells hold both ends of co-expression-only edges (the budget's optional edges)
    a = priors.arrays
    co = np.flatnonzero(np.asarray(a["flags"]) == FLAG_COEXPR)
    rows = np.repeat(np.arange(priors.n_genes), np.diff(np.asarray(a["indptr"])))[co]
    ends = np.unique(np.concatenate([rows, np.asarray(a["indices"])[co]]))[:400]
    for i in (0, 6):
        rest = np.setdiff1d(cells[i].genes, ends)[: 1200 - len(ends)]
        cells[i] = cells[i]._replace(genes=np.random.default_rng(i).permutation(
            np.concatenate([ends, rest])))
    b = CellGraphBuilder(priors, cfg)
    runs: list[list[tuple[int, int]]] = []
    chunks = b._chunks
    monkeypatch.setattr(b, "_chunks", lambda n: runs.append(chunks(n)) or runs[-1])
    if split == "cells":
        monkeypatch.setattr(graph, "_CHUNK_CELLS", 2)
    else:  # the whole batch (3,261 nodes) needs 12-bit node ids, one 1,200-gene cell 11
        lay = graph_batch.EdgeKeyLayout.for_batch(1201, priors.n_genes, cfg.pos_window)
        monkeypatch.setattr(graph_batch, "KEY_BITS", 2 * 11 + lay.vocab_bits + lay.pos_bits)
    ref = b.collate([b.build(*c, seed=s) for c, s in zip(cells, seeds, strict=True)])
    if split != "cells":
        seeds = [np.random.default_rng([3, i]) for i in range(7)]  # fresh, as build used theirs
    new = b.build_batch(cells, seeds)
    _assert_same_batch(ref, new)
    assert len(runs[-1]) == (4 if split == "cells" else 2)
    assert (new.edge_kind == 0).sum() > 1000
    unbudgeted = CellGraphBuilder(priors, cfg.replace(edge_budget=1e9)).build_batch(cells)
    assert new.num_edges < unbudgeted.num_edges  # the budget bit


def test_no_graph_variant_builds_no_edges(priors: GenePriors) -> None:
    cfg = CGCConfig.small(use_graph=False, d_model=32, n_heads=4, d_ff=64)
    cells = _cells(priors, [300, 200])
    d = CellGraphBuilder(priors, cfg).build(*cells[0])
    assert d.num_edges == 0 and d.edge_index.shape == (2, 0) and d.num_nodes == 301
    full = CellGraphBuilder(priors, cfg.replace(use_graph=True))
    torch.manual_seed(0)
    model = CGCModel(cfg, priors).eval()
    with torch.no_grad():  # the no-graph model gives the same output without the edges
        a = model(full.build_batch(cells)).h
        c = model(CellGraphBuilder(priors, cfg).build_batch(cells)).h
    assert torch.equal(a, c)


def test_genome_ranks_recovered_from_stored_position_edges(priors: GenePriors) -> None:
    a = priors.arrays
    args = (np.asarray(a["indptr"]), np.asarray(a["indices"]), np.asarray(a["flags"]),
            np.asarray(a["pos"]))
    keys, window = genome_keys(*args, priors.n_genes)
    assert window == 50 and (keys >= 0).sum() > 10_000
    # a bundle whose position edges are not a genome order (one edge dropped) is detected
    is_pos = (args[2] & FLAG_POS) != 0
    flags = args[2].copy()
    flags[np.flatnonzero(is_pos)[len(flags) // 3 % int(is_pos.sum())]] = 0
    assert genome_keys(args[0], args[1], flags, args[3], priors.n_genes) is None


def test_cell_batch_and_pretrain_collator_match_single_cell_path(priors: GenePriors, corpus_dir,
                                                                 small_config: CGCConfig) -> None:
    b = CellGraphBuilder(priors, small_config)
    rng = np.random.default_rng(3)
    pool = np.arange(4, priors.n_genes)
    cells = [(rng.choice(pool, n, replace=False), rng.gamma(2.0, 1.0, n)) for n in (400, 90, 130)]
    ref = b.collate([cell_example(b, small_config, g, v, [1, i], mask=True)
                     for i, (g, v) in enumerate(cells)])
    _assert_same_batch(ref, cell_batch(b, small_config, cells, [[1, i] for i in range(3)], mask=True))
    stream = PretrainStream(CorpusReader(corpus_dir, "train"), b, small_config, seed=0)
    idx = [5, 0, 17, 3]
    collated = GraphCollator(b)([InputView(stream)[k] for k in idx])
    _assert_same_batch(Batch.from_data_list([stream[k] for k in idx]), collated)
