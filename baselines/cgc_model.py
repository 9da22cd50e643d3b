"""``cgc``: the cgcbench adapter of Cell-Graph Compass (the one bridge between ``cgc`` and the harness).

* **weights** — ``checkpoint=`` / ``$CGC_CHECKPOINT`` (a checkpoint or run directory written by
  ``cgcbench pretrain``, or the official ``CGCompass_pretrain_weights.pt`` file with
  ``official_text=`` — see :mod:`baselines.cgc_official`); ``init="pretrained"``.
  Otherwise a small CGC is pre-trained here
  (:mod:`baselines.cgc_pretraining`): on every real human cell set with gene symbols in the
  registry plus SERGIO cells, **minus the data set being evaluated** (the harness tells the
  adapter through :meth:`bind_dataset`), lazily on first use and cached by content hash;
  ``init="scratch"`` then (trained here), and the record names the corpus and both the
  checkpoint's validation loss and the per-gene-mean predictor's.
* **variants** — ``no-graph`` (Transformer only), ``no-pretrain`` (same architecture and
  priors, random weights), ``-edge=tftg|coexpr|pos`` (cell graphs without that edge type),
  ``-node=text|token`` (node embedding without that feature). A variant without a user
  checkpoint gets its own cached pre-training with the ablated config (the paper's protocol);
  with a user checkpoint the matching weights are loaded into the ablated architecture and the
  record says how many tensors were left out (``ablation_load``).
* **gene embeddings** — the rows of ``emb_g`` of the pre-trained model (zero-shot).
* **cell embeddings** — ``fit`` fine-tunes on the target cells with the pre-training losses,
  scGPT-style domain adaptation (batch discriminator behind gradient reversal) and elastic
  cell similarity (threshold 0.8), SPEC §5.3; ``embed_cells`` returns ``h_c``.
* **annotation** — 3-layer MLP on ``h_c``, cross-entropy, the encoder fine-tuned with it.
  With the official weights: the official recipe (``exps/cellAnno.sh``; the official
  ``ClsDecoder`` on the ``<cls>`` output, 40 × cross-entropy, 40 % input masking, dropout 0.2,
  Adam at ``lr`` for every parameter, batch ``official_batch_size`` 32, warm-up
  ``official_warmup_steps`` 500 then ×0.995 every 100 updates, ``classifier_epochs``), see
  :mod:`cgc.finetune.official`.
* **perturbation** — special token 1 marks the perturbed genes of a control cell's graph (a
  panel of the data's genes, zeros included); a shared per-gene MLP decoder predicts each
  gene's post-perturbation value, MSE loss (eq. 14); predictions average over control cells.
* **bulk knockout** — the same decoder on the pre-knockout profile with the knocked-out gene
  marked; ``knockout_head="regression"`` (MSE) or ``"two_step"`` (MSE + focal loss with
  weight 1, alpha 0.5 and negative sampling for "changed?" + alpha·cross-entropy for "up or
  down?"). "Changed" means a two-fold change: ``|after − before| > log_b(2)`` on the data's
  log scale ``b`` (declared by the suite in ``uns["log_base"]``; the suite scores with the
  same definition, :func:`benchmarks.suites.bulk_knockout.two_fold_threshold`).
* **budgets** — SPEC's fine-tuning budgets outside ``--quick`` (30 epochs for annotation,
  perturbation and knockout; warm-up + cosine decay; early stopping on a seeded 10 %
  validation slice of the training cells, best epoch restored); ``max_steps`` is only a
  safety cap and the record says when it was hit (``*_hit_max_steps``).

Genes are matched by symbol (``var["gene_symbol"]`` when the loader provides it); genes
outside the vocabulary are left out of the graphs and reported by :meth:`extra_metrics`.
"""

from __future__ import annotations

import copy
import json
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from baselines._lazy import lazy_callable, lazy_module
from baselines.cgc_pretraining import checkpoint_digest, corpus_cards, default_checkpoint
from benchmarks.errors import InputError
from benchmarks.interface import (
    AnnotationMixin,
    BulkKnockoutMixin,
    Capabilities,
    CellEmbeddingMixin,
    GeneEmbeddingMixin,
    GeneVocabulary,
    Init,
    ModelAdapter,
    PerturbationMixin,
    TaskKind,
)
from cgc.config import EDGE_TYPES, NODE_FEATURES, CGCConfig, load_config
from cgc.priors.bundle import GenePriors
from cgc.priors.vocab import SPECIAL_TOKENS

if TYPE_CHECKING:
    import torch

    from cgc.finetune import CellMatrix, KnockoutLoss, TrainLog, TrainSettings
    from cgc.model import CGCModel

# torch, PyG and the CGC network load on first use, so listing models stays light.
torch = lazy_module("torch")  # type: ignore[no-redef]  # noqa: F811
_FT = "cgc.finetune"
CellClassifierHead = lazy_callable(_FT, "CellClassifierHead")
CellMatrix = lazy_callable(_FT, "CellMatrix")  # type: ignore[misc]  # noqa: F811
GeneDecoder = lazy_callable(_FT, "GeneDecoder")
KnockoutLoss = lazy_callable(_FT, "KnockoutLoss")  # type: ignore[misc]  # noqa: F811
TrainSettings = lazy_callable(_FT, "TrainSettings")  # type: ignore[misc]  # noqa: F811
cell_outputs = lazy_callable(_FT, "cell_outputs")
choose_panel = lazy_callable(_FT, "choose_panel")
decode = lazy_callable(_FT, "decode")
embedding_graphs = lazy_callable(_FT, "embedding_graphs")
finetune_masked = lazy_callable(_FT, "finetune_masked")
map_matrix = lazy_callable(_FT, "map_matrix")
panel_graph = lazy_callable(_FT, "panel_graph")
perturbation_loss = lazy_callable(_FT, "perturbation_loss")
train_classifier = lazy_callable(_FT, "train_classifier")
train_decoder = lazy_callable(_FT, "train_decoder")
CellGraphBuilder = lazy_callable("cgc.graph", "CellGraphBuilder")
CGCModel = lazy_callable("cgc.model", "CGCModel")  # type: ignore[misc]  # noqa: F811
first_mapped_columns = lazy_callable("cgc.preprocess", "first_mapped_columns")
load_checkpoint = lazy_callable("cgc.train.checkpoint", "load_checkpoint")
save_checkpoint = lazy_callable("cgc.train.checkpoint", "save_checkpoint")

log = logging.getLogger(__name__)

