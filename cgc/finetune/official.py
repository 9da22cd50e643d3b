"""Annotation fine-tuning of the official CGCompass network (architecture profile ``official``).

The recipe is the official ``exps/cellAnno.sh`` run of ``single_cell_model`` with ``--do_cls``
(epang-ucas/Cell-Graph-Compass ``src/models/single_cell_model.py``, ``gene_model.py``,
``losses/cell_loss.py``), carried out by the shared loop :func:`cgc.finetune.train.run_loop`:

* head: the official ``ClsDecoder`` (:func:`cgc.nn.official.official_cls_decoder`, three
  linear layers) on the cell embedding, the ``<cls>`` (position 0) output;
* every parameter is trained (nothing frozen), dropout 0.2 in the encoder, the batch norm
  over the node embeddings in training mode (batch statistics; running statistics updated);
* input masking as ``ScModel.forward`` does it while training (``mask_ratio`` 0.4 of the
  non-padding gene positions, never ``<cls>``, get the value ``-3``); predictions and the
  validation loss use unmasked inputs (the official test script sets ``--mask_ratio 0``);
* loss ``40 × cross-entropy`` (``ScLoss``: summed cross-entropy × 40, divided by the batch
  size by Uni-Core's trainer), Adam (0.9, 0.999), clipping at norm 1;
* schedule and stopping come from :class:`~cgc.finetune.train.TrainSettings` (the adapter
  passes the official ``lr`` 1e-4, batch 32, warm-up 500 updates then ×0.995 every 100, 30
  epochs); the best epoch on the seeded validation slice is restored (Uni-Core keeps the best
  checkpoint by validation loss).

Inputs come from a callable ``inputs(rows, generator) -> dict`` of keyword arguments of
:meth:`cgc.nn.official.OfficialCGC.encode` (``gene``, ``value``, ``text``, ``pad``,
``edge_index``, ``edge_attr``); the generator samples whatever the input pipeline samples
(co-expression edges), so that a seed fixes every number.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cgc.finetune.train import TrainLog, TrainSettings, run_loop, split_items
from cgc.nn.official import OfficialCGC

MASK_RATIO = 0.4
"""Official ``--mask_ratio`` of the annotation run (``exps/cellAnno.sh``)."""
MASK_VALUE = -3.0
"""Official ``--mask_value`` default of ``ScModel``."""
PAD_VALUE = -2.0
"""Official ``--pad_value``."""
CLS_LOSS_SCALE = 40.0
"""``ScLoss``: ``loss_cls = cross_entropy_sum × 40``."""

Inputs = Callable[[np.ndarray, torch.Generator], Mapping[str, Tensor | None]]


def mask_values(value: Tensor, ratio: float, generator: torch.Generator,
                mask_value: float = MASK_VALUE, pad_value: float = PAD_VALUE) -> Tensor:
    """``ScModel.random_mask_value`` with ``<cls>`` first: mask ``⌊ratio·n⌋`` gene values per cell.

    Parameters
    ----------
    value
        ``[B, L]`` values, position 0 the ``<cls>`` token; ``pad_value`` marks padding.
    ratio
        Fraction of a cell's non-padding gene positions (zeros included) to mask.
    generator
        Chooses the positions.
    mask_value, pad_value
        Official ``-3`` and ``-2``.

    Returns
    -------
    Tensor
        A masked copy.

    """
    out = value.clone()
    if ratio <= 0:
        return out
    genes = value[:, 1:]
    for b in range(value.shape[0]):
        cand = torch.nonzero(genes[b] != pad_value).flatten()
        n = int(len(cand) * ratio)
        if n == 0:
            continue
        pick = cand[torch.randperm(len(cand), generator=generator)[:n]] + 1
        out[b, pick] = mask_value
    return out


def _generator(seed: int | np.integer) -> torch.Generator:
    return torch.Generator().manual_seed(int(seed))


def _cell_emb(model: OfficialCGC, kw: Mapping[str, Tensor | None], device: torch.device) -> Tensor:
    args = {k: (v.to(device) if isinstance(v, Tensor) else v) for k, v in kw.items()}
    return model.encode(**args)[:, 0, :]  # type: ignore[arg-type]


@torch.no_grad()
def official_cell_outputs(model: OfficialCGC, inputs: Inputs, n_items: int, seed: int = 0,
                          fn: Callable[[Tensor], Tensor] | None = None, batch_size: int = 32) -> np.ndarray:
    """``fn(<cls> output)`` (default the cell embedding) of items ``0 … n_items-1`` in eval mode.

    The input generator is seeded with ``seed`` once, so the same seed gives the same numbers.
    """
    dev = next(model.parameters()).device
    was = model.training
    model.eval()
    gen = _generator(seed)
    out = []
    for s in range(0, n_items, batch_size):
        h = _cell_emb(model, inputs(np.arange(s, min(s + batch_size, n_items)), gen), dev)
        out.append((fn(h) if fn is not None else h).float().cpu().numpy())
    model.train(was)
    return np.concatenate(out) if out else np.zeros((0, model.config.d_model), np.float32)


def train_official_classifier(model: OfficialCGC, head: nn.Module, inputs: Inputs, labels: np.ndarray,
                              settings: TrainSettings, seed: int = 0, mask_ratio: float = MASK_RATIO,
                              loss_scale: float = CLS_LOSS_SCALE) -> TrainLog:
    """Fine-tune the official model and its ``ClsDecoder`` on labelled cells (official recipe).

    Parameters
    ----------
    model, head
        :class:`~cgc.nn.official.OfficialCGC` and
        :func:`~cgc.nn.official.official_cls_decoder` (both updated in place; returned in
        eval mode with the best epoch's weights).
    inputs
        ``inputs(rows, generator)``: encoder keyword arguments of the cells ``rows``.
    labels
        ``[n_cells]`` integer class codes.
    settings
        Optimisation settings (the head shares ``settings.lr`` unless ``head_lr`` is set).
    seed
        Seed of the batch order, the validation slice, the masking and the input sampling
        (dropout draws from ``torch``'s global generator, which the caller seeds).
    mask_ratio, loss_scale
        Input masking while training and the loss weight (official 0.4 and 40).

    Returns
    -------
    TrainLog
        The loss of every optimiser step and the validation cross-entropy per epoch.

    """
    dev = next(model.parameters()).device
    y_all = torch.as_tensor(np.asarray(labels), dtype=torch.long)
    n = len(y_all)

    def step(idx: np.ndarray, rng: np.random.Generator) -> Tensor:
        gen = _generator(rng.integers(2**62))
        kw = dict(inputs(idx, gen))
        kw["value"] = mask_values(kw["value"], mask_ratio, gen)  # type: ignore[arg-type]
        logits = head(_cell_emb(model, kw, dev))
        return loss_scale * F.cross_entropy(logits, y_all[idx].to(dev))

    train_items, val_items = split_items(n, settings, seed)

    def validate() -> float:
        def sub(rows: np.ndarray, gen: torch.Generator) -> Mapping[str, Tensor | None]:
            return inputs(val_items[rows], gen)

        logits = official_cell_outputs(model, sub, len(val_items), seed=seed, fn=head)
        return float(F.cross_entropy(torch.as_tensor(logits), y_all[val_items]))

    params = [] if settings.freeze_encoder else list(model.parameters())
    log = run_loop(params, n, settings, seed, step, [model, head], head_params=head.parameters(),
                   validate=validate if len(val_items) else None, items=train_items,
                   description="fine-tuning (official CGCompass, cell-type classifier)")
    model.eval()
    head.eval()
    return log
