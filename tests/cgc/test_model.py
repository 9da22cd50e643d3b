from __future__ import annotations

import numpy as np
import pytest
import torch

from cgc import CellGraphBuilder, CGCConfig, CGCModel, GenePriors, MemoryBudgetError
from cgc.config import TrainConfig, load_config
from cgc.embed import embed_cells
from cgc.errors import ConfigError
from cgc.preprocess import prepare_cell
from cgc.train.memory import check_fits


def _batch(priors: GenePriors, cfg: CGCConfig, n_cells: int = 3, seed: int = 0):
    rng = np.random.default_rng(seed)
    valid = np.flatnonzero(priors.arrays["text_mask"])
    b = CellGraphBuilder(priors, cfg)
    graphs = []
    for i in range(n_cells):
        g = rng.choice(valid, 150 + 20 * i, replace=False)
        c = prepare_cell(g, rng.random(len(g)) + 0.1, cfg.max_genes, seed=[seed, i])
        graphs.append(b.build(c["genes"], c["input"], c["target"], c["mask"], seed=i))
    return b.collate(graphs)


def test_forward_shapes(priors: GenePriors, small_config: CGCConfig) -> None:
    torch.manual_seed(0)
    m = CGCModel(small_config, priors)
    batch = _batch(priors, small_config)
    out = m(batch)
    assert out.h.shape == (batch.num_nodes, 32) and out.h_cell.shape == (3, 32)
    torch.testing.assert_close(out.h_cell, out.h[batch.ptr[:-1]])