CHECKPOINT_ENV = "CGC_CHECKPOINT"
DEFAULT_PRETRAIN_STEPS = 1000
ALL_KINDS = frozenset(TaskKind)
CTRL = "ctrl"


def _csv_tuple(value: Any, allowed: Sequence[str], field: str) -> tuple[str, ...]:
    """Accept a tuple/list or a comma-separated string (``--model-set cgc.edge_types=tftg,pos``)."""
    items = [v.strip() for v in value.split(",")] if isinstance(value, str) else [str(v) for v in value]
    items = [v for v in items if v]
    bad = sorted(set(items) - set(allowed))
    if bad:
        raise InputError(f"cgc: {field}={value!r} has unknown entries {bad}; choose from {list(allowed)}")
    return tuple(v for v in allowed if v in items)


def _pretrain_seed(value: Any) -> int | str:
    if isinstance(value, str) and value.strip().lower() == "run":
        return "run"
    try:
        return int(value)
    except (TypeError, ValueError):
        raise InputError(f"cgc: pretrain_seed={value!r}; use an integer or 'run' (the benchmark seed)"
                         ) from None


def _without(values: Sequence[str], drop: str) -> tuple[str, ...]:
    return tuple(v for v in values if v != drop)


# --------------------------------------------------------------------------------------- adapter
def _dense(X: Any) -> np.ndarray:
    return np.asarray(X.toarray() if sp.issparse(X) else X, dtype=np.float32)


def _symbols(adata: ad.AnnData) -> list[str | None]:
    from baselines.gene_ids import var_gene_ids

    return var_gene_ids(adata, "symbol")


