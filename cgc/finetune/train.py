"""Fine-tuning loops of the downstream tasks (SPEC §5.3–§5.6).

Every loop is seeded (``torch`` initialisation of heads is the caller's; batch order, gene
sampling, masking and negative sampling come from ``seed``), runs on the model's device and
returns the loss of every optimiser step so that callers and tests can check that it falls.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.data import Batch, Data

from cgc.cells import GeneStats
from cgc.determinism import deterministic_cpu
from cgc.finetune.data import CellMatrix, batch_stats, expressed_graph
from cgc.finetune.heads import BatchDiscriminator, CellClassifierHead, GeneDecoder
from cgc.finetune.losses import ecs_loss, focal_loss, grad_reverse, sample_negatives
from cgc.graph import CellGraphBuilder
from cgc.model import CGCModel
from cgc.progress import task as progress_task


@dataclass
class TrainSettings:
    """Optimisation settings shared by the fine-tuning loops.

    Parameters
    ----------
    epochs
        Passes over the training items (SPEC: 30 for annotation/perturbation).
    batch_size, grad_accum
        Items per micro-batch and micro-batches per optimiser step (SPEC §5.4: 8 and 2).
    lr
        Adam learning rate of the CGC encoder.
    head_lr
        Adam learning rate of the task head (and of the batch discriminator); ``None``: ``lr``.
        Heads start from random weights and need a larger rate than the pre-trained encoder.
    max_steps
        Safety cap on optimiser steps (``None``: run all epochs); :class:`TrainLog`
        records when it was hit.
    warmup_frac
        Linear warm-up over this fraction of the planned optimiser steps, then cosine decay
        to ``min_lr_frac`` of the peak rate.
    min_lr_frac
        Final learning rate as a fraction of the peak.
    patience
        Early stopping: stop when the validation loss (when the loop is given one) has not
        improved for this many epochs; the best epoch's weights are restored.
    val_fraction
        Fraction of the training items held out (seeded) for that validation loss.
    grad_clip
        Gradient-norm clipping (``None`` disables it).
    freeze_encoder
        Train only the head (the CGC encoder is kept fixed).
    warmup_steps
        Linear warm-up over this many optimiser steps instead of ``warmup_frac`` of them.
    decay
        After warm-up: ``"cosine"`` (to ``min_lr_frac``) or ``"exponential"``, Uni-Core's
        ``exponential_decay`` with ``--stair-decay`` as the official CGC scripts run it: the
        peak rate × ``decay_ratio ** (step // decay_steps)``.
    decay_ratio, decay_steps
        Of the exponential decay (official: 0.995 every 100 steps).

    """

    epochs: int = 30
    batch_size: int = 8
    grad_accum: int = 2
    lr: float = 1e-4
    head_lr: float | None = None
    max_steps: int | None = None
    warmup_frac: float = 0.1
    min_lr_frac: float = 0.1
    patience: int | None = 5
    val_fraction: float = 0.1
    grad_clip: float | None = 1.0
    freeze_encoder: bool = False
    warmup_steps: int | None = None
    decay: str = "cosine"
    decay_ratio: float = 0.995
    decay_steps: int = 100

    def __post_init__(self) -> None:
        if self.decay not in ("cosine", "exponential"):
            raise ValueError(f"TrainSettings.decay={self.decay!r}; use 'cosine' or 'exponential'")


@dataclass
class TrainLog:
    """Losses of every optimiser step of one loop, and how the loop ended."""

    losses: list[float] = field(default_factory=list)
    val_losses: list[float] = field(default_factory=list)
    best_epoch: int | None = None
    epochs_run: int = 0
    stopped_early: bool = False
    hit_max_steps: bool = False

    @property
    def steps(self) -> int:
        """Number of optimiser steps."""
        return len(self.losses)

    @property
    def final(self) -> float:
        """Mean loss of the last (up to) 5 steps; NaN without steps."""
        return float(np.mean(self.losses[-5:])) if self.losses else float("nan")


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def split_items(n_items: int, settings: TrainSettings, seed: int, min_val: int = 8
                ) -> tuple[np.ndarray, np.ndarray]:
    """Seeded ``(train, validation)`` positions; no validation when too few items."""
    n_val = int(round(settings.val_fraction * n_items))
    if settings.patience is None or n_val < min_val or n_items - n_val < min_val:
        return np.arange(n_items), np.zeros(0, np.int64)
    perm = np.random.default_rng([seed, 424242]).permutation(n_items)
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


def mean_batch_loss(graphs: Sequence[Data], device: torch.device, loss_of: Callable[[Batch], Tensor],
                    batch_size: int = 32) -> float:
    """Mean of ``loss_of(batch)`` over ``graphs`` in batches, weighted by cells per batch."""
    tot = 0.0
    for s in range(0, len(graphs), batch_size):
        batch = Batch.from_data_list(list(graphs[s : s + batch_size])).to(device)
        tot += float(loss_of(batch)) * batch.num_graphs
    return tot / len(graphs)


def _lr_lambda(total: int, settings: TrainSettings) -> Callable[[int], float]:
    warm = max(1, int(settings.warmup_steps) if settings.warmup_steps is not None
               else int(round(settings.warmup_frac * total)))

    def f(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        if settings.decay == "exponential":
            return float(settings.decay_ratio ** ((step + 1) // max(1, settings.decay_steps)))
        t = min(1.0, (step - warm) / max(1, total - warm))
        return settings.min_lr_frac + (1 - settings.min_lr_frac) * 0.5 * (1 + np.cos(np.pi * t))

    return f


def run_loop(params: Iterable[nn.Parameter], n_items: int, settings: TrainSettings, seed: int,
             step: Callable[[np.ndarray, np.random.Generator], Tensor],
             modules: Sequence[nn.Module] = (),
             head_params: Iterable[nn.Parameter] = (),
             validate: Callable[[], float] | None = None,
             items: np.ndarray | None = None,
             description: str = "fine-tuning") -> TrainLog:
    """Generic loop: shuffled epochs, micro-batches, accumulation, Adam, warm-up + decay.

    Parameters
    ----------
    params
        Encoder parameters to optimise (learning rate ``settings.lr``).
    n_items
        Number of training items.
    settings
        Epochs, batch size, accumulation, learning rates, schedule, stopping, step cap.
    seed
        Seed of the shuffling and of the generator handed to ``step``.
    step
        ``step(item_positions, rng) -> loss`` for one micro-batch.
    modules
        Modules put in training mode during the loop; with ``validate`` their weights at
        the best epoch are restored at the end.
    head_params
        Head parameters (learning rate ``settings.head_lr``, default ``settings.lr``).
    validate
        ``validate() -> loss`` on held-out items, called after every epoch (modules are
        in eval mode during the call); drives early stopping (``settings.patience``).
    items
        Positions to train on (default ``range(n_items)``), e.g. without a validation slice.
    description
        Name of the loop in progress reports (:mod:`cgc.progress`): optimiser steps, epoch,
        training and validation loss; early stopping and the step cap as milestones.

    """
    params = [p for p in params if p.requires_grad]
    heads = [p for p in head_params if p.requires_grad]
    groups = [{"params": params, "lr": settings.lr}] if params else []
    if heads:
        groups.append({"params": heads, "lr": settings.head_lr if settings.head_lr is not None
                       else settings.lr})
    trainable = params + heads
    opt = torch.optim.Adam(groups, lr=settings.lr)
    pool = np.arange(n_items) if items is None else np.asarray(items)
    epochs = max(1, settings.epochs)
    per_epoch = max(1, -(-len(pool) // (settings.batch_size * settings.grad_accum)))
    total = epochs * per_epoch
    if settings.max_steps is not None:
        total = min(total, settings.max_steps)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(total, settings))
    rng = np.random.default_rng(seed)
    log = TrainLog()
    for m in modules:
        m.train()
    if len(pool) == 0:
        return log
    device = trainable[0].device if trainable else None
    best: tuple[float, list[dict[str, Tensor]]] | None = None
    since_best = 0
    micro, acc = 0, 0.0
    status = ""
    with progress_task(description, total) as shown, deterministic_cpu(device):
        for epoch in range(epochs):
            order = pool[rng.permutation(len(pool))]
            for s in range(0, len(order), settings.batch_size):
                loss = step(order[s : s + settings.batch_size], rng)
                (loss / settings.grad_accum).backward()
                acc += float(loss.detach())
                micro += 1
                if micro % settings.grad_accum:
                    continue
                if settings.grad_clip is not None:
                    torch.nn.utils.clip_grad_norm_(trainable, settings.grad_clip)
                opt.step()
                sched.step()
                opt.zero_grad(set_to_none=True)
                log.losses.append(acc / settings.grad_accum)
                acc = 0.0
                shown.update(log.steps, f"epoch {epoch + 1}/{epochs} · loss {log.losses[-1]:.4f}{status}")
                if settings.max_steps is not None and log.steps >= settings.max_steps:
                    log.hit_max_steps = True
                    shown.milestone(f"stopped at the step cap max_steps={settings.max_steps} "
                                    f"in epoch {epoch + 1}/{epochs}")
                    break
            log.epochs_run = epoch + 1
            if validate is not None:
                for m in modules:
                    m.eval()
                with torch.no_grad():
                    v = float(validate())
                for m in modules:
                    m.train()
                log.val_losses.append(v)
                status = f" · validation {v:.4f}"
                if best is None or v < best[0]:
                    best = (v, [copy.deepcopy(m.state_dict()) for m in modules])
                    log.best_epoch, since_best = epoch + 1, 0
                else:
                    since_best += 1
                if settings.patience is not None and since_best >= settings.patience:
                    log.stopped_early = True
                    shown.milestone(f"stopped early after epoch {epoch + 1}/{epochs} (best epoch "
                                    f"{log.best_epoch}, validation loss {best[0]:.4f})")
                    break
            if log.hit_max_steps:
                break
    if best is not None:
        for m, st in zip(modules, best[1], strict=True):
            m.load_state_dict(st)
    return log




def _encoder_params(model: CGCModel, settings: TrainSettings) -> list[nn.Parameter]:
    if settings.freeze_encoder:
        for p in model.parameters():
            p.requires_grad_(False)
        return []
    return list(model.parameters())


def finetune_masked(model: CGCModel, cells: CellMatrix, batch_labels: np.ndarray | None = None,
                    settings: TrainSettings | None = None, seed: int = 0, dar_weight: float = 1.0,
                    ecs_weight: float = 10.0, ecs_threshold: float = 0.8,
                    batch_targets: bool = True, batch_conditioned: bool = True) -> TrainLog:
    """Self-supervised fine-tuning on target cells (SPEC §5.3).

    Loss: the pre-training loss (eq. 10 + eq. 11 on masked cells) + ``dar_weight`` ×
    cross-entropy of a batch discriminator behind gradient reversal (scGPT's domain
    adaptation; only with at least two batches) + ``ecs_weight`` × elastic cell similarity
    with threshold ``ecs_threshold``.

    Parameters
    ----------
    model
        The CGC model (updated in place).
    cells
        Target cells.
    batch_labels
        ``[n_cells]`` integer batch codes, or ``None``.
    settings
        Optimisation settings.
    seed
        Seed of batch order, gene sampling and masking (the discriminator is initialised
        from ``torch``'s global generator, seeded by the caller).
    dar_weight, ecs_weight, ecs_threshold
        Weights of the domain-adaptation and ECS terms and the ECS threshold (0.8).
    batch_targets
        With ``batch_labels``, standardise each cell's masked targets with its own batch's
        per-gene statistics (:func:`~cgc.finetune.data.batch_stats`).
    batch_conditioned
        With at least two batches, the value heads of eq. 10/11 also see a learned vector of
        the cell's batch (scGPT's ``use_batch_labels``), added to the node states and to
        ``h_c`` inside the loss only. Reconstruction can then account for batch effects
        through that vector, so ``h_c`` need not carry them; embeddings never include it.

    Returns
    -------
    TrainLog
        Total loss per optimiser step.

    """
    settings = settings or TrainSettings()
    dev = _device(model)
    builder = CellGraphBuilder(model.priors, model.config)
    disc = None
    if batch_labels is not None and dar_weight > 0 and len(np.unique(batch_labels)) > 1:
        disc = BatchDiscriminator(model.config.d_model, int(batch_labels.max()) + 1).to(dev)
    params = _encoder_params(model, settings)
    batch_emb: nn.Embedding | None = None
    if batch_conditioned and batch_labels is not None and len(np.unique(batch_labels)) > 1:
        batch_emb = nn.Embedding(int(batch_labels.max()) + 1, model.config.d_model).to(dev)
        nn.init.zeros_(batch_emb.weight)

    def offset_of(idx: np.ndarray) -> Tensor | None:
        if batch_emb is None or batch_labels is None:
            return None
        return batch_emb(torch.as_tensor(batch_labels[idx], dtype=torch.long, device=dev))

    per_batch = (batch_stats(cells, batch_labels, model.priors.n_genes)
                 if batch_targets and batch_labels is not None else None)

    def stats_of(r: int) -> GeneStats | None:
        return per_batch[int(batch_labels[r])] if per_batch is not None else None  # type: ignore[index]

    def step(idx: np.ndarray, rng: np.random.Generator) -> Tensor:
        graphs = [expressed_graph(builder, model.config, cells, int(r), rng, mask=True,
                                  stats=stats_of(int(r))) for r in idx]
        batch = Batch.from_data_list(graphs).to(dev)
        out = model(batch)
        loss, _ = model.pretrain_loss(batch, out, cell_offset=offset_of(idx))
        if disc is not None and batch_labels is not None:
            b = torch.as_tensor(batch_labels[idx], dtype=torch.long, device=dev)
            loss = loss + dar_weight * F.cross_entropy(disc(grad_reverse(out.h_cell)), b)
        if ecs_weight > 0 and len(idx) > 1:
            loss = loss + ecs_weight * ecs_loss(out.h_cell, ecs_threshold)
        return loss

    train_items, val_items = split_items(cells.n_cells, settings, seed)
    val_graphs = [expressed_graph(builder, model.config, cells, int(r),
                                  np.random.default_rng([seed, 31, int(r)]), mask=True,
                                  stats=stats_of(int(r)))
                  for r in val_items]

    def validate() -> float:
        if batch_emb is None:
            return mean_batch_loss(val_graphs, dev, lambda batch: model.pretrain_loss(batch)[0])
        tot = 0.0
        for s in range(0, len(val_graphs), 32):
            batch = Batch.from_data_list(val_graphs[s : s + 32]).to(dev)
            tot += float(model.pretrain_loss(batch, cell_offset=offset_of(val_items[s : s + 32]))[0]
                         ) * batch.num_graphs
        return tot / len(val_graphs)

    extra: list[nn.Module] = [m for m in (disc, batch_emb) if m is not None]
    mods: list[nn.Module] = [model, *extra]
    log = run_loop(params, cells.n_cells, settings, seed, step, mods,
                   head_params=[p for m in extra for p in m.parameters()],
                   validate=validate if len(val_items) else None, items=train_items,
                   description="fine-tuning (masked expression)")
    model.eval()
    return log


def train_classifier(model: CGCModel, head: CellClassifierHead, graphs: Sequence[Data],
                     labels: np.ndarray, settings: TrainSettings | None = None,
                     seed: int = 0, standardize: bool = True) -> TrainLog:
    """Fine-tune the model and a classifier head on ``h_c`` with cross-entropy (SPEC §5.4).

    Parameters
    ----------
    model, head
        Encoder and :class:`~cgc.finetune.heads.CellClassifierHead` (updated in place).
    graphs
        Unmasked cell graphs (:func:`~cgc.finetune.data.expressed_graph`).
    labels
        ``[n_cells]`` integer class codes.
    settings
        Optimisation settings.
    seed
        Seed of the batch order.
    standardize
        Set the head's input standardisation from the ``h_c`` of ``graphs`` under the
        starting weights (:meth:`~cgc.finetune.heads.CellClassifierHead.fit_standardization`).

    """
    settings = settings or TrainSettings()
    dev = _device(model)
    y_all = torch.as_tensor(np.asarray(labels), dtype=torch.long)

    def step(idx: np.ndarray, rng: np.random.Generator) -> Tensor:
        batch = Batch.from_data_list([graphs[int(i)] for i in idx]).to(dev)
        logits = head(model(batch).h_cell)
        return F.cross_entropy(logits, y_all[idx].to(dev))

    train_items, val_items = split_items(len(graphs), settings, seed)
    if standardize:
        head.fit_standardization(torch.as_tensor(cell_outputs(model, graphs)))

    def validate() -> float:
        logits = torch.as_tensor(cell_outputs(model, [graphs[int(i)] for i in val_items], fn=head))
        return float(F.cross_entropy(logits, y_all[val_items]))

    log = run_loop(_encoder_params(model, settings), len(graphs), settings, seed, step, [model, head],
                   head_params=head.parameters(), validate=validate if len(val_items) else None,
                   items=train_items, description="fine-tuning (cell-type classifier)")
    model.eval()
    head.eval()
    return log


@torch.no_grad()
def cell_outputs(model: CGCModel, graphs: Sequence[Data], fn: Callable[[Tensor], Tensor] | None = None,
                 batch_size: int = 64) -> np.ndarray:
    """Return ``fn(h_c)`` (default ``h_c``) of every graph, in order, as a float32 array."""
    dev = _device(model)
    was = model.training
    model.eval()
    out = []
    for s in range(0, len(graphs), batch_size):
        batch = Batch.from_data_list(list(graphs[s : s + batch_size])).to(dev)
        h = model(batch).h_cell
        out.append((fn(h) if fn is not None else h).float().cpu().numpy())
    model.train(was)
    if not out:
        return np.zeros((0, model.config.d_model), np.float32)
    return np.concatenate(out)


def embedding_graphs(model: CGCModel, cells: CellMatrix, seed: int = 0) -> list[Data]:
    """Unmasked expressed-gene graphs of every cell (deterministic for a seed)."""
    builder = CellGraphBuilder(model.priors, model.config)
    return [expressed_graph(builder, model.config, cells, r, np.random.default_rng([seed, r]))
            for r in range(cells.n_cells)]


# ---------------------------------------------------------------------------- per-gene decoders
def perturbation_loss(pred: Tensor, target: Tensor, base: Tensor, mask: Tensor,
                      generator: torch.Generator | None = None) -> Tensor:
    """Eq. 14: mean squared error of the predicted post-perturbation values over panel genes.

    ``pred`` is the decoder output ``[n, n_out]`` of the gene nodes; ``target``, ``base`` and
    ``mask`` are the matching node fields (``base`` and ``generator`` are unused).
    """
    return F.mse_loss(pred[mask, 0], target[mask].to(pred.dtype))


@dataclass
class KnockoutLoss:
    """Loss of the bulk-knockout heads (SPEC §5.6).

    ``head="regression"``: MSE of the predicted after-profile. ``head="two_step"``:
    MSE + ``loss_1 + alpha_2 · loss_2`` where ``loss_1`` is the focal loss (weight
    ``focal_weight``, ``focal_alpha``, ``focal_gamma``) of "changed?" on all changed genes
    and ``neg_ratio`` × as many sampled unchanged genes, and ``loss_2`` the cross-entropy
    of "up or down?" on the changed genes. A gene is *changed* when
    ``|after − before| > threshold`` (log scale; ``log(2)`` = two-fold).
    """

    head: str = "two_step"
    threshold: float = float(np.log(2.0))
    alpha_2: float = 1.0
    focal_weight: float = 1.0
    focal_alpha: float = 0.5
    focal_gamma: float = 2.0
    neg_ratio: float = 3.0
    min_negatives: int = 8

    def __post_init__(self) -> None:
        if self.head not in ("regression", "two_step"):
            raise ValueError(f"knockout head={self.head!r}; use 'regression' or 'two_step'")

    @property
    def n_out(self) -> int:
        """Decoder outputs per gene."""
        return 1 if self.head == "regression" else 3

    def __call__(self, pred: Tensor, target: Tensor, base: Tensor, mask: Tensor,
                 generator: torch.Generator | None = None) -> Tensor:
        """Loss of one batch (arguments as :func:`perturbation_loss`)."""
        m = mask
        target, base = target[m].to(pred.dtype), base[m].to(pred.dtype)
        loss = F.mse_loss(pred[m, 0], target)
        if self.head == "regression":
            return loss
        delta = target - base
        changed = (delta.abs() > self.threshold).to(pred.dtype)
        keep = sample_negatives(changed.cpu(), self.neg_ratio, self.min_negatives, generator)
        keep = keep.to(pred.device)
        loss_1 = focal_loss(pred[m, 1][keep], changed[keep], self.focal_alpha, self.focal_gamma,
                            self.focal_weight)
        ch = changed > 0
        if bool(ch.any()):
            up = (delta[ch] > 0).to(pred.dtype)
            loss_2 = F.binary_cross_entropy_with_logits(pred[m, 2][ch], up)
        else:
            loss_2 = pred.sum() * 0.0
        return loss + loss_1 + self.alpha_2 * loss_2

    def combine(self, out: np.ndarray, base: np.ndarray) -> np.ndarray:
        """Predicted profile from decoder outputs ``[n, n_out]`` and the input ``base``.

        Regression: column 0. Two-step: genes classified unchanged keep a change within
        ``±threshold``; changed genes get the classifier's direction and at least the
        threshold's magnitude (the regression gives the size).
        """
        reg = out[:, 0]
        if self.head == "regression":
            return reg
        delta = reg - base
        changed = out[:, 1] > 0
        sign = np.where(out[:, 2] > 0, 1.0, -1.0)
        t = self.threshold
        moved = sign * np.maximum(np.abs(delta), t * 1.05)
        kept = np.clip(delta, -0.95 * t, 0.95 * t)
        return base + np.where(changed, moved, kept)


def train_decoder(model: CGCModel, decoder: GeneDecoder, n_items: int,
                  make_graph: Callable[[int, np.random.Generator], Data],
                  loss_fn: Callable[..., Tensor],
                  settings: TrainSettings | None = None, seed: int = 0) -> TrainLog:
    """Fine-tune the model and a per-gene decoder on panel graphs.

    Parameters
    ----------
    model, decoder
        Encoder and :class:`~cgc.finetune.heads.GeneDecoder` (updated in place).
    n_items
        Number of training items.
    make_graph
        ``make_graph(item, rng) -> Data`` (a :func:`~cgc.finetune.data.panel_graph`).
    loss_fn
        ``loss_fn(decoder_output, target, base, loss_mask, generator) -> loss`` (e.g.
        :func:`perturbation_loss` or a :class:`KnockoutLoss`).
    settings, seed
        Optimisation settings and seed.

    """
    settings = settings or TrainSettings()
    dev = _device(model)
    gen = torch.Generator().manual_seed(int(seed))

    def step(idx: np.ndarray, rng: np.random.Generator) -> Tensor:
        batch = Batch.from_data_list([make_graph(int(i), rng) for i in idx]).to(dev)
        out = model(batch)
        genes = ~batch.is_cell
        pred = decoder(out.h[genes], batch.base[genes])
        return loss_fn(pred, batch.target[genes], batch.base[genes], batch.loss_mask[genes], gen)

    train_items, val_items = split_items(n_items, settings, seed)
    val_graphs = [make_graph(int(i), np.random.default_rng([seed, 37, int(i)])) for i in val_items]

    def validate() -> float:
        vgen = torch.Generator().manual_seed(int(seed) + 1)

        def loss_of(batch: Batch) -> Tensor:
            genes = ~batch.is_cell
            pred = decoder(model(batch).h[genes], batch.base[genes])
            return loss_fn(pred, batch.target[genes], batch.base[genes], batch.loss_mask[genes], vgen)

        return mean_batch_loss(val_graphs, dev, loss_of)

    log = run_loop(_encoder_params(model, settings), n_items, settings, seed, step, [model, decoder],
                   head_params=decoder.parameters(), validate=validate if len(val_items) else None,
                   items=train_items, description="fine-tuning (expression decoder)")
    model.eval()
    decoder.eval()
    return log


@torch.no_grad()
def decode(model: CGCModel, decoder: GeneDecoder, graphs: Sequence[Data],
           batch_size: int = 32) -> list[np.ndarray]:
    """Decoder outputs ``[n_genes_i, n_out]`` of the gene nodes of every graph, in node order."""
    dev = _device(model)
    model.eval()
    decoder.eval()
    res: list[np.ndarray] = []
    for s in range(0, len(graphs), batch_size):
        batch = Batch.from_data_list(list(graphs[s : s + batch_size])).to(dev)
        out = model(batch)
        genes = ~batch.is_cell
        pred = decoder(out.h[genes], batch.base[genes]).float().cpu().numpy()
        owner = batch.batch[genes].cpu().numpy()
        res += [pred[owner == k] for k in range(batch.num_graphs)]
    return res