def test_padding_does_not_leak(priors: GenePriors, small_config: CGCConfig) -> None:
    """A cell's states do not depend on the other cells of its batch."""
    torch.manual_seed(0)
    m = CGCModel(small_config, priors).eval()
    batch = _batch(priors, small_config, 3)
    alone = _batch(priors, small_config, 1)
    with torch.no_grad():
        torch.testing.assert_close(m(batch).h_cell[0], m(alone).h_cell[0], atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("override", [
    {"use_graph": False},
    {"edge_types": ("coexpr", "pos")},
    {"edge_types": ("tftg", "pos")},
    {"edge_types": ("tftg", "coexpr")},
    {"node_features": ("text", "value", "special")},
    {"node_features": ("token", "value", "special")},
    {"node_features": ("token", "text", "special")},
    {"node_features": ("token", "text", "value")},
])
def test_ablations_run(priors: GenePriors, small_config: CGCConfig, override: dict) -> None:
    cfg = small_config.replace(**override)
    m = CGCModel(cfg, priors)
    loss, parts = m.pretrain_loss(_batch(priors, cfg))
    loss.backward()
    assert np.isfinite(parts["loss"])
    if not cfg.use_graph:
        assert len(m.convs) == 0 and m.edge_encoder is None


def test_no_graph_ignores_edges(priors: GenePriors, small_config: CGCConfig) -> None:
    cfg = small_config.replace(use_graph=False)
    torch.manual_seed(0)
    m = CGCModel(cfg, priors).eval()
    batch = _batch(priors, cfg)
    with torch.no_grad():
        a = m(batch).h_cell
        batch.edge_index = batch.edge_index[:, :0]
        torch.testing.assert_close(a, m(batch).h_cell)


def test_masked_gene_loss_only_on_masked(priors: GenePriors, small_config: CGCConfig) -> None:
    torch.manual_seed(0)
    m = CGCModel(small_config, priors).eval()
    batch = _batch(priors, small_config)
    with torch.no_grad():
        _, p1 = m.pretrain_loss(batch)
        unmasked = ~batch.mask & ~batch.is_cell
        batch.target = batch.target.clone()
        batch.target[unmasked] += 7.0
        _, p2 = m.pretrain_loss(batch)
        assert p1["gene"] == pytest.approx(p2["gene"], rel=1e-6)
        assert p1["cell"] != pytest.approx(p2["cell"], rel=1e-3)  # eq. 11 uses all genes
        batch.target[batch.mask] += 3.0
        _, p3 = m.pretrain_loss(batch)
        assert p3["gene"] != pytest.approx(p1["gene"], rel=1e-3)


def test_seeded_determinism(priors: GenePriors, small_config: CGCConfig) -> None:
    losses = []
    for _ in range(2):
        torch.manual_seed(42)
        m = CGCModel(small_config, priors)
        losses.append(m.pretrain_loss(_batch(priors, small_config, seed=5))[1]["loss"])
    assert losses[0] == losses[1]


def test_gene_embeddings_and_embed_cells(priors: GenePriors, small_config: CGCConfig,
                                         pbmc_small) -> None:
    torch.manual_seed(0)
    m = CGCModel(small_config, priors)
    emb = m.gene_embeddings()
    assert emb.shape == (priors.n_genes - 3, 32) and "CD3E" in emb.index
    np.testing.assert_array_equal(
        emb.loc["CD3E"].to_numpy(),
        m.node_encoder.emb_g.weight[priors.vocab.id_of("CD3E")].detach().numpy())
    a = pbmc_small[:10]
    h1 = embed_cells(m, a, batch_size=4)
    h2 = embed_cells(m, a, batch_size=10)
    assert h1.shape == (10, 32)
    np.testing.assert_allclose(h1, h2, atol=1e-5)


def test_configs() -> None:
    p = CGCConfig.paper()
    assert (p.d_model, p.n_transformer_layers, p.n_heads, p.d_ff, p.n_gnn_layers,
            p.max_genes) == (512, 12, 8, 512, 3, 1200)
    with pytest.raises(ConfigError, match="edge_types"):
        CGCConfig.small(edge_types=("tftg", "bogus"))
    with pytest.raises(ConfigError, match="neither"):
        load_config("nope")


def test_config_toml(tmp_path) -> None:
    f = tmp_path / "c.toml"
    f.write_text('base = "small"\n[model]\nd_model = 48\nedge_types = ["tftg"]\n'
                 '[train]\nlr = 0.01\n')
    rc = load_config(f)
    assert rc.model.d_model == 48 and rc.model.edge_types == ("tftg",) and rc.train.lr == 0.01
    f.write_text("[model]\nbogus = 1\n")
    with pytest.raises(ConfigError, match="bogus"):
        load_config(f)


def test_memory_check_fails_before_training() -> None:
    cfg = CGCConfig.paper()
    with pytest.raises(MemoryBudgetError, match="GiB"):
        check_fits(60_000_000, cfg, TrainConfig.paper(batch_size=100_000), torch.device("cpu"))
    est = check_fits(1_000_000, CGCConfig.small(), TrainConfig.small(), torch.device("cpu"))
    assert est["total"] < est["available"]


def test_text_feature_requires_text(priors: GenePriors, small_config: CGCConfig) -> None:
    no_text = GenePriors(priors.vocab, {**priors.arrays,
                                        "text": np.zeros((priors.n_genes, 0), np.float16)},
                         priors.meta)
    with pytest.raises(ConfigError, match="text"):
        CGCModel(small_config, no_text)
    CGCModel(small_config.replace(node_features=("token", "value")), no_text)


def test_cell_offset_reaches_value_heads_only(priors: GenePriors, small_config: CGCConfig) -> None:
    """The batch vector of batch-conditioned fine-tuning (scGPT's use_batch_labels) enters the
    value heads of eq. 10/11 for its own cell only, and never the embeddings."""
    torch.manual_seed(0)
    m = CGCModel(small_config, priors).eval()
    batch = _batch(priors, small_config)
    d = small_config.d_model
    with torch.no_grad():
        out = m(batch)
        base, p0 = m.pretrain_loss(batch, out)
        zero, _ = m.pretrain_loss(batch, out, cell_offset=torch.zeros(3, d))
        assert float(zero) == pytest.approx(float(base), rel=1e-6)
        off = torch.zeros(3, d)
        off[1] = torch.randn(d)
        _, p1 = m.pretrain_loss(batch, out, cell_offset=off)
        assert p1["cell"] != pytest.approx(p0["cell"], rel=1e-3)
        # only cell 1's predictions move: drop cell 1's nodes' targets from the comparison
        genes = ~batch.is_cell
        emb = m.node_encoder.emb_g(batch.gene[genes])
        node_of = out.layout.batch[genes]
        pred0 = m.cell_head(emb, out.h_cell[node_of])
        pred1 = m.cell_head(emb, (out.h_cell + off)[node_of])
        moved = ~torch.isclose(pred0, pred1)
        assert bool(moved[node_of == 1].all()) and not bool(moved[node_of != 1].any())
        assert torch.equal(m(batch).h_cell, out.h_cell)


def test_deduplicated_encoders_equal_literal_eq1_eq2(priors: GenePriors, small_config: CGCConfig,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Eq. 1-2 evaluated once per distinct gene / value / edge attribute give the per-row result.

    The model computes ``mlp_t`` once per gene of the batch, ``mlp_v`` once per distinct value
    and eq. 2 once per distinct ``(kind, tftg, corr, pos)`` (and the first GNN layer projects
    only those rows); the literal per-row computation must give the same states and gradients.
    """
    from cgc.nn import encoders

    torch.manual_seed(0)
    m = CGCModel(small_config, priors)
    batch = _batch(priors, small_config, n_cells=4)
    table, index = m.edge_encoder.factored(batch.edge_tftg, batch.edge_corr, batch.edge_pos,
                                           batch.edge_kind)
    assert table.shape[0] < index.numel() / 2  # few distinct edge attributes: the point of it
    loss, _ = m.pretrain_loss(batch)
    loss.backward()
    fast_h = m(batch).h.detach()
    fast_grads = {n: p.grad.clone() for n, p in m.named_parameters() if p.grad is not None}
    m.zero_grad(set_to_none=True)

    monkeypatch.setattr(encoders, "per_unique", lambda fn, keys, rows=None: fn(keys if rows is None
                                                                                 else rows))
    enc = m.edge_encoder
    monkeypatch.setattr(enc, "factored", lambda *a: (enc._encode(*a), torch.arange(a[0].numel())))
    loss2, _ = m.pretrain_loss(batch)
    loss2.backward()
    torch.testing.assert_close(fast_h, m(batch).h.detach(), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(loss, loss2, atol=1e-5, rtol=1e-5)
    for n, p in m.named_parameters():
        if n in fast_grads:
            torch.testing.assert_close(fast_grads[n], p.grad, atol=1e-5, rtol=1e-4, msg=n)