class CGCAdapter(ModelAdapter, GeneEmbeddingMixin, CellEmbeddingMixin, AnnotationMixin,
                 PerturbationMixin, BulkKnockoutMixin):
    """Cell-Graph Compass on every task kind of the harness.

    Parameters
    ----------
    checkpoint
        Checkpoint or run directory (default ``$CGC_CHECKPOINT``); without one, a small CGC is
        pre-trained on the local corpus and cached (see the module docstring). A **file** is
        the official CGCompass release (``CGCompass_pretrain_weights.pt``), run with the
        architecture profile ``official`` (:mod:`baselines.cgc_official`): cell and gene
        embeddings zero-shot, annotation fine-tuned with the official recipe.
    official_text, official_vocab
        With the official weights: the release's ``embeding.pickle`` (required by the
        summary-embedding encoder) and ``vocab.json`` (default: card ``cgc_vocab``).
    official_graphs
        With the official weights: the release's ``bioFeature_embs`` folder; its
        ``tf_tg_graph`` and ``chromo_graph`` give the TF and chromosome edges (default:
        TRRUST / hg38 stand-ins, recorded in ``params.official_graph``).
    official_batch_size, official_warmup_steps, official_mask_ratio
        Annotation fine-tuning of the official weights: cells per optimiser step (official 32;
        ``batch_size``/``grad_accum``/``head_lr`` are the cgcbench-checkpoint recipe), linear
        warm-up updates before the ×0.995-per-100-updates decay (official 500) and the fraction
        of gene values masked in training inputs (official 0.4). ``lr``,
        ``classifier_epochs``, ``max_steps`` and ``max_cells`` apply as for a cgcbench checkpoint.
    pretrained
        ``False``: same architecture and priors, random weights (``no-pretrain``).
    use_graph, edge_types, node_features
        Ablation switches of :class:`~cgc.config.CGCConfig` (``edge_types``/``node_features``
        accept comma-separated strings); ``None`` keeps the checkpoint's / base config's value.
    config
        Base config of the default pre-training: ``"small"``, ``"paper"`` or a TOML path.
    max_genes
        Genes per cell graph (and per perturbation/knockout panel); default: the config's
        (*quick*: 128).
    pretrain_steps, pretrain_cells, pretrain_seed, pretrain_batch_size, pretrain_lr, text_encoder
        Default pre-training: optimiser steps (1,000 — on the default corpus its validation
        loss is then 18 % below the per-gene-mean predictor's; *quick* 30), cells per corpus
        data set (all, also for ``0``; *quick* 600), seed, batch size (16), peak learning rate
        (1e-3) and text model (``"minilm"``; *quick* ``"hashing:64"``). ``pretrain_seed`` is an
        integer (default 0: every benchmark seed fine-tunes the same checkpoint, so seeds vary
        the fine-tuning only) or ``"run"``: each benchmark seed pre-trains its own checkpoint
        with that seed. Zero-shot suites (gene classification, GRN) use the pre-trained weights
        as they are, so only ``"run"`` gives their seeds — and ablation intervals — a real spread.
    finetune_epochs, classifier_epochs, max_steps, max_cells
        Epochs of masked, perturbation and knockout fine-tuning and of annotation
        fine-tuning (SPEC 30 each; *quick* 1 and 3) with warm-up, cosine decay and early
        stopping on a seeded validation slice; a safety cap on optimiser steps per fit
        (20,000, reported when hit; *quick* 12) and on training cells (2,000; *quick* 300).
    batch_size, grad_accum, lr, head_lr
        Fine-tuning micro-batch (SPEC 8), accumulation (SPEC 2) and Adam learning rates of the
        pre-trained encoder (SPEC's peak 1e-4) and of the randomly initialised task heads
        (1e-3; ``None``: ``lr``). A larger encoder rate erases what pre-training learned in the
        first steps (PBMC annotation fell to 0.23 accuracy at 1e-3).
    dar_weight, ecs_weight, ecs_threshold, batch_targets, batch_conditioned
        Cell-embedding fine-tuning: domain-adaptation and elastic-cell-similarity weights and
        threshold (0.8), whether masked targets are standardised within each batch, and
        whether the value heads see a learned batch vector (scGPT's ``use_batch_labels``;
        see :func:`cgc.finetune.train.finetune_masked`).
    gene_readout
        Zero-shot gene embedding (gene classification, GRN): ``"token"`` (the ``emb_g`` rows,
        the paper's), ``"text"`` (the pre-trained text term of eq. 1, default) or ``"node"``
        (token + text terms); see :meth:`cgc.model.CGCModel.gene_features`. Measured on the six
        gene-classification sets (seed 0, default checkpoint): token 0.45–0.53 AUC (≈ random),
        node 0.43–0.60, text 0.61–0.89 — ``emb_g`` rows of genes a small corpus never shows
        stay random, while every described gene has a text vector.
    n_control_cells
        Control cells averaged per predicted perturbation condition (64; *quick* 16).
    knockout_head, knockout_alpha, focal_alpha, focal_weight, focal_gamma, neg_ratio, change_threshold
        Bulk-knockout decoder (see :class:`cgc.finetune.KnockoutLoss`).
    device
        ``"cpu"``, ``"cuda"`` or ``None`` (CUDA when available).

    """

    name = "cgc"
    description = "Cell-Graph Compass: GNN over prior-knowledge cell graphs + Transformer (this repo's cgc/)."
    capabilities = Capabilities(
        task_kinds=ALL_KINDS,
        organisms=frozenset({"human"}),
        gene_id_type="symbol",
        expression_kinds=frozenset({"counts", "log1p_normalized", "log2_normalized"}),
    )
    variants: Mapping[str, Mapping[str, Any]] = {
        "no-graph": {"use_graph": False},
        "no-pretrain": {"pretrained": False},
        **{f"-edge={e}": {"edge_types": _without(EDGE_TYPES, e)} for e in EDGE_TYPES},
        "-node=text": {"node_features": _without(NODE_FEATURES, "text")},
        "-node=token": {"node_features": _without(NODE_FEATURES, "token")},
    }

    zero_shot_seed_params: Mapping[str, Any] = {"pretrain_seed": "run"}

    def __init__(
        self,
        *,
        checkpoint: str | None = None,
        pretrained: bool = True,
        use_graph: bool | None = None,
        edge_types: Sequence[str] | str | None = None,
        node_features: Sequence[str] | str | None = None,
        config: str = "small",
        max_genes: int | None = None,
        pretrain_steps: int | None = None,
        pretrain_cells: int | None = None,
        pretrain_seed: int | str = 0,
        pretrain_batch_size: int = 16,
        pretrain_lr: float = 1e-3,
        text_encoder: str | None = None,
        finetune_epochs: int | None = None,
        classifier_epochs: int | None = None,
        max_steps: int | None = None,
        max_cells: int | None = None,
        batch_size: int = 8,
        grad_accum: int = 2,
        lr: float = 1e-4,
        head_lr: float | None = 1e-3,
        dar_weight: float = 1.0,
        ecs_weight: float = 10.0,
        ecs_threshold: float = 0.8,
        batch_targets: bool = True,
        batch_conditioned: bool = True,
        gene_readout: str = "text",
        n_control_cells: int | None = None,
        knockout_head: str = "two_step",
        knockout_alpha: float = 1.0,
        focal_alpha: float = 0.5,
        focal_weight: float = 1.0,
        focal_gamma: float = 2.0,
        neg_ratio: float = 3.0,
        change_threshold: float | None = None,
        device: str | None = None,
        official_text: str | None = None,
        official_vocab: str | None = None,
        official_graphs: str | None = None,
        official_batch_size: int = 32,
        official_warmup_steps: int = 500,
        official_mask_ratio: float = 0.4,
        **kwargs: Any,
    ) -> None:
        quick = bool(kwargs.get("quick", False))
        settings = {
            "checkpoint": str(checkpoint) if checkpoint not in (None, "") else None,
            "pretrained": bool(pretrained),
            "use_graph": None if use_graph is None else bool(use_graph),
            "edge_types": None if edge_types is None else list(_csv_tuple(edge_types, EDGE_TYPES,
                                                                          "edge_types")),
            "node_features": None if node_features is None else list(
                _csv_tuple(node_features, NODE_FEATURES, "node_features")),
            "config": str(config),
            "max_genes": int(max_genes) if max_genes is not None else (128 if quick else None),
            "pretrain_steps": int(pretrain_steps if pretrain_steps is not None
                                  else (30 if quick else DEFAULT_PRETRAIN_STEPS)),
            "pretrain_cells": (int(pretrain_cells) or None) if pretrain_cells is not None
            else (600 if quick else None),
            "pretrain_seed": _pretrain_seed(pretrain_seed),
            "pretrain_batch_size": int(pretrain_batch_size),
            "pretrain_lr": float(pretrain_lr),
            "text_encoder": text_encoder or ("hashing:64" if quick else "minilm"),
            "finetune_epochs": int(finetune_epochs if finetune_epochs is not None else (1 if quick else 30)),
            "classifier_epochs": int(classifier_epochs if classifier_epochs is not None
                                     else (3 if quick else 30)),
            "max_steps": int(max_steps if max_steps is not None else (12 if quick else 20_000)),
            "max_cells": int(max_cells if max_cells is not None else (300 if quick else 2000)),
            "batch_size": int(batch_size),
            "grad_accum": int(grad_accum),
            "lr": float(lr),
            "head_lr": float(head_lr) if head_lr is not None else None,
            "dar_weight": float(dar_weight),
            "ecs_weight": float(ecs_weight),
            "ecs_threshold": float(ecs_threshold),
            "batch_targets": bool(batch_targets),
            "batch_conditioned": bool(batch_conditioned),
            "gene_readout": str(gene_readout),
            "n_control_cells": int(n_control_cells if n_control_cells is not None else (16 if quick else 64)),
            "knockout_head": str(knockout_head),
            "knockout_alpha": float(knockout_alpha),
            "focal_alpha": float(focal_alpha),
            "focal_weight": float(focal_weight),
            "focal_gamma": float(focal_gamma),
            "neg_ratio": float(neg_ratio),
            "change_threshold": None if change_threshold is None else float(change_threshold),
            "device": device,
            "official_text": official_text,
            "official_vocab": official_vocab,
            "official_graphs": official_graphs,
            "official_batch_size": int(official_batch_size),
            "official_warmup_steps": int(official_warmup_steps),
            "official_mask_ratio": float(official_mask_ratio),
        }
        if not 0.0 <= settings["official_mask_ratio"] < 1.0:
            raise InputError(f"cgc: official_mask_ratio={official_mask_ratio!r}; use a fraction in [0, 1)")
        if official_graphs is not None:  # fail before any work (read fully when the model loads)
            from baselines.cgc_official import check_official_graphs_folder

            check_official_graphs_folder(official_graphs)
        if checkpoint not in (None, ""):  # a path that does not exist fails here, before any work
            from baselines.gene_ids import checkpoint_setting

            checkpoint_setting(checkpoint, CHECKPOINT_ENV)
        if settings["official_batch_size"] < 1 or settings["official_warmup_steps"] < 0:
            raise InputError("cgc: official_batch_size must be >= 1 and official_warmup_steps >= 0")
        if settings["gene_readout"] not in ("token", "text", "node"):
            raise InputError(f"cgc: gene_readout={gene_readout!r}; use 'token' (emb_g, the paper's), "
                             "'text' or 'node' (token + text terms of eq. 1)")
        if settings["knockout_head"] not in ("regression", "two_step"):
            raise InputError(f"cgc: knockout_head={knockout_head!r}; use 'regression' or 'two_step'")
        super().__init__(**settings, **kwargs)
        self.s = settings
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self._model: CGCModel | None = None
        self._priors: GenePriors | None = None
        self._base_state: dict[str, torch.Tensor] | None = None
        self._checkpoint_path: Path | None = None
        self._checkpoint_sha: str | None = None
        self._user_checkpoint = False
        self._cell_model: CGCModel | None = None
        self._classifier: tuple[CGCModel, CellClassifierHead, list[str]] | None = None
        self._pert: dict[str, Any] | None = None
        self._ko: dict[str, Any] | None = None
        self._metrics: dict[str, float] = {}
        self._curves: dict[str, list[tuple[int, float]]] = {}
        self._eval_datasets: tuple[str, ...] = ()
        self._panel_ids: np.ndarray | None = None
        self._official: Any = None
        self._official_cls: dict[str, Any] | None = None
        self._fit_cells: tuple[ad.AnnData, str] | None = None

    requires = ("torch_geometric",)
    install_hint = "pip install 'torch-geometric>=2.6,<2.9' (a dependency of cgcbench)"

    def official(self) -> Any:
        """The official-release runner when ``checkpoint`` names a file, else ``None``.

        A file is the official CGCompass weights (``CGCompass_pretrain_weights.pt``); a
        directory is a cgcbench checkpoint. See :mod:`baselines.cgc_official`.
        """
        from baselines.gene_ids import checkpoint_setting

        path = checkpoint_setting(self.s["checkpoint"], CHECKPOINT_ENV)
        if path is None or not path.is_file():
            return None
        if self._official is None:
            from baselines.cgc_official import OfficialCGCRunner
            from benchmarks.data.fetch import sha256_file

            self._official = OfficialCGCRunner(path, self.s["official_text"], self.s["official_vocab"],
                                               seed=self.seed, graphs=self.s["official_graphs"])
            self._checkpoint_sha = sha256_file(path)
            self.params.update(self._official.params)
            self.params |= {"checkpoint_source": "user", "checkpoint_path": str(path),
                            "checkpoint_sha256": self._checkpoint_sha,
                            "release": "CGCompass (official weights, architecture profile 'official')"}
        return self._official

    def _official_only(self, what: str) -> None:
        if self.official() is not None:
            raise InputError(
                f"cgc: {what} with the official CGCompass weights is not implemented here (they give "
                "cell and gene embeddings zero-shot); fine-tuning heads run on cgcbench checkpoints "
                "(a checkpoint directory)"
            )

    def gene_vocabulary(self) -> GeneVocabulary:
        """CGC's gene symbols, read from file only (no priors, no model, no pre-training).

        A user checkpoint's own vocabulary (``priors/vocab.json``) when one is named,
        otherwise the official CGC vocabulary of the default priors (card ``cgc_vocab``).
        """
        from baselines.gene_ids import checkpoint_setting
        from cgc.train.checkpoint import resolve_checkpoint

        path = checkpoint_setting(self.s["checkpoint"], CHECKPOINT_ENV)
        if path is not None and path.is_file():  # official weights: the official vocab.json
            vocab = Path(self.s["official_vocab"]) if self.s["official_vocab"] else None
            if vocab is None:
                return GeneVocabulary.from_card("cgc_vocab", id_type="symbol", min_coverage=0.1)
            tokens = json.loads(vocab.read_text())
            return GeneVocabulary(frozenset(map(str, tokens)), id_type="symbol", source=str(vocab),
                                  min_coverage=0.1)
        if path is not None:
            vocab = resolve_checkpoint(path) / "priors" / "vocab.json"
            if vocab.is_file():
                tokens = json.loads(vocab.read_text())
                return GeneVocabulary(frozenset(map(str, tokens)), id_type="symbol",
                                      source=str(vocab), min_coverage=0.1)
        return GeneVocabulary.from_card("cgc_vocab", id_type="symbol", min_coverage=0.1)

    def bind_dataset(self, dataset: Mapping[str, Any]) -> None:
        """Leave the evaluated data set out of the default pre-training corpus.

        Called by the harness before any fit; ``dataset`` is the record's dataset
        provenance (its ``name`` is the card name).
        """
        name = str(dataset.get("name", ""))
        if name and name not in self._eval_datasets:
            if self._model is not None and name in corpus_cards() and self.s["checkpoint"] is None:
                raise RuntimeError(f"cgc: bind_dataset({name!r}) after the default checkpoint was "
                                   "loaded; bind before fitting")
            self._eval_datasets = (*self._eval_datasets, name)

    def _say(self, msg: str) -> None:
        from cgc.progress import is_hosted, note

        if is_hosted():  # cgcbench run: shown with the cell's progress (nothing under --quiet)
            note(msg)
            return
        log.info(msg)
        if os.environ.get("CGCBENCH_QUIET"):  # an isolated cell of cgcbench run --quiet
            return
        from rich.console import Console

        Console(stderr=True).print(msg, markup=False, highlight=False)

    # ------------------------------------------------------------------------------ provenance
    @property
    def init(self) -> Init:
        """``pretrained`` for a user checkpoint, else ``scratch`` (pre-trained here or random).

        Known without loading (or pre-training) anything.
        """
        from baselines.gene_ids import checkpoint_setting

        user = checkpoint_setting(self.s["checkpoint"], CHECKPOINT_ENV) is not None
        return "pretrained" if user and self.s["pretrained"] else "scratch"

    @property
    def checkpoint_sha256(self) -> str | None:
        """sha256 of the loaded checkpoint's manifest; ``None`` for random weights or before loading."""
        return self._checkpoint_sha if self.s["pretrained"] else None

    def extra_metrics(self) -> dict[str, float]:
        """Gene coverage of the last data set in the vocabulary and the fine-tuning losses."""
        return dict(self._metrics)

    # ------------------------------------------------------------------------------ model loading
    def _variant_config(self, base: CGCConfig) -> CGCConfig:
        over: dict[str, Any] = {}
        if self.s["use_graph"] is not None:
            over["use_graph"] = self.s["use_graph"]
        if self.s["edge_types"] is not None:
            over["edge_types"] = tuple(self.s["edge_types"])
        if self.s["node_features"] is not None:
            over["node_features"] = tuple(self.s["node_features"])
        if self.s["max_genes"] is not None:
            over["max_genes"] = int(self.s["max_genes"])
        return base.replace(**over) if over else base

    def _ensure_loaded(self) -> None:
        if self._model is not None:
            return
        from baselines.gene_ids import checkpoint_setting

        path = checkpoint_setting(self.s["checkpoint"], CHECKPOINT_ENV)
        if path is not None:
            model, priors, meta = load_checkpoint(path, map_location="cpu")
            self._user_checkpoint = True
            self.params["checkpoint_source"] = "user"
            self.params["checkpoint_path"] = str(meta["path"])
            cfg = self._variant_config(model.config)
            if cfg != model.config:
                model = self._load_partial(model, cfg, priors)
        else:
            cfg = self._variant_config(load_config(self.s["config"]).model)
            if self.s["text_encoder"] == "none" and "text" in cfg.node_features:
                cfg = cfg.replace(node_features=_without(cfg.node_features, "text"))
            pseed = self.seed if self.s["pretrain_seed"] == "run" else int(self.s["pretrain_seed"])
            cells, what = self._fit_cells or (None, "")
            dest = default_checkpoint(cfg, steps=self.s["pretrain_steps"], seed=pseed,
                                      n_cells=self.s["pretrain_cells"], text_encoder=self.s["text_encoder"],
                                      batch_size=self.s["pretrain_batch_size"], lr=self.s["pretrain_lr"],
                                      exclude=self._eval_datasets, say=self._say,
                                      reference=cells, reference_source=what)
            self._fit_cells = None  # the model is loaded: no need to hold the cells
            model, priors, meta = load_checkpoint(dest / "checkpoint", map_location="cpu")
            self.params["checkpoint_source"] = "built by cgcbench (cached default pre-training)"
            self.params["checkpoint_path"] = str(dest / "checkpoint")
            info = json.loads((dest / "pretrain.json").read_text())
            for name in ("loss", "val_loss"):  # written by default_checkpoint (absent in older caches)
                if info.get(f"{name}_curve"):
                    self._curves[f"pretrain_{name}"] = [(int(s), float(v)) for s, v in info[f"{name}_curve"]]
            self.params["pretraining"] = {k: info.get(k) for k in (
                "corpus_cards", "corpus", "n_train_cells", "n_val_cells", "steps", "wall_time_s",
                "final_train_loss", "final_val_loss", "mean_predictor_val_loss", "seed", "n_cells",
                "text", "train")}
            for key in ("unavailable_corpus", "unavailable_priors", "text_features"):  # what was left out
                if key in info:
                    self.params["pretraining"][key] = info[key]
            self.params["pretraining"]["excluded_evaluated_datasets"] = [
                c for c in corpus_cards() if c in self._eval_datasets]
        self._checkpoint_path = Path(meta["path"])
        self._checkpoint_sha = checkpoint_digest(meta["path"])
        self.params["checkpoint_sha256"] = self._checkpoint_sha
        self.params["model_config"] = model.config.to_dict()
        self.params["priors_hash"] = priors.content_hash
        if not self.s["pretrained"]:
            torch.manual_seed(self.seed)
            model = CGCModel(model.config, priors)
            self.params["weights"] = f"random init (torch seed {self.seed}); checkpoint used for priors only"
        model.eval().to(self.device)
        self._model, self._priors = model, priors
        self._base_state = copy.deepcopy(model.state_dict())

    def _load_partial(self, model: CGCModel, cfg: CGCConfig, priors: GenePriors) -> CGCModel:
        torch.manual_seed(self.seed)
        new = CGCModel(cfg, priors)
        own = new.state_dict()
        src = model.state_dict()
        take = {k: v for k, v in src.items() if k in own and own[k].shape == v.shape}
        new.load_state_dict(take, strict=False)
        self.params["ablation_load"] = {"loaded_tensors": len(take),
                                        "random_tensors": len(own) - len(take),
                                        "dropped_tensors": len(set(src) - set(take))}
        return new

    @property
    def model(self) -> CGCModel:
        """The (pre-trained or random) base model, as loaded."""
        self._ensure_loaded()
        assert self._model is not None
        return self._model

    @property
    def priors(self) -> GenePriors:
        """The priors bundle of the model."""
        self._ensure_loaded()
        assert self._priors is not None
        return self._priors

    def _fresh(self) -> CGCModel:
        """A copy of the base model (every fit starts from the same weights)."""
        m = copy.deepcopy(self.model)
        assert self._base_state is not None
        m.load_state_dict(self._base_state)
        torch.manual_seed(self.seed)
        return m.to(self.device)

    def save_checkpoint(self, path: str | os.PathLike[str], fine_tuned: bool = True) -> Path:
        """Save the cell-embedding model (fine-tuned when ``fit`` ran) as a CGC checkpoint."""
        model = self._cell_model if (fine_tuned and self._cell_model is not None) else self.model
        return save_checkpoint(path, model, self.priors, meta={"saved_by": "baselines.cgc_model",
                                                               "adapter_params": self.params})

    def _settings(self, n_items: int, epochs: int | None = None) -> TrainSettings:
        return TrainSettings(epochs=epochs if epochs is not None else self.s["finetune_epochs"],
                             batch_size=self.s["batch_size"],
                             grad_accum=self.s["grad_accum"], lr=self.s["lr"],
                             head_lr=self.s["head_lr"], max_steps=self.s["max_steps"])

    def _subsample(self, n: int, salt: int) -> np.ndarray:
        if n <= self.s["max_cells"]:
            return np.arange(n)
        rng = np.random.default_rng([self.seed, salt])
        return np.sort(rng.choice(n, self.s["max_cells"], replace=False))

    def _cells(self, adata: ad.AnnData, fit_panel: bool = False) -> CellMatrix:
        """Map ``adata`` to the vocabulary; with a panel model, on the fitted gene panel.

        ``fit_panel`` chooses the panel (the ``max_genes`` most variable genes) from these
        cells and keeps it for later calls (query cells use the reference's panel).
        """
        cfg = self.model.config
        if cfg.input_genes != "panel":
            cm = map_matrix(self.priors, adata.X, _symbols(adata))
        elif fit_panel or self._panel_ids is None:
            cm = map_matrix(self.priors, adata.X, _symbols(adata), panel_size=cfg.max_genes)
            self._panel_ids = cm.gene_ids
        else:
            cm = map_matrix(self.priors, adata.X, _symbols(adata), panel_ids=self._panel_ids)
        rep = cm.report
        self._metrics["gene_coverage"] = float(rep.n_mapped / max(rep.n_input, 1))
        self._metrics["n_genes_in_vocab"] = float(len(cm.gene_ids))
        if len(cm.gene_ids) == 0:
            raise InputError(
                f"cgc: none of the {adata.n_vars} genes (e.g. {', '.join(map(str, adata.var_names[:5]))}) "
                "is in the CGC vocabulary; CGC needs human gene symbols (var_names or var['gene_symbol'])"
            )
        return cm

    def training_curves(self) -> dict[str, list[tuple[int, float]]]:
        """Pre-training loss per step (default checkpoint), fine-tuning loss per step and per epoch."""
        return dict(self._curves)

    def _record(self, prefix: str, tl: TrainLog) -> None:
        self._curves[f"{prefix}_loss"] = [(i, float(v)) for i, v in enumerate(tl.losses, 1)]
        if tl.val_losses:
            self._curves[f"{prefix}_val_loss"] = [(i, float(v)) for i, v in enumerate(tl.val_losses, 1)]
        self._metrics[f"{prefix}_steps"] = float(tl.steps)
        if tl.losses:
            self._metrics[f"{prefix}_first_loss"] = float(np.mean(tl.losses[:5]))
            self._metrics[f"{prefix}_final_loss"] = tl.final
        self._metrics[f"{prefix}_epochs"] = float(tl.epochs_run)
        if tl.best_epoch is not None:
            self._metrics[f"{prefix}_best_epoch"] = float(tl.best_epoch)
            self._metrics[f"{prefix}_best_val_loss"] = float(min(tl.val_losses))
        self._metrics[f"{prefix}_stopped_early"] = float(tl.stopped_early)
        self._metrics[f"{prefix}_hit_max_steps"] = float(tl.hit_max_steps)
        if tl.hit_max_steps:
            self._say(f"cgc: {prefix} fine-tuning hit the safety cap max_steps={self.s['max_steps']} "
                      f"after {tl.epochs_run} epoch(s)")

    # ------------------------------------------------------------------------------ gene embeddings
    def embed_genes(self, genes: Sequence[str], id_type: str = "symbol") -> pd.DataFrame:
        """Zero-shot gene embeddings (``gene_readout``) of the genes in the vocabulary (index = ids as given).

        Read from the weights as loaded (pre-trained), never from a fine-tuned copy. With the
        official weights: the gene encoder's output ``LayerNorm(emb(token))``.
        """
        runner = self.official()
        if runner is not None:
            return runner.embed_genes(genes, id_type)
        priors = self.priors
        if id_type not in ("symbol", "ensembl"):
            raise InputError(f"cgc.embed_genes: id_type={id_type!r}; use 'symbol' or 'ensembl'")
        ids, _ = priors.map_genes([str(g) for g in genes], id_type)
        keep = ids >= len(SPECIAL_TOKENS)
        index = pd.Index([str(g) for g, k in zip(genes, keep, strict=True) if k], name="gene")
        model = self.model  # the weights as loaded: fits train copies (_fresh), never this one
        out = pd.DataFrame(model.gene_features(ids[keep], self.s["gene_readout"]), index=index)
        out = out[~out.index.duplicated()]
        self._metrics["gene_coverage"] = float(keep.mean()) if len(keep) else 0.0
        return out

    def fit_genes(self, adata: ad.AnnData) -> None:
        """Remember the task's expression matrix: the pre-training fallback when no corpus can be had.

        Zero-shot otherwise (the gene embeddings are read from the pre-trained weights).
        """
        self._remember_fit_cells(adata, "cells of the task's expression matrix")

    def _remember_fit_cells(self, adata: ad.AnnData, what: str) -> None:
        """Keep the first cells a fit is given, before the model loads.

        The default pre-training uses them when no corpus data set can be had
        (:func:`~baselines.cgc_pretraining.default_checkpoint`); no other cells ever are.
        """
        if self._model is None and self._fit_cells is None:
            self._fit_cells = (adata, what)

    # ------------------------------------------------------------------------------ cell embeddings
    def fit(self, adata: ad.AnnData, batch_key: str | None = None) -> None:
        """Fine-tune on ``adata`` (masked losses + domain adaptation + ECS, SPEC §5.3).

        With the official weights: nothing (zero-shot embeddings, as the release is used).
        """
        if self.official() is not None:
            self.params["official_mode"] = "zero-shot (no fine-tuning)"
            return
        self._remember_fit_cells(adata, "cells the suite passed to fit")
        cm = self._cells(adata, fit_panel=True)
        rows = self._subsample(cm.n_cells, 1)
        sub = cm.subset(rows)
        batches = None
        if batch_key is not None:
            if batch_key not in adata.obs:
                raise InputError(f"cgc.fit: batch_key={batch_key!r} is not a column of obs")
            codes = pd.Categorical(adata.obs[batch_key].astype(str)).codes
            batches = np.asarray(codes, dtype=np.int64)[rows]
        model = self._fresh()
        tl = finetune_masked(model, sub, batches, self._settings(len(rows)), seed=self.seed,
                             dar_weight=self.s["dar_weight"], ecs_weight=self.s["ecs_weight"],
                             ecs_threshold=self.s["ecs_threshold"], batch_targets=self.s["batch_targets"],
                             batch_conditioned=self.s["batch_conditioned"])
        self._record("finetune", tl)
        self._cell_model = model

    def embed_cells(self, adata: ad.AnnData) -> np.ndarray:
        """Cell embeddings ``h_c`` (of the fine-tuned model when ``fit``/``fit_classifier`` ran)."""
        runner = self.official()
        if runner is not None:
            if self._official_cls is not None:  # the fine-tuned model, on the reference's genes
                c = self._official_cls
                return runner.embed_cells(adata, model=c["model"], reference=c["cells"])
            return runner.embed_cells(adata)
        model = self._cell_model or self.model
        cm = self._cells(adata)
        return cell_outputs(model, embedding_graphs(model, cm, self.seed))

    # ------------------------------------------------------------------------------ annotation
    def fit_classifier(self, reference: ad.AnnData, label_key: str) -> None:
        """Fine-tune the encoder with a 3-layer MLP on ``h_c`` (cross-entropy, SPEC §5.4).

        With the official weights: the official annotation recipe (module docstring).
        """
        if label_key not in reference.obs:
            raise InputError(f"cgc.fit_classifier: label_key={label_key!r} is not a column of obs")
        if self.official() is not None:
            self._fit_official_classifier(reference, label_key)
            return
        self._remember_fit_cells(reference, "reference cells (the annotation training split)")
        cm = self._cells(reference, fit_panel=True)
        rows = self._subsample(cm.n_cells, 2)
        labels = reference.obs[label_key].astype(str).to_numpy()[rows]
        classes, y = np.unique(labels, return_inverse=True)
        model = self._fresh()
        head = CellClassifierHead(model.config.d_model, len(classes)).to(self.device)
        sub = cm.subset(rows)
        graphs = embedding_graphs(model, sub, self.seed)
        tl = train_classifier(model, head, graphs, y, self._settings(len(rows), self.s["classifier_epochs"]),
                              seed=self.seed)
        self._record("classifier", tl)
        self._classifier = (model, head, list(classes))
        self._cell_model = model

    def _fit_official_classifier(self, reference: ad.AnnData, label_key: str) -> None:
        runner = self.official()
        rows = self._subsample(reference.n_obs, 2)
        labels = reference.obs[label_key].astype(str).to_numpy()[rows]
        classes, y = np.unique(labels, return_inverse=True)
        settings = TrainSettings(epochs=self.s["classifier_epochs"], batch_size=self.s["official_batch_size"],
                                 grad_accum=1, lr=self.s["lr"], head_lr=None, max_steps=self.s["max_steps"],
                                 warmup_steps=self.s["official_warmup_steps"], decay="exponential",
                                 decay_ratio=0.995, decay_steps=100, grad_clip=1.0)
        model, head, tl, cells = runner.fit_classifier(reference[rows], y, settings,
                                                        self.s["official_mask_ratio"])
        self._record("classifier", tl)
        self._metrics["n_genes_in_vocab"] = float(len(cells.ids))
        self._official_cls = {"model": model, "head": head, "classes": list(classes), "cells": cells}
        self.params["official_mode"] = "fine-tuned (annotation, official recipe)"
        self.params["official_finetune"] = {
            "recipe": "exps/cellAnno.sh: ClsDecoder(3 layers) on <cls>, 40 x cross-entropy, "
                      "Adam(0.9, 0.999), clip 1.0, dropout 0.2, every parameter trained, "
                      "batch norm in training mode",
            "lr": self.s["lr"], "batch_size": self.s["official_batch_size"],
            "warmup_steps": self.s["official_warmup_steps"], "decay": "x0.995 every 100 updates",
            "mask_ratio": self.s["official_mask_ratio"], "epochs": self.s["classifier_epochs"],
            "max_steps": self.s["max_steps"], "n_train_cells": int(len(rows)),
            "n_genes": int(len(cells.ids)),
            "deviations": "genes (1,200 HVG) and co-expression edges from the reference cells only "
                          "(official: from all cells before the train/test split); no weight EMA "
                          "(official --ema-decay 0.999); best epoch by validation cross-entropy on a "
                          "seeded 10% slice of the reference (official: best checkpoint on its valid split)",
        }

    def predict_labels(self, query: ad.AnnData) -> np.ndarray:
        """Most probable reference label of every query cell."""
        if self._official_cls is not None:
            c = self._official_cls
            logits = self.official().predict_logits(query, c["model"], c["head"], c["cells"])
            self._metrics["n_query_genes_missing"] = float(self.official().last_missing)
            return np.asarray(c["classes"], dtype=object)[logits.argmax(1)]
        if self._classifier is None:
            raise RuntimeError("CGCAdapter.predict_labels called before fit_classifier")
        model, head, classes = self._classifier
        cm = self._cells(query)
        logits = cell_outputs(model, embedding_graphs(model, cm, self.seed), fn=head)
        return np.asarray(classes, dtype=object)[logits.argmax(1)]

    # ------------------------------------------------------------------------------ per-gene panels
    def _panel(self, adata: ad.AnnData, X: np.ndarray) -> dict[str, Any]:
        """Vocabulary ids of the data's genes and the panel (mapped genes, capped by mean value)."""
        symbols = _symbols(adata)
        ids, rep = self.priors.map_genes([s or "" for s in symbols], "symbol")
        cols = first_mapped_columns(ids)
        if len(cols) == 0:
            raise InputError(
                f"cgc: none of the {adata.n_vars} genes is in the CGC vocabulary; CGC needs human "
                "gene symbols (var_names or var['gene_symbol'])"
            )
        pick = choose_panel(ids[cols], X[:, cols].mean(0), self.model.config.max_genes)
        cols = cols[pick]
        self._metrics["gene_coverage"] = float(rep.n_mapped / max(rep.n_input, 1))
        self._metrics["n_panel_genes"] = float(len(cols))
        return {"var_names": list(map(str, adata.var_names)), "cols": cols, "ids": ids[cols]}

    def _gene_id(self, symbol: str) -> int:
        i = self.priors.vocab.id_of(symbol)
        return i if i >= len(SPECIAL_TOKENS) else -1

    # ------------------------------------------------------------------------------ perturbation
    def fit_perturbation(self, train: ad.AnnData, condition_key: str = "condition") -> None:
        """Fine-tune the encoder and a per-gene decoder on (control cell → perturbed cell) pairs."""
        self._official_only("perturbation fine-tuning")
        from baselines.perturbation_controls import condition_genes

        if condition_key not in train.obs:
            raise InputError(f"cgc.fit_perturbation: condition_key={condition_key!r} is not a column of obs")
        self._remember_fit_cells(train, "perturbation training cells")
        X = _dense(train.X)
        cond = train.obs[condition_key].astype(str).to_numpy()
        is_ctrl = cond == CTRL
        if not is_ctrl.any() or is_ctrl.all():
            raise InputError(f"cgc.fit_perturbation: obs[{condition_key!r}] needs both {CTRL!r} and "
                             "perturbed cells")
        panel = self._panel(train, X)
        ctrl = X[is_ctrl]
        pert_rows = np.flatnonzero(~is_ctrl)
        pert_rows = pert_rows[self._subsample(len(pert_rows), 3)]
        unknown: set[str] = set()

        def pert_ids(c: str) -> list[int]:
            out = []
            for g in condition_genes(c):
                i = self._gene_id(g)
                if i < 0:
                    unknown.add(g)
                else:
                    out.append(i)
            return out

        targets = [pert_ids(c) for c in cond[pert_rows]]
        model = self._fresh()
        builder = CellGraphBuilder(model.priors, model.config)
        decoder = GeneDecoder(model.config.d_model, 1).to(self.device)
        cols = panel["cols"]

        def make(i: int, rng: np.random.Generator) -> Any:
            c = ctrl[rng.integers(len(ctrl))]
            return panel_graph(builder, model.config, panel["ids"], c[cols], targets[i],
                               target=X[pert_rows[i], cols], seed=rng)

        tl = train_decoder(model, decoder, len(pert_rows), make, perturbation_loss,
                           self._settings(len(pert_rows)), seed=self.seed)
        self._record("perturbation", tl)
        shift = X[~is_ctrl].mean(0) - ctrl.mean(0)
        self._metrics["n_condition_genes_not_in_vocab"] = float(len(unknown))
        self._pert = {"model": model, "decoder": decoder, "builder": builder, "panel": panel,
                      "shift": shift, "pert_ids": pert_ids}

    def predict_perturbation(self, control: ad.AnnData, conditions: Sequence[str]) -> pd.DataFrame:
        """Mean predicted expression per condition over (up to ``n_control_cells``) control cells."""
        if self._pert is None:
            raise RuntimeError("CGCAdapter.predict_perturbation called before fit_perturbation")
        p = self._pert
        panel = p["panel"]
        names = list(map(str, control.var_names))
        if names != panel["var_names"]:
            control = control[:, panel["var_names"]]
        X = _dense(control.X)
        rng = np.random.default_rng([self.seed, 4])
        n = min(len(X), self.s["n_control_cells"])
        rows = np.sort(rng.choice(len(X), n, replace=False))
        cols = panel["cols"]
        base = X.mean(0) + p["shift"]  # genes outside the panel: control mean + mean shift
        out = np.tile(base, (len(conditions), 1))
        model, decoder = p["model"], p["decoder"]
        for k, c in enumerate(conditions):
            ids = p["pert_ids"](c)
            graphs = [panel_graph(p["builder"], model.config, panel["ids"], X[r, cols], ids,
                                  seed=np.random.default_rng([self.seed, k, int(r)])) for r in rows]
            preds = decode(model, decoder, graphs)
            out[k, cols] = np.mean([pr[: len(cols), 0] for pr in preds], axis=0)
        return pd.DataFrame(out, index=list(conditions), columns=control.var_names)

    # ------------------------------------------------------------------------------ bulk knockout
    def _knockout_loss(self, train: ad.AnnData) -> KnockoutLoss:
        threshold = self.s["change_threshold"]
        if threshold is None:  # two-fold on the data's declared log scale (the suite's definition)
            from benchmarks.suites.bulk_knockout import two_fold_threshold

            threshold = two_fold_threshold(float(train.uns.get("log_base", np.e)))
        self._metrics["knockout_change_threshold"] = threshold
        return KnockoutLoss(head=self.s["knockout_head"], threshold=threshold,
                            alpha_2=self.s["knockout_alpha"], focal_weight=self.s["focal_weight"],
                            focal_alpha=self.s["focal_alpha"], focal_gamma=self.s["focal_gamma"],
                            neg_ratio=self.s["neg_ratio"])

    def fit_knockout(self, train: ad.AnnData, ko_key: str = "ko_gene") -> None:
        """Fine-tune the encoder and the knockout decoder on (before, after) pairs."""
        self._official_only("knockout fine-tuning")
        obs = train.obs
        for col in ("pair_id", "state", ko_key):
            if col not in obs:
                raise InputError(f"cgc.fit_knockout: obs has no {col!r} column; expected pair_id, state "
                                 f"(before/after) and {ko_key}")
        self._remember_fit_cells(train, "knockout training profiles")
        X = _dense(train.X)
        state = obs["state"].astype(str).to_numpy()
        before_pos = {p: i for i, p in enumerate(obs["pair_id"]) if state[i] == "before"}
        after_pos = {p: i for i, p in enumerate(obs["pair_id"]) if state[i] == "after"}
        pairs = sorted(before_pos.keys() & after_pos.keys())
        if not pairs:
            raise InputError("cgc.fit_knockout: no pair_id has both a 'before' and an 'after' profile")
        b_idx = np.array([before_pos[p] for p in pairs])
        a_idx = np.array([after_pos[p] for p in pairs])
        before, after = X[b_idx], X[a_idx]
        ko = [self._gene_id(str(g)) for g in obs[ko_key].astype(str).to_numpy()[a_idx]]
        panel = self._panel(train, before)
        cols = panel["cols"]
        model = self._fresh()
        builder = CellGraphBuilder(model.priors, model.config)
        lossf = self._knockout_loss(train)
        decoder = GeneDecoder(model.config.d_model, lossf.n_out).to(self.device)

        def make(i: int, rng: np.random.Generator) -> Any:
            ids = [ko[i]] if ko[i] >= 0 else []
            return panel_graph(builder, model.config, panel["ids"], before[i, cols], ids,
                               target=after[i, cols], seed=rng)

        settings = self._settings(len(pairs))
        settings.epochs = max(settings.epochs, 10)  # few pairs: more passes, still capped by max_steps
        tl = train_decoder(model, decoder, len(pairs), make, lossf, settings, seed=self.seed)
        self._record("knockout", tl)
        self._metrics["n_ko_genes_not_in_vocab"] = float(sum(k < 0 for k in ko))
        self._ko = {"model": model, "decoder": decoder, "builder": builder, "panel": panel,
                    "shift": (after - before).mean(0), "loss": lossf}

    def predict_knockout(self, before: ad.AnnData, ko_genes: Sequence[str]) -> np.ndarray:
        """Predicted profile after knocking out ``ko_genes[i]`` in profile ``i``."""
        if self._ko is None:
            raise RuntimeError("CGCAdapter.predict_knockout called before fit_knockout")
        k = self._ko
        panel = k["panel"]
        if list(map(str, before.var_names)) != panel["var_names"]:
            before = before[:, panel["var_names"]]
        X = _dense(before.X)
        cols = panel["cols"]
        out = X + k["shift"]  # genes outside the panel: before + mean training change
        graphs = []
        for i, g in enumerate(ko_genes):
            gid = self._gene_id(str(g))
            graphs.append(panel_graph(k["builder"], k["model"].config, panel["ids"], X[i, cols],
                                      [gid] if gid >= 0 else [],
                                      seed=np.random.default_rng([self.seed, 5, i])))
        for i, pr in enumerate(decode(k["model"], k["decoder"], graphs)):
            out[i, cols] = k["loss"].combine(pr[: len(cols)], X[i, cols])
        return out.astype(np.float64)
