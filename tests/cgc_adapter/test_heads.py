"""Fine-tuning heads and losses: each head trains on tiny data and its loss falls; hand-computed losses."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from cgc import CGCModel
from cgc.finetune import (
    CellClassifierHead,
    GeneDecoder,
    KnockoutLoss,
    TrainSettings,
    ecs_loss,
    embedding_graphs,
    finetune_masked,
    focal_loss,
    grad_reverse,
    map_matrix,
    panel_graph,
    perturbation_loss,
    sample_negatives,
    train_classifier,
    train_decoder,
)
from cgc.graph import CellGraphBuilder


def _falls(losses: list[float], k: int = 3) -> bool:
    return float(np.mean(losses[-k:])) < float(np.mean(losses[:k]))


@pytest.fixture()
def model(tiny_priors, tiny_config) -> CGCModel:
    torch.manual_seed(0)
    return CGCModel(tiny_config, tiny_priors)


def test_focal_loss_matches_hand_computation() -> None:
    logits = torch.tensor([0.0, 2.0, -1.0])
    y = torch.tensor([1.0, 0.0, 1.0])
    alpha, gamma = 0.5, 2.0
    expected = 0.0
    for z, t in zip(logits.tolist(), y.tolist(), strict=True):
        p = 1 / (1 + math.exp(-z))
        if t == 1:
            expected += -alpha * (1 - p) ** gamma * math.log(p)
        else:
            expected += -(1 - alpha) * p**gamma * math.log(1 - p)
    expected /= 3
    got = focal_loss(logits, y, alpha=alpha, gamma=gamma, weight=1.0)
    assert got.item() == pytest.approx(expected, rel=1e-6)
    # by hand: p(0)=0.5 → 0.5·0.25·ln2 = 0.086643; p(2)=0.880797 → 0.5·0.775803·2.126928 = 0.825039;
    # p(-1)=0.268941 → 0.5·0.534447·1.313262 = 0.350934
    assert got.item() == pytest.approx((0.086643 + 0.825039 + 0.350934) / 3, rel=1e-5)
    assert focal_loss(logits, y, weight=2.0).item() == pytest.approx(2 * expected, rel=1e-6)
    # gamma = 0, alpha = 0.5 is half the binary cross-entropy
    bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, y)
    assert focal_loss(logits, y, alpha=0.5, gamma=0.0).item() == pytest.approx(0.5 * bce.item(), rel=1e-6)


def test_negative_sampling_matches_hand_computation() -> None:
    targets = torch.tensor([0, 1, 0, 0, 0, 1, 0, 0, 0, 0], dtype=torch.float32)
    negatives = torch.tensor([0, 2, 3, 4, 6, 7, 8, 9])
    gen = torch.Generator().manual_seed(7)
    perm = torch.randperm(8, generator=torch.Generator().manual_seed(7))[:4]
    expected = sorted([1, 5, *negatives[perm].tolist()])
    got = sample_negatives(targets, ratio=2.0, min_negatives=0, generator=gen)
    assert got.tolist() == expected  # both positives + round(2 × 2) = 4 sampled negatives
    # no positives: min_negatives negatives are still kept; never more than exist
    none = torch.zeros(5)
    assert len(sample_negatives(none, ratio=3.0, min_negatives=2)) == 2
    assert len(sample_negatives(none, ratio=3.0, min_negatives=50)) == 5
    # seeded: the same generator seed gives the same sample
    a = sample_negatives(targets, 1.0, 0, torch.Generator().manual_seed(3))
    b = sample_negatives(targets, 1.0, 0, torch.Generator().manual_seed(3))
    assert a.tolist() == b.tolist()


def test_gradient_reversal_and_ecs() -> None:
    x = torch.ones(3, requires_grad=True)
    grad_reverse(x, 0.5).sum().backward()
    assert x.grad is not None and torch.allclose(x.grad, torch.full((3,), -0.5))
    same = torch.ones(4, 8)
    # all pairs cosine 1 → 1 - (1 - 0.8)^2 off the diagonal, 1 - 0.64 on it (masked to 0)
    expected = (12 * (1 - 0.04) + 4 * (1 - 0.64)) / 16
    assert ecs_loss(same, 0.8).item() == pytest.approx(expected, rel=1e-6)


def test_masked_finetuning_with_domain_adaptation_loss_falls(model, pbmc_tiny) -> None:
    cm = map_matrix(model.priors, pbmc_tiny[:32].X, list(pbmc_tiny.var_names))
    batches = np.arange(32) % 2
    log = finetune_masked(model, cm, batches, TrainSettings(epochs=6, batch_size=8, grad_accum=1, lr=3e-3),
                          seed=0, ecs_weight=1.0)
    assert log.steps == 24
    assert _falls(log.losses)


def test_classifier_head_loss_falls(model, labelled) -> None:
    cm = map_matrix(model.priors, labelled[:48].X, list(labelled.var_names))
    y = np.unique(labelled.obs["cell_type"].to_numpy()[:48], return_inverse=True)[1]
    head = CellClassifierHead(model.config.d_model, 3)
    log = train_classifier(model, head, embedding_graphs(model, cm), y,
                           TrainSettings(epochs=5, batch_size=8, grad_accum=1, lr=3e-3), seed=0)
    assert log.steps == 30
    assert _falls(log.losses)


def test_classifier_head_standardises_h_cell_and_follows_the_encoder(model, labelled) -> None:
    from cgc.finetune import cell_outputs

    cm = map_matrix(model.priors, labelled[:48].X, list(labelled.var_names))
    graphs = embedding_graphs(model, cm)
    h0 = torch.as_tensor(cell_outputs(model, graphs))
    y = np.unique(labelled.obs["cell_type"].to_numpy()[:48], return_inverse=True)[1]
    head = CellClassifierHead(model.config.d_model, 3)
    head.fit_standardization(h0)
    assert torch.allclose(head.norm.running_mean, h0.mean(0), atol=1e-5)
    assert torch.allclose(head.norm.running_var, h0.var(0), atol=1e-5)
    head.eval()
    z = head.norm(h0)  # what the MLP sees: centred, unit spread per dimension
    assert torch.allclose(z.mean(0), torch.zeros_like(z[0]), atol=1e-3)
    assert torch.allclose(z.std(0), torch.ones_like(z[0]), atol=5e-2)
    # fine-tuning the encoder moves h_c: the standardisation follows instead of staying frozen
    train_classifier(model, head, graphs, y, TrainSettings(epochs=3, batch_size=8, grad_accum=1, lr=3e-3,
                                                           head_lr=1e-3), seed=0)
    h1 = torch.as_tensor(cell_outputs(model, graphs))
    assert not torch.allclose(h1.mean(0), h0.mean(0), atol=1e-2)
    assert not torch.allclose(head.norm.running_mean, h0.mean(0), atol=1e-2)  # updated, not frozen
    # the statistics travel with the head's state dict (saved/loaded with the classifier)
    clone = CellClassifierHead(model.config.d_model, 3).eval()
    clone.load_state_dict(head.state_dict())
    assert torch.equal(clone(h0), head(h0))
    with pytest.raises(ValueError, match="fit_standardization"):
        head.fit_standardization(h0[:1])


def test_encoder_and_head_learning_rates_are_separate(model, labelled) -> None:
    cm = map_matrix(model.priors, labelled[:16].X, list(labelled.var_names))
    y = np.unique(labelled.obs["cell_type"].to_numpy()[:16], return_inverse=True)[1]
    head = CellClassifierHead(model.config.d_model, 3)
    enc0 = {k: v.clone() for k, v in model.state_dict().items()}
    head0 = {k: v.clone() for k, v in head.mlp.state_dict().items()}
    train_classifier(model, head, embedding_graphs(model, cm), y,
                     TrainSettings(epochs=1, batch_size=8, grad_accum=1, lr=0.0, head_lr=1e-2), seed=0)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in enc0.items())  # encoder lr 0: unchanged
    assert any(not torch.equal(v, head.mlp.state_dict()[k]) for k, v in head0.items())


def _panel_setup(model, perturb_data):
    from cgc.priors.vocab import SPECIAL_TOKENS

    X = perturb_data.X
    ids, _ = model.priors.map_genes(list(perturb_data.var_names))
    cols = np.flatnonzero(ids >= len(SPECIAL_TOKENS))[:40]
    return X, cols, ids[cols], CellGraphBuilder(model.priors, model.config)


def test_perturbation_decoder_loss_falls(model, perturb_data) -> None:
    X, cols, ids, builder = _panel_setup(model, perturb_data)
    cond = perturb_data.obs["condition"].to_numpy()
    ctrl = X[cond == "ctrl"]
    rows = np.flatnonzero(cond != "ctrl")
    genes = [[int(model.priors.vocab.id_of(g)) for g in c.split("+") if g != "ctrl"] for c in cond[rows]]
    decoder = GeneDecoder(model.config.d_model, 1)

    def make(i, rng):
        return panel_graph(builder, model.config, ids, ctrl[rng.integers(len(ctrl))][cols], genes[i],
                           target=X[rows[i], cols], seed=rng)

    log = train_decoder(model, decoder, len(rows), make, perturbation_loss,
                        TrainSettings(epochs=1, batch_size=8, grad_accum=1, lr=3e-3, max_steps=15,
                                      patience=None), seed=0)
    assert log.steps == 15
    assert _falls(log.losses)
    g = make(0, np.random.default_rng(0))
    assert int(g.special.sum()) == len(genes[0])  # perturbed genes carry special token 1


@pytest.mark.parametrize("head", ["regression", "two_step"])
def test_knockout_heads_loss_falls(model, perturb_data, head) -> None:
    X, cols, ids, builder = _panel_setup(model, perturb_data)
    before = X[:40][:, cols]
    rng0 = np.random.default_rng(1)
    ko = rng0.integers(len(cols), size=40)
    after = before * 1.0
    after[np.arange(40), ko] = 0.0
    after[:, :5] += 1.5  # a consistent up-regulation
    lossf = KnockoutLoss(head=head)
    decoder = GeneDecoder(model.config.d_model, lossf.n_out)

    def make(i, rng):
        return panel_graph(builder, model.config, ids, before[i], [int(ids[ko[i]])], target=after[i],
                           seed=rng)

    log = train_decoder(model, decoder, 40, make, lossf,
                        TrainSettings(epochs=4, batch_size=8, grad_accum=1, lr=3e-3), seed=0)
    assert _falls(log.losses)
    out = np.zeros((3, lossf.n_out))
    out[:, 0] = [1.0, 2.0, 0.0]
    if head == "two_step":
        out[:, 1] = [5.0, -5.0, 5.0]  # changed, unchanged, changed
        out[:, 2] = [-5.0, 5.0, 5.0]  # down, (up), up
        got = lossf.combine(out, np.array([1.0, 1.0, 1.0]))
        t = lossf.threshold
        assert got[0] == pytest.approx(1 - 1.05 * t)  # changed down: at least the threshold
        assert got[1] == pytest.approx(1 + 0.95 * t)  # unchanged: clipped inside the threshold
        assert got[2] == pytest.approx(2.0)  # changed up: regression size |0 - 1| > threshold
    else:
        assert lossf.combine(out, np.ones(3)).tolist() == [1.0, 2.0, 0.0]
