"""The ``cgc`` adapter: task kinds, variants, checkpoints and the default-checkpoint cache."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from baselines.cgc_model import CGCAdapter
from benchmarks.errors import InputError
from benchmarks.interface import TaskKind
from benchmarks.registry import build_model, parse_model
from cgc import CGCModel
from cgc.graph import CellGraphBuilder

VARIANTS = ["no-graph", "no-pretrain", "-edge=tftg", "-edge=coexpr", "-edge=pos", "-node=text", "-node=token"]


def test_gene_readouts_use_the_text_feature_of_every_described_gene(small_adapter_kwargs) -> None:
    genes = ["CD3E", "GAPDH", "TP53", "FOXA2"]
    adapters = {r: CGCAdapter(seed=0, gene_readout=r, **small_adapter_kwargs)
                for r in ("token", "text", "node")}
    out = {r: a.embed_genes(genes).to_numpy() for r, a in adapters.items()}
    model = adapters["token"].model
    ids, _ = model.priors.map_genes(genes)
    has_text = np.asarray(model.priors.arrays["text_mask"])[ids]
    assert has_text.any() and not has_text.all()
    token_term = model.node_encoder.norm_g(torch.as_tensor(out["token"])).detach().numpy()
    # node = token term + text term; text = the text term, or the token term without a description
    np.testing.assert_allclose(out["node"][has_text], (token_term + out["text"])[has_text], atol=1e-5)
    np.testing.assert_allclose(out["node"][~has_text], token_term[~has_text], atol=1e-5)
    np.testing.assert_allclose(out["text"][~has_text], token_term[~has_text], atol=1e-5)
    with pytest.raises(InputError, match="gene_readout"):
        CGCAdapter(seed=0, gene_readout="emb", **small_adapter_kwargs)


def test_capabilities_and_variants_are_registered() -> None:
    assert CGCAdapter.capabilities.task_kinds == frozenset(TaskKind)
    assert CGCAdapter.capabilities.gene_id_type == "symbol"
    for v in VARIANTS:
        assert parse_model(f"cgc:{v}").variant == v


def test_gene_embeddings_are_emb_g(small_adapter_kwargs, tiny_checkpoint) -> None:
    from cgc import load_checkpoint

    a = CGCAdapter(seed=0, gene_readout="token", **small_adapter_kwargs)
    emb = a.embed_genes(["CD3E", "NOT_A_GENE", "gapdh"])
    assert list(emb.index) == ["CD3E", "gapdh"]  # unknown genes absent, case-insensitive match
    model, priors, _ = load_checkpoint(tiny_checkpoint)
    table = model.gene_embeddings()
    np.testing.assert_array_equal(emb.loc["CD3E"].to_numpy(), table.loc["CD3E"].to_numpy())
    assert a.extra_metrics()["gene_coverage"] == pytest.approx(2 / 3)
    assert a.init == "pretrained" and len(a.checkpoint_sha256 or "") == 64


def test_no_graph_has_no_gnn_parameters_in_use(small_adapter_kwargs, labelled) -> None:
    a = build_model("cgc:no-graph", seed=0, **small_adapter_kwargs)
    model = a.model
    assert model.config.use_graph is False
    names = [n for n, _ in model.named_parameters()]
    assert not any(n.startswith(("convs.", "edge_encoder.", "node_norms.", "edge_norms.")) for n in names)
    assert a.params["ablation_load"]["dropped_tensors"] > 0  # the checkpoint's GNN was not loaded
    # the output does not depend on the edges at all
    from torch_geometric.data import Batch

    from cgc.finetune import embedding_graphs, map_matrix

    cm = map_matrix(model.priors, labelled[:4].X, list(labelled.var_names))
    batch = Batch.from_data_list(embedding_graphs(model, cm))
    h1 = model(batch).h_cell
    batch.edge_index = batch.edge_index[:, :0]
    h2 = model(batch).h_cell
    torch.testing.assert_close(h1, h2)
    # every parameter of the base model gets a gradient from the task: none is dead GNN weight
    model.train()
    loss, _ = model.pretrain_loss(Batch.from_data_list(embedding_graphs(model, cm)))
    loss.backward()
    # (gene_head needs masked genes, mlp_t/emb_s inputs are constant here: those are not GNN weights)
    skip = ("gene_head", "mlp_t", "emb_s")
    unused = [n for n, p in model.named_parameters() if p.grad is None and not any(k in n for k in skip)]
    assert not unused


def test_no_pretrain_starts_from_random_weights(small_adapter_kwargs, tiny_checkpoint, tiny_priors) -> None:
    from cgc import load_checkpoint

    a = build_model("cgc:no-pretrain", seed=3, **small_adapter_kwargs)
    priors = a.priors  # loads the model (lazily) before the reference below is seeded
    ck, _, _ = load_checkpoint(tiny_checkpoint)
    torch.manual_seed(3)
    fresh = CGCModel(ck.config, priors)
    state, ck_state = a.model.state_dict(), ck.state_dict()
    for k, v in state.items():
        torch.testing.assert_close(v, fresh.state_dict()[k])  # exactly a seeded random init
    matrices = [k for k, v in state.items() if v.dim() >= 2]  # LayerNorm ones/zeros are init constants
    assert matrices and all(not torch.equal(state[k], ck_state[k]) for k in matrices)
    assert a.checkpoint_sha256 is None and a.init == "scratch"
    assert a.params["pretrained"] is False


def test_edge_ablation_drops_that_edge_type(small_adapter_kwargs, labelled) -> None:
    from cgc.priors.bundle import FLAG_COEXPR

    a = build_model("cgc:-edge=coexpr", seed=0, **small_adapter_kwargs)
    assert a.model.config.edge_types == ("tftg", "pos")
    assert a.model.edge_encoder is not None and a.model.edge_encoder.mlp_corr is None
    b = CellGraphBuilder(a.priors, a.model.config)
    assert not (b._flags == FLAG_COEXPR).any()
    n = build_model("cgc:-node=text", seed=0, **small_adapter_kwargs)
    assert n.model.node_encoder.mlp_t is None


def test_cell_embedding_fit_and_roundtrip(small_adapter_kwargs, kang_batches, tmp_path) -> None:
    labelled = kang_batches
    a = CGCAdapter(seed=0, **small_adapter_kwargs)
    before = a.embed_cells(labelled)
    a.fit(labelled, batch_key="batch")
    after = a.embed_cells(labelled)
    assert after.shape == (labelled.n_obs, 32) and np.isfinite(after).all()
    assert not np.allclose(before, after)
    m = a.extra_metrics()
    assert m["finetune_steps"] > 0 and 0.5 < m["gene_coverage"] <= 1
    path = a.save_checkpoint(tmp_path / "ft")
    b = CGCAdapter(seed=0, **{**small_adapter_kwargs, "checkpoint": str(path)})
    np.testing.assert_array_equal(b.embed_cells(labelled), after)
    tuned = a._cell_model.gene_embeddings().loc[["CD3E"]].to_numpy()
    b_token = CGCAdapter(seed=0, gene_readout="token", **{**small_adapter_kwargs, "checkpoint": str(path)})
    np.testing.assert_array_equal(b_token.embed_genes(["CD3E"]).to_numpy(), tuned)
    # seeded determinism: the same seed fine-tunes to the same embeddings
    c = CGCAdapter(seed=0, **small_adapter_kwargs)
    c.fit(labelled, batch_key="batch")
    np.testing.assert_allclose(c.embed_cells(labelled), after, rtol=1e-5, atol=1e-5)


def test_annotation(small_adapter_kwargs, labelled) -> None:
    a = CGCAdapter(seed=0, **small_adapter_kwargs)
    a.fit_classifier(labelled[:80], "cell_type")
    pred = a.predict_labels(labelled[80:])
    assert pred.shape == (40,) and set(pred) <= set(labelled.obs["cell_type"])
    assert a.extra_metrics()["classifier_steps"] > 0


def test_perturbation(small_adapter_kwargs, perturb_data) -> None:
    a = CGCAdapter(seed=0, **small_adapter_kwargs)
    ctrl = perturb_data[perturb_data.obs["condition"] == "ctrl"].copy()
    a.fit_perturbation(perturb_data, "condition")
    genes = sorted({g for c in perturb_data.obs["condition"] for g in c.split("+") if g != "ctrl"})
    conds = [f"{genes[0]}+ctrl", f"{genes[0]}+{genes[1]}"]
    pred = a.predict_perturbation(ctrl, conds)
    assert list(pred.index) == conds and list(pred.columns) == list(perturb_data.var_names)
    assert np.isfinite(pred.to_numpy()).all()


@pytest.mark.parametrize("head", ["regression", "two_step"])
def test_bulk_knockout(small_adapter_kwargs, perturb_data, head) -> None:
    from benchmarks.suites.bulk_knockout import pairs_from_profiles

    X = np.asarray(perturb_data.X[:20])
    genes = list(perturb_data.var_names)
    after = X.copy()
    ko = [genes[i] for i in range(20)]
    after[np.arange(20), np.arange(20)] = 0
    pairs = pairs_from_profiles(X, after, genes, ko)
    a = CGCAdapter(seed=0, knockout_head=head, **small_adapter_kwargs)
    a.fit_knockout(pairs, "ko_gene")
    before = pairs[pairs.obs["state"] == "before"].copy()
    pred = a.predict_knockout(before[:5], ko[:5])
    assert pred.shape == (5, len(genes)) and np.isfinite(pred).all()


def test_default_checkpoint_is_built_once_and_cached(monkeypatch, tmp_path, pbmc_tiny, tiny_priors,
                                                      tiny_config) -> None:
    import baselines.cgc_pretraining as mod

    monkeypatch.setenv("CGCBENCH_DATA_DIR", str(tmp_path))
    calls = []

    def fake_corpus(cards, n_cells, seed):
        calls.append(n_cells)
        return [pbmc_tiny[:200].copy()], [pbmc_tiny[:200].copy()]

    monkeypatch.setattr(mod, "load_corpus", fake_corpus)
    monkeypatch.setattr(mod, "default_priors", lambda *a, **k: tiny_priors)
    monkeypatch.setattr(mod, "_card_sha", lambda name: [name])
    d1 = mod.default_checkpoint(tiny_config, steps=3, seed=0, n_cells=200, text_encoder="hashing:16")
    d2 = mod.default_checkpoint(tiny_config, steps=3, seed=0, n_cells=200, text_encoder="hashing:16")
    assert d1 == d2 and calls == [200]  # the second call reuses the cache
    assert d1.parent == tmp_path / "cgc_checkpoints" and (d1 / "checkpoint" / "MANIFEST.sha256").is_file()
    import json

    info = json.loads((d1 / "pretrain.json").read_text())
    assert info["steps"] == 3 and info["n_train_cells"] > 0 and info["final_val_loss"] is not None
    assert not list(d1.parent.glob(".*tmp*"))  # built atomically, nothing left behind
    d3 = mod.default_checkpoint(tiny_config.replace(use_graph=False), steps=3, seed=0, n_cells=200,
                                text_encoder="hashing:16")
    assert d3 != d1  # an ablated config has its own pre-training


def test_pretrain_seed_run_gives_each_benchmark_seed_its_own_checkpoint(monkeypatch, tmp_path, pbmc_tiny,
                                                                        tiny_priors, tiny_config) -> None:
    import types

    import baselines.cgc_model as adapter_mod
    import baselines.cgc_pretraining as mod

    monkeypatch.setenv("CGCBENCH_DATA_DIR", str(tmp_path))
    monkeypatch.setattr(mod, "load_corpus", lambda cards, n, seed: ([pbmc_tiny[:200].copy()],) * 2)
    monkeypatch.setattr(mod, "default_priors", lambda *a, **k: tiny_priors)
    monkeypatch.setattr(mod, "_card_sha", lambda name: [name])
    monkeypatch.setattr(adapter_mod, "load_config", lambda spec: types.SimpleNamespace(model=tiny_config))
    kw = {"pretrain_steps": 2, "pretrain_cells": 200, "text_encoder": "hashing:16"}

    def sha(seed: int, pretrain_seed: int | str) -> tuple[str, int]:
        a = adapter_mod.CGCAdapter(seed=seed, pretrain_seed=pretrain_seed, **kw)
        assert a.checkpoint_sha256 is None  # nothing is loaded (or pre-trained) until needed
        a.model  # noqa: B018 - loads the (cached) default checkpoint
        return a.checkpoint_sha256, a.params["pretraining"]["seed"]

    shared = {sha(s, 0) for s in (0, 1)}
    assert len(shared) == 1 and next(iter(shared))[1] == 0  # default: one checkpoint for every seed
    own0, own1 = sha(0, "run"), sha(1, "run")
    assert own0[1] == 0 and own1[1] == 1 and own0[0] != own1[0]
    assert own0 in shared  # seed 0 with "run" is the shared default checkpoint, reused from the cache
    with pytest.raises(InputError, match="pretrain_seed"):
        adapter_mod.CGCAdapter(seed=0, pretrain_seed="each", **kw)
