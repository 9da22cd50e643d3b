"""``cgc``: the cgcbench adapter of Cell-Graph Compass (the one bridge between ``cgc`` and the harness).

* **weights** — ``checkpoint=`` / ``$CGC_CHECKPOINT`` (a checkpoint or run directory written by
  ``cgcbench pretrain``); ``init="pretrained"``. Otherwise a small CGC is pre-trained here on the
  local corpus (the ``pbmc3k_raw`` card plus the SERGIO cells of ``sergio_batches``), lazily on
  first use, and cached under ``$CGCBENCH_DATA_DIR/cgc_checkpoints/<hash>/`` where the hash
  covers the corpus files' sha256, the model config, steps, seed, corpus size, text model and
  the cgc version; the build is atomic (temporary directory + rename) and guarded by a file
  lock so that concurrent runs build it once. ``init="scratch"`` then (trained here).
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
* **perturbation** — special token 1 marks the perturbed genes of a control cell's graph (a
  panel of the data's genes, zeros included); a shared per-gene MLP decoder predicts each
  gene's post-perturbation value, MSE loss (eq. 14); predictions average over control cells.
* **bulk knockout** — the same decoder on the pre-knockout profile with the knocked-out gene
  marked; ``knockout_head="regression"`` (MSE) or ``"two_step"`` (MSE + focal loss with
  weight 1, alpha 0.5 and negative sampling for "changed?" + alpha·cross-entropy for "up or
  down?"). "Changed" means ``|after − before| > change_threshold`` on the data's log scale
  (default ``log 2``: two-fold for natural-log data).

Genes are matched by symbol (``var["gene_symbol"]`` when the loader provides it); genes
outside the vocabulary are left out of the graphs and reported by :meth:`extra_metrics`.
"""

from __future__ import annotations

import contextlib
import copy
import fcntl
import hashlib
import json
import logging
import math
import os
import shutil
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch

from benchmarks.errors import InputError
from benchmarks.interface import (
    AnnotationMixin,
    BulkKnockoutMixin,
    Capabilities,
    CellEmbeddingMixin,
    GeneEmbeddingMixin,
    Init,
    ModelAdapter,
    PerturbationMixin,
    TaskKind,
)
from cgc.config import EDGE_TYPES, NODE_FEATURES, CGCConfig, RunConfig, TrainConfig, load_config
from cgc.finetune import (
    CellClassifierHead,
    CellMatrix,
    GeneDecoder,
    KnockoutLoss,
    TrainLog,
    TrainSettings,
    cell_outputs,
    choose_panel,
    decode,
    embedding_graphs,
    finetune_masked,
    map_matrix,
    panel_graph,
    perturbation_loss,
    train_classifier,
    train_decoder,
)
from cgc.graph import CellGraphBuilder
from cgc.model import CGCModel
from cgc.preprocess import first_mapped_columns
from cgc.priors.bundle import GenePriors
from cgc.priors.vocab import SPECIAL_TOKENS
from cgc.train.checkpoint import MANIFEST, load_checkpoint, resolve_checkpoint, save_checkpoint

log = logging.getLogger(__name__)

CHECKPOINT_ENV = "CGC_CHECKPOINT"
CACHE_VERSION = 1
"""Bumped when the default pre-training recipe changes (part of the cache key)."""
CORPUS_CARDS: tuple[str, ...] = ("pbmc3k_raw", "sergio_batches")
PRIOR_CARDS: dict[str, tuple[str, str | None]] = {
    "vocab_path": ("cgc_vocab", None),
    "trrust_path": ("trrust_human", None),
    "positions_path": ("gene_positions_hg38", None),
    "gene_info_path": ("gene_info_hs", None),
    "gene2go_path": ("gene2go_hs", None),
    "go_terms_path": ("go_terms", None),
}
"""Prior-knowledge files of the default bundle: ``GenePriors.build`` argument → (card, file)."""

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


def cache_root() -> Path:
    """Folder of the cached default checkpoints: ``$CGCBENCH_DATA_DIR/cgc_checkpoints``."""
    from benchmarks.data.fetch import data_dir

    return data_dir() / "cgc_checkpoints"


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` (created) for the duration of the block."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def checkpoint_digest(path: str | os.PathLike[str]) -> str:
    """sha256 of a checkpoint's ``MANIFEST.sha256`` (which lists the sha256 of every file)."""
    root = resolve_checkpoint(path)
    return hashlib.sha256((root / MANIFEST).read_bytes()).hexdigest()


def _hash(payload: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:20]


# ------------------------------------------------------------------------------- default corpus
def _card_sha(card_name: str) -> list[str]:
    from benchmarks.data.cards import get_card

    card = get_card(card_name)
    out = [str(f.sha256) for f in card.files]
    sim = card.extra.get("simulation") if hasattr(card, "extra") else None
    if sim:
        out.append(_hash(sim))
    return out


def _text_encoder(spec: str) -> Any:
    from cgc.priors.text import HashingTextEncoder

    if spec == "minilm":
        return "default"
    if spec.startswith("hashing"):
        _, _, dim = spec.partition(":")
        return HashingTextEncoder(int(dim or 64))
    if spec == "none":
        return None
    raise InputError(f"cgc: text_encoder={spec!r}; use 'minilm', 'hashing[:DIM]' or 'none'")


def _corpus(n_cells: int | None, seed: int) -> tuple[list[ad.AnnData], list[str]]:
    """Corpus AnnData objects (raw counts, genes detected in >= 3 cells) and the HVG-ish text genes."""
    import scanpy as sc

    from benchmarks.data.load import load_dataset

    adatas, text_genes = [], []
    rng = np.random.default_rng(seed)
    for name in CORPUS_CARDS:
        _, a = load_dataset(name)
        a = ad.AnnData(sp.csr_matrix(a.X, dtype=np.float32), obs=pd.DataFrame(index=a.obs_names),
                       var=pd.DataFrame(index=a.var_names.astype(str)))
        a.var_names_make_unique()
        if n_cells is not None and a.n_obs > n_cells:
            a = a[np.sort(rng.choice(a.n_obs, n_cells, replace=False))].copy()
        sc.pp.filter_genes(a, min_cells=3)
        norm = a.copy()
        sc.pp.normalize_total(norm, target_sum=1e4)
        sc.pp.log1p(norm)
        n_top = min(1500, norm.n_vars)
        if norm.n_vars > n_top:
            sc.pp.highly_variable_genes(norm, n_top_genes=n_top)
            text_genes += list(norm.var_names[norm.var["highly_variable"].to_numpy()])
        else:
            text_genes += list(norm.var_names)
        adatas.append(a)
    return adatas, list(dict.fromkeys(text_genes))


def default_priors(n_cells: int | None, seed: int, text_encoder: str,
                   say: Any = log.info) -> GenePriors:
    """Build (or load from the cache) the priors bundle of the default pre-training corpus."""
    from baselines.gene_ids import resource_path

    files = {k: resource_path(card, f) for k, (card, f) in PRIOR_CARDS.items()}
    key = _hash({"kind": "priors", "v": CACHE_VERSION, "files": {k: _card_sha(c) for k, (c, _) in
                                                                 PRIOR_CARDS.items()},
                 "corpus": {c: _card_sha(c) for c in CORPUS_CARDS}, "n_cells": n_cells,
                 "seed": seed, "text": text_encoder})
    root = cache_root()
    dest = root / f"priors-{key}"
    if (dest / "priors.json").is_file():
        return GenePriors.load(dest)
    with file_lock(root / f"priors-{key}.lock"):
        if (dest / "priors.json").is_file():
            return GenePriors.load(dest)
        t0 = time.perf_counter()
        adatas, text_genes = _corpus(n_cells, seed)
        priors = GenePriors.build(corpus=adatas, text_encoder=_text_encoder(text_encoder),
                                  text_genes=text_genes, text_cache_dir=root / "text_cache",
                                  extend_vocab=False, coexpr_max_genes=3000, **files)
        priors.save(dest)  # atomic (temporary directory + rename)
        say(f"cgc: built priors {priors} in {time.perf_counter() - t0:.0f}s")
    return GenePriors.load(dest)


def default_checkpoint(config: CGCConfig, *, steps: int, seed: int = 0, n_cells: int | None = None,
                       text_encoder: str = "minilm", batch_size: int = 8, lr: float = 1e-3,
                       say: Any = log.info) -> Path:
    """Return the cached default checkpoint for ``config``, pre-training it on first use.

    Parameters
    ----------
    config
        Model configuration (ablations included).
    steps
        Optimiser steps of masked pre-training.
    seed
        Seed of corpus subsampling, initialisation, masking and data order.
    n_cells
        At most this many cells per corpus data set (``None``: all).
    text_encoder
        ``"minilm"`` (offline all-MiniLM-L6-v2), ``"hashing[:DIM]"`` or ``"none"``.
    batch_size, lr
        Pre-training batch size and peak learning rate.
    say
        Log function.

    Returns
    -------
    pathlib.Path
        ``<cache>/<hash>/``, holding ``checkpoint/`` and ``pretrain.json``.

    """
    import cgc

    if "text" in config.node_features and text_encoder == "none":
        config = config.replace(node_features=_without(config.node_features, "text"))
    train = TrainConfig.small(max_steps=steps, batch_size=batch_size, grad_accum=1, lr=lr,
                              warmup_steps=max(1, steps // 10), decay_every=max(1, steps // 3),
                              eval_every=max(1, steps // 2), checkpoint_every=steps, val_batches=4,
                              amp=False)
    payload = {"kind": "checkpoint", "v": CACHE_VERSION, "cgc": cgc.__version__,
               "corpus": {c: _card_sha(c) for c in CORPUS_CARDS}, "config": config.to_dict(),
               "train": train.to_dict(), "seed": seed, "n_cells": n_cells, "text": text_encoder}
    key = _hash(payload)
    root = cache_root()
    dest = root / key
    if (dest / "checkpoint" / MANIFEST).is_file():
        return dest
    with file_lock(root / f"{key}.lock"):
        if (dest / "checkpoint" / MANIFEST).is_file():
            return dest
        priors = default_priors(n_cells, seed, text_encoder, say)
        tmp = root / f".{key}.tmp-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        try:
            adatas, _ = _corpus(n_cells, seed)
            t0 = time.perf_counter()
            from cgc.train.pretrain import pretrain

            res = pretrain(adatas, tmp / "run", RunConfig(config, train), seed=seed, priors=priors,
                           corpus_kwargs={"min_genes": 20, "val_fraction": 0.03, "shard_size": 50_000},
                           device="cpu", progress=False, log=None)
            wall = time.perf_counter() - t0
            if res.checkpoint is None:
                raise RuntimeError("cgc: default pre-training wrote no checkpoint")
            manifest = json.loads((tmp / "run" / "corpus" / "corpus.json").read_text())
            os.replace(res.checkpoint, tmp / "checkpoint")
            losses = [h["loss"] for h in res.history]
            info = {
                **payload,
                "n_train_cells": manifest.get("n_train"),
                "n_val_cells": manifest.get("n_val"),
                "steps": res.step,
                "wall_time_s": round(wall, 1),
                "first_train_loss": losses[0] if losses else None,
                "final_train_loss": float(np.mean(losses[-10:])) if losses else None,
                "val_losses": res.val_losses,
                "final_val_loss": res.val_losses[-1] if res.val_losses else None,
                "priors_hash": priors.content_hash,
            }
            (tmp / "pretrain.json").write_text(json.dumps(info, indent=2, default=str))
            shutil.rmtree(tmp / "run")
            os.replace(tmp, dest)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        say(f"cgc: pre-trained default checkpoint {dest} ({info['steps']} steps, "
            f"{info['wall_time_s']}s, val loss {info['final_val_loss']})")
    return dest


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
        pre-trained on the local corpus and cached (see the module docstring).
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
    pretrain_steps, pretrain_cells, pretrain_seed, text_encoder
        Default pre-training: optimiser steps (300; *quick* 30), cells per corpus data set
        (all, also for ``0``; *quick* 600), seed and text model (``"minilm"``; *quick*
        ``"hashing:64"``). ``pretrain_seed`` is an integer (default 0: every benchmark seed
        fine-tunes the same checkpoint, so seeds vary the fine-tuning only) or ``"run"``: each
        benchmark seed pre-trains its own checkpoint with that seed. Zero-shot suites
        (gene classification, GRN) use the pre-trained weights as they are, so only ``"run"``
        gives their seeds — and ablation intervals — a real spread.
    finetune_epochs, classifier_epochs, max_steps, max_cells
        Epochs of masked, perturbation and knockout fine-tuning (SPEC 30, scaled for CPU: 3;
        *quick* 1) and of annotation fine-tuning (SPEC 30; *quick* 3), a cap on optimiser
        steps per fit (400; *quick* 12) and on training cells (2,000; *quick* 300).
    batch_size, grad_accum, lr, head_lr
        Fine-tuning micro-batch (SPEC 8), accumulation (SPEC 2) and Adam learning rates of the
        pre-trained encoder (SPEC's peak 1e-4) and of the randomly initialised task heads
        (1e-3; ``None``: ``lr``). A larger encoder rate erases what pre-training learned in the
        first steps (PBMC annotation fell to 0.23 accuracy at 1e-3).
    dar_weight, ecs_weight, ecs_threshold
        Cell-embedding fine-tuning: domain-adaptation and elastic-cell-similarity weights and
        threshold (0.8).
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
        n_control_cells: int | None = None,
        knockout_head: str = "two_step",
        knockout_alpha: float = 1.0,
        focal_alpha: float = 0.5,
        focal_weight: float = 1.0,
        focal_gamma: float = 2.0,
        neg_ratio: float = 3.0,
        change_threshold: float = math.log(2.0),
        device: str | None = None,
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
            "pretrain_steps": int(pretrain_steps if pretrain_steps is not None else (30 if quick else 300)),
            "pretrain_cells": (int(pretrain_cells) or None) if pretrain_cells is not None
            else (600 if quick else None),
            "pretrain_seed": _pretrain_seed(pretrain_seed),
            "text_encoder": text_encoder or ("hashing:64" if quick else "minilm"),
            "finetune_epochs": int(finetune_epochs if finetune_epochs is not None else (1 if quick else 3)),
            "classifier_epochs": int(classifier_epochs if classifier_epochs is not None
                                     else (3 if quick else 30)),
            "max_steps": int(max_steps if max_steps is not None else (12 if quick else 400)),
            "max_cells": int(max_cells if max_cells is not None else (300 if quick else 2000)),
            "batch_size": int(batch_size),
            "grad_accum": int(grad_accum),
            "lr": float(lr),
            "head_lr": float(head_lr) if head_lr is not None else None,
            "dar_weight": float(dar_weight),
            "ecs_weight": float(ecs_weight),
            "ecs_threshold": float(ecs_threshold),
            "n_control_cells": int(n_control_cells if n_control_cells is not None else (16 if quick else 64)),
            "knockout_head": str(knockout_head),
            "knockout_alpha": float(knockout_alpha),
            "focal_alpha": float(focal_alpha),
            "focal_weight": float(focal_weight),
            "focal_gamma": float(focal_gamma),
            "neg_ratio": float(neg_ratio),
            "change_threshold": float(change_threshold),
            "device": device,
        }
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

    # ------------------------------------------------------------------------------ provenance
    @property
    def init(self) -> Init:
        """``pretrained`` for a user checkpoint, else ``scratch`` (pre-trained here or random)."""
        self._ensure_loaded()
        return "pretrained" if self._user_checkpoint and self.s["pretrained"] else "scratch"

    @property
    def checkpoint_sha256(self) -> str | None:
        """sha256 of the loaded checkpoint's manifest; ``None`` for random weights."""
        self._ensure_loaded()
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
            dest = default_checkpoint(cfg, steps=self.s["pretrain_steps"], seed=pseed,
                                      n_cells=self.s["pretrain_cells"], text_encoder=self.s["text_encoder"])
            model, priors, meta = load_checkpoint(dest / "checkpoint", map_location="cpu")
            self.params["checkpoint_source"] = "built by cgcbench (cached default pre-training)"
            self.params["checkpoint_path"] = str(dest / "checkpoint")
            info = json.loads((dest / "pretrain.json").read_text())
            self.params["pretraining"] = {k: info.get(k) for k in (
                "corpus", "n_train_cells", "n_val_cells", "steps", "wall_time_s", "final_train_loss",
                "final_val_loss", "seed", "n_cells", "text", "train")}
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
        return save_checkpoint(path, model, self.priors, meta={"saved_by": "cgc.adapter",
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

    def _cells(self, adata: ad.AnnData) -> CellMatrix:
        cm = map_matrix(self.priors, adata.X, _symbols(adata))
        rep = cm.report
        self._metrics["gene_coverage"] = float(rep.n_mapped / max(rep.n_input, 1))
        self._metrics["n_genes_in_vocab"] = float(len(cm.gene_ids))
        if len(cm.gene_ids) == 0:
            raise InputError(
                f"cgc: none of the {adata.n_vars} genes (e.g. {', '.join(map(str, adata.var_names[:5]))}) "
                "is in the CGC vocabulary; CGC needs human gene symbols (var_names or var['gene_symbol'])"
            )
        return cm

    def _record(self, prefix: str, tl: TrainLog) -> None:
        self._metrics[f"{prefix}_steps"] = float(tl.steps)
        if tl.losses:
            self._metrics[f"{prefix}_first_loss"] = float(np.mean(tl.losses[:5]))
            self._metrics[f"{prefix}_final_loss"] = tl.final

    # ------------------------------------------------------------------------------ gene embeddings
    def embed_genes(self, genes: Sequence[str], id_type: str = "symbol") -> pd.DataFrame:
        """Rows of the pre-trained ``emb_g`` for the genes in the vocabulary (index = ids as given)."""
        priors = self.priors
        if id_type not in ("symbol", "ensembl"):
            raise InputError(f"cgc.embed_genes: id_type={id_type!r}; use 'symbol' or 'ensembl'")
        ids, _ = priors.map_genes([str(g) for g in genes], id_type)
        assert self._base_state is not None
        table = self._base_state["node_encoder.emb_g.weight"].float().cpu().numpy()
        keep = ids >= len(SPECIAL_TOKENS)
        index = pd.Index([str(g) for g, k in zip(genes, keep, strict=True) if k], name="gene")
        out = pd.DataFrame(table[ids[keep]], index=index)
        out = out[~out.index.duplicated()]
        self._metrics["gene_coverage"] = float(keep.mean()) if len(keep) else 0.0
        return out

    # ------------------------------------------------------------------------------ cell embeddings
    def fit(self, adata: ad.AnnData, batch_key: str | None = None) -> None:
        """Fine-tune on ``adata`` (masked losses + domain adaptation + ECS, SPEC §5.3)."""
        cm = self._cells(adata)
        rows = self._subsample(cm.n_cells, 1)
        sub = CellMatrix(cm.x[rows], cm.gene_ids, cm.columns, cm.report)
        batches = None
        if batch_key is not None:
            if batch_key not in adata.obs:
                raise InputError(f"cgc.fit: batch_key={batch_key!r} is not a column of obs")
            codes = pd.Categorical(adata.obs[batch_key].astype(str)).codes
            batches = np.asarray(codes, dtype=np.int64)[rows]
        model = self._fresh()
        tl = finetune_masked(model, sub, batches, self._settings(len(rows)), seed=self.seed,
                             dar_weight=self.s["dar_weight"], ecs_weight=self.s["ecs_weight"],
                             ecs_threshold=self.s["ecs_threshold"])
        self._record("finetune", tl)
        self._cell_model = model

    def embed_cells(self, adata: ad.AnnData) -> np.ndarray:
        """Cell embeddings ``h_c`` (of the fine-tuned model when ``fit``/``fit_classifier`` ran)."""
        model = self._cell_model or self.model
        cm = self._cells(adata)
        return cell_outputs(model, embedding_graphs(model, cm, self.seed))

    # ------------------------------------------------------------------------------ annotation
    def fit_classifier(self, reference: ad.AnnData, label_key: str) -> None:
        """Fine-tune the encoder with a 3-layer MLP on ``h_c`` (cross-entropy, SPEC §5.4)."""
        if label_key not in reference.obs:
            raise InputError(f"cgc.fit_classifier: label_key={label_key!r} is not a column of obs")
        cm = self._cells(reference)
        rows = self._subsample(cm.n_cells, 2)
        labels = reference.obs[label_key].astype(str).to_numpy()[rows]
        classes, y = np.unique(labels, return_inverse=True)
        model = self._fresh()
        head = CellClassifierHead(model.config.d_model, len(classes)).to(self.device)
        sub = CellMatrix(cm.x[rows], cm.gene_ids, cm.columns, cm.report)
        graphs = embedding_graphs(model, sub, self.seed)
        tl = train_classifier(model, head, graphs, y, self._settings(len(rows), self.s["classifier_epochs"]),
                              seed=self.seed)
        self._record("classifier", tl)
        self._classifier = (model, head, list(classes))
        self._cell_model = model

    def predict_labels(self, query: ad.AnnData) -> np.ndarray:
        """Most probable reference label of every query cell."""
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
        from baselines.perturbation_controls import condition_genes

        if condition_key not in train.obs:
            raise InputError(f"cgc.fit_perturbation: condition_key={condition_key!r} is not a column of obs")
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
    def _knockout_loss(self) -> KnockoutLoss:
        return KnockoutLoss(head=self.s["knockout_head"], threshold=self.s["change_threshold"],
                            alpha_2=self.s["knockout_alpha"], focal_weight=self.s["focal_weight"],
                            focal_alpha=self.s["focal_alpha"], focal_gamma=self.s["focal_gamma"],
                            neg_ratio=self.s["neg_ratio"])

    def fit_knockout(self, train: ad.AnnData, ko_key: str = "ko_gene") -> None:
        """Fine-tune the encoder and the knockout decoder on (before, after) pairs."""
        obs = train.obs
        for col in ("pair_id", "state", ko_key):
            if col not in obs:
                raise InputError(f"cgc.fit_knockout: obs has no {col!r} column; expected pair_id, state "
                                 f"(before/after) and {ko_key}")
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
        lossf = self._knockout_loss()
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
