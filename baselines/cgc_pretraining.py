"""The default CGC checkpoint the harness builds when the user supplies none.

Corpus: every real human cell set with gene symbols in the dataset registry
(:data:`CORPUS_CARDS`: pbmc3k_raw, kang_pbmc_ctrl_stim, pbmc68k_reduced) plus the SERGIO
cells of ``sergio_batches`` — **minus the data set the suite evaluates on** (no
transductive leakage: the model never pre-trains on the cells it is then scored on; the
record names the corpus). Priors: the official CGC vocabulary, TRRUST, hg38 positions,
co-expression on the count-based corpus members, and a text vector for *every* vocabulary
gene with an NCBI description (all-MiniLM-L6-v2, cached by content hash).

Checkpoints and priors are cached under ``$CGCBENCH_DATA_DIR/cgc_checkpoints/<hash>/``; the
hash covers the corpus files' sha256, the model config, the training settings, seed, corpus
size, text model and :data:`CACHE_VERSION`. Builds are atomic (temporary directory +
rename) and guarded by a file lock, so concurrent runs build each checkpoint once.

**What cannot be had is left out, and said.** A corpus card that is neither cached, mirrored
nor downloadable is left out (:func:`available_corpus`); when no real (non-simulated) set
remains, CGC pre-trains on the cells the suite gives the adapter to fit — for annotation the
reference split, never the query — and the cache key covers a digest of those cells
(:func:`cells_digest`). A prior file that cannot be had drops what it feeds
(:func:`prior_files`): TRRUST its TF→target edges, the positions their edges, the gene info
table the text node feature (its descriptions), GO the GO terms in those descriptions; only
the vocabulary is required. ``pretrain.json`` (and so every record's ``pretraining`` params)
lists each left-out card with its reason. With everything available the cache key is the
same as before.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from benchmarks.errors import InputError
from cgc.config import CGCConfig, RunConfig, TrainConfig
from cgc.priors.bundle import GenePriors
from cgc.train.checkpoint import MANIFEST, resolve_checkpoint

log = logging.getLogger(__name__)

CACHE_VERSION = 2
"""Bumped when the default pre-training recipe changes (part of the cache key)."""
CORPUS_CARDS: tuple[str, ...] = ("pbmc3k_raw", "kang_pbmc_ctrl_stim", "pbmc68k_reduced",
                                 "sergio_batches")
"""Default pre-training corpus: real human sets with symbols, then SERGIO cells."""
PRIOR_CARDS: dict[str, tuple[str, str | None]] = {
    "vocab_path": ("cgc_vocab", None),
    "trrust_path": ("trrust_human", None),
    "positions_path": ("gene_positions_hg38", None),
    "gene_info_path": ("gene_info_hs", None),
    "gene2go_path": ("gene2go_hs", None),
    "go_terms_path": ("go_terms", None),
}
"""Prior-knowledge files of the default bundle: ``GenePriors.build`` argument → (card, file)."""
Say = Callable[[str], None]
REQUIRED_PRIORS = frozenset({"vocab_path"})
"""Prior files CGC cannot run without (the vocabulary defines the gene tokens)."""
_SAID: set[str] = set()
"""Messages about unavailable data already printed in this process (each is printed once)."""


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


def _card_sha(card_name: str) -> list[str]:
    from benchmarks.data.cards import get_card

    card = get_card(card_name)
    out = [str(f.sha256) for f in card.files]
    sim = card.extra.get("simulation") if hasattr(card, "extra") else None
    if sim:
        out.append(_hash(sim))
    return out


def corpus_cards(exclude: Sequence[str] = ()) -> tuple[str, ...]:
    """The default corpus without the evaluated data sets ``exclude``."""
    return tuple(c for c in CORPUS_CARDS if c not in set(exclude))


def _say_once(say: Say, msg: str) -> None:
    if msg not in _SAID:
        _SAID.add(msg)
        say(msg)


def _first_line(exc: BaseException) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def available_corpus(cards: Sequence[str]) -> tuple[tuple[str, ...], dict[str, str]]:
    """Split corpus cards into those whose files can be had and those that cannot (→ reason).

    A card's files are looked up as for any data set (cache, mirrors, bundled package file,
    download); a simulated card is available (it is simulated locally on first use).
    """
    from benchmarks.data.cards import get_card
    from benchmarks.data.fetch import resolve
    from benchmarks.errors import CgcbenchError

    kept, missing = [], {}
    for name in cards:
        card = get_card(name)
        if card.kind != "simulated":
            try:
                resolve(card)
            except (CgcbenchError, OSError) as exc:
                missing[name] = _first_line(exc)
                continue
        kept.append(name)
    return tuple(kept), missing


def real_cards(cards: Sequence[str]) -> tuple[str, ...]:
    """The cards of real (not simulated) cells among ``cards``."""
    from benchmarks.data.cards import get_card

    return tuple(c for c in cards if get_card(c).kind != "simulated")


def prior_files() -> tuple[dict[str, Path | None], dict[str, str]]:
    """Paths of the default prior files (``None`` where unavailable) and card → reason for those.

    Raises
    ------
    CgcbenchError
        If the vocabulary (the only required file) cannot be had.

    """
    from baselines.gene_ids import resource_path
    from benchmarks.errors import CgcbenchError

    files: dict[str, Path | None] = {}
    missing: dict[str, str] = {}
    for key, (card, file) in PRIOR_CARDS.items():
        try:
            files[key] = resource_path(card, file)
        except (CgcbenchError, OSError) as exc:
            if key in REQUIRED_PRIORS:
                raise CgcbenchError(
                    f"cgc: the gene vocabulary (card {card}) cannot be had ({_first_line(exc)}); CGC "
                    "cannot run without it — set CGCBENCH_MIRRORS to a directory holding it or run "
                    f"`cgcbench datasets fetch {card}` on a machine with internet"
                ) from exc
            files[key] = None
            missing[card] = _first_line(exc)
    return files, missing


PRIOR_ROLES = {"trrust_human": "TF→target edges", "gene_positions_hg38": "chromosome-position edges",
               "gene_info_hs": "the text node feature (gene descriptions)",
               "gene2go_hs": "GO terms in the gene descriptions",
               "go_terms": "GO terms in the gene descriptions"}
"""What each optional prior card feeds (said when it is left out)."""


def cells_digest(adata: ad.AnnData) -> str:
    """sha256 of a cell set: shape, cell and gene names and the expression values (CSR, float32)."""
    X = sp.csr_matrix(adata.X, dtype=np.float32)
    X.sort_indices()
    h = hashlib.sha256()
    h.update(json.dumps([list(map(str, adata.obs_names)), list(map(str, adata.var_names)),
                         list(X.shape)]).encode())
    for part in (X.indptr.astype(np.int64), X.indices.astype(np.int64), X.data):
        h.update(np.ascontiguousarray(part).tobytes())
    return h.hexdigest()


def text_encoder_from(spec: str) -> Any:
    """``"minilm"`` → the offline default encoder, ``"hashing[:DIM]"``, or ``"none"``."""
    from cgc.priors.text import HashingTextEncoder

    if spec == "minilm":
        return "default"
    if spec.startswith("hashing"):
        _, _, dim = spec.partition(":")
        return HashingTextEncoder(int(dim or 64))
    if spec == "none":
        return None
    raise InputError(f"cgc: text_encoder={spec!r}; use 'minilm', 'hashing[:DIM]' or 'none'")


def load_corpus(cards: Sequence[str], n_cells: int | None, seed: int
                ) -> tuple[list[ad.AnnData], list[ad.AnnData]]:
    """Corpus AnnData objects (gene symbols as ``var_names``) and their count-based subset.

    Each set is loaded through the dataset registry (so its declared expression is used:
    ``pbmc68k_reduced`` contributes its log-normalised ``.raw``), subsampled to ``n_cells``
    (seeded) and restricted to genes detected in at least 3 cells.
    """
    from benchmarks.data.load import load_dataset

    adatas, counts = [], []
    rng = np.random.default_rng(seed)
    for name in cards:
        card, a = load_dataset(name)
        a = _corpus_member(a, n_cells, rng)
        adatas.append(a)
        kind = card.anndata.expression_kind if card.anndata is not None else "counts"
        if kind == "counts" and _integer_valued(a):
            counts.append(a)
    return adatas, counts


def _integer_valued(a: ad.AnnData) -> bool:
    return bool(np.allclose(a.X.data[:1000], np.round(a.X.data[:1000])))


def _corpus_member(a: ad.AnnData, n_cells: int | None, rng: np.random.Generator) -> ad.AnnData:
    """Symbols as ``var_names``, CSR float32, at most ``n_cells`` cells, genes seen in >= 3 cells."""
    from baselines.gene_ids import var_gene_ids

    symbols = [s or f"__unmapped_{i}" for i, s in enumerate(var_gene_ids(a, "symbol"))]
    a = ad.AnnData(sp.csr_matrix(a.X, dtype=np.float32), obs=pd.DataFrame(index=a.obs_names),
                   var=pd.DataFrame(index=pd.Index(symbols).astype(str)))
    a.var_names_make_unique()
    if n_cells is not None and a.n_obs > n_cells:
        a = a[np.sort(rng.choice(a.n_obs, n_cells, replace=False))].copy()
    detected = np.asarray((a.X > 0).sum(0)).ravel() >= 3
    return a[:, detected].copy()


def reference_corpus(cells: ad.AnnData, n_cells: int | None, seed: int
                     ) -> tuple[list[ad.AnnData], list[ad.AnnData]]:
    """The fallback corpus: ``cells`` (the suite's training cells) prepared as :func:`load_corpus` does.

    They count as count-based (co-expression) when their values are integers.
    """
    a = _corpus_member(cells, n_cells, np.random.default_rng(seed))
    return [a], ([a] if _integer_valued(a) else [])


def default_priors(cards: Sequence[str], n_cells: int | None, seed: int, text_encoder: str,
                   say: Say = log.info, counts: Sequence[ad.AnnData] | None = None, *,
                   corpus_key: Mapping[str, Any] | None = None,
                   files: Mapping[str, Path | None] | None = None) -> GenePriors:
    """Build (or load from the cache) the priors bundle of a default corpus.

    Text vectors are computed for every vocabulary gene that has an NCBI description (not
    only the corpus's genes), so zero-shot suites find a text feature for nearly every gene
    they ask about. ``counts`` is the count-based part of ``load_corpus(cards, n_cells,
    seed)`` when the caller has loaded it already. ``corpus_key`` identifies a corpus that is
    not ``cards`` (the reference-cells fallback) and ``files`` the prior files
    (:func:`prior_files`; ``None`` entries are left out, and the key says so).
    """
    if files is None:
        files, _ = prior_files()
    key = _hash({"kind": "priors", "v": CACHE_VERSION,
                 "files": {k: _card_sha(c) if files.get(k) is not None else ["unavailable"]
                           for k, (c, _) in PRIOR_CARDS.items()},
                 "corpus": dict(corpus_key) if corpus_key is not None else
                 {c: _card_sha(c) for c in cards}, "n_cells": n_cells,
                 "seed": seed, "text": text_encoder})
    root = cache_root()
    dest = root / f"priors-{key}"
    if (dest / "priors.json").is_file():
        return GenePriors.load(dest)
    with file_lock(root / f"priors-{key}.lock"):
        if (dest / "priors.json").is_file():
            return GenePriors.load(dest)
        t0 = time.perf_counter()
        if counts is None:
            _, counts = load_corpus(cards, n_cells, seed)
        vocab = json.loads(Path(str(files["vocab_path"])).read_text())
        every_gene = [g for g in vocab if not (g.startswith("<") and g.endswith(">"))]
        text = text_encoder_from(text_encoder) if files.get("gene_info_path") is not None else None
        say("cgc: building priors ("
            + (f"text vectors for {len(every_gene)} vocabulary genes, " if text is not None else "")
            + "co-expression on the corpus; cached)")
        priors = GenePriors.build(corpus=counts, text_encoder=text,
                                  text_genes=every_gene, text_cache_dir=root / "text_cache",
                                  extend_vocab=False, coexpr_max_genes=3000, **files)
        priors.save(dest)  # atomic (temporary directory + rename)
        say(f"cgc: built priors {priors} in {time.perf_counter() - t0:.0f}s")
    return GenePriors.load(dest)


def pretrain_settings(steps: int, batch_size: int, lr: float) -> TrainConfig:
    """Optimisation settings of the default pre-training (warm-up 10%, decay ×0.5 per 1/3)."""
    return TrainConfig.small(max_steps=steps, batch_size=batch_size, grad_accum=1, lr=lr,
                             warmup_steps=max(1, steps // 10), decay_every=max(1, steps // 3),
                             decay_gamma=0.5, eval_every=max(1, steps // 4),
                             checkpoint_every=steps, val_batches=16, amp=False)


def default_checkpoint(config: CGCConfig, *, steps: int, seed: int = 0, n_cells: int | None = None,
                       text_encoder: str = "minilm", batch_size: int = 16, lr: float = 1e-3,
                       exclude: Sequence[str] = (), say: Say = log.info,
                       reference: ad.AnnData | None = None,
                       reference_source: str = "cells the suite passed to fit") -> Path:
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
    exclude
        Data sets left out of the corpus (the ones the run evaluates on).
    say
        Log function (progress lines).
    reference, reference_source
        The cells the suite gives the adapter to fit (annotation: the reference split) and
        what they are, for the record: pre-trained on when no real corpus data set can be had.

    Returns
    -------
    pathlib.Path
        ``<cache>/<hash>/``, holding ``checkpoint/`` and ``pretrain.json`` (corpus, losses,
        the per-gene-mean predictor's validation loss, left-out cards with their reasons).

    Raises
    ------
    CgcbenchError
        If no corpus can be had and ``reference`` is ``None``, or the vocabulary is missing.

    """
    import cgc
    from benchmarks.errors import CgcbenchError
    from cgc.train.pretrain import pretrain

    if "text" in config.node_features and text_encoder == "none":
        config = config.replace(node_features=tuple(f for f in config.node_features if f != "text"))
    cards = corpus_cards(exclude)
    if not cards and reference is None:
        raise InputError("cgc: the default pre-training corpus is empty after leaving out the "
                         f"evaluated data sets {list(exclude)}; pass cgc.checkpoint=PATH")
    train = pretrain_settings(steps, batch_size, lr)
    payload: dict[str, Any] = {
        "kind": "checkpoint", "v": CACHE_VERSION, "cgc": cgc.__version__,
        "corpus": {c: _card_sha(c) for c in cards}, "config": config.to_dict(),
        "train": train.to_dict(), "seed": seed, "n_cells": n_cells, "text": text_encoder}
    root = cache_root()
    if cards:  # everything available: the key of the full corpus (unchanged), reused when cached
        dest = root / _hash(payload)
        if (dest / "checkpoint" / MANIFEST).is_file():
            return dest
    # To be built: find out which corpus sets and prior files can be had.
    files, missing_priors = prior_files()
    kept, missing_corpus = available_corpus(cards)
    for card, why in missing_corpus.items():
        _say_once(say, f"cgc: corpus data set {card} left out of the default pre-training ({why})")
    for card, why in missing_priors.items():
        _say_once(say, f"cgc: prior {card} unavailable, CGC runs without {PRIOR_ROLES.get(card, card)} "
                  f"({why})")
    notes: dict[str, Any] = {}
    if missing_corpus:
        notes["unavailable_corpus"] = missing_corpus
    if missing_priors:
        notes["unavailable_priors"] = missing_priors
        payload["priors_unavailable"] = sorted(missing_priors)
    if files["gene_info_path"] is None and "text" in config.node_features:
        config = config.replace(node_features=tuple(f for f in config.node_features if f != "text"))
        payload["config"] = config.to_dict()
        notes["text_features"] = (f"dropped: {PRIOR_CARDS['gene_info_path'][0]} (the gene descriptions) "
                                  "is unavailable (reason under unavailable_priors)")
        _say_once(say, "cgc: the text node feature is dropped (no gene descriptions without gene_info_hs)")
    fallback = not real_cards(kept)
    if fallback:
        if reference is None:
            why = "; ".join(f"{c}: {r}" for c, r in missing_corpus.items()) or "none is listed"
            raise CgcbenchError(
                f"cgc: no pre-training corpus data set can be had ({why}) and this task gives CGC no "
                "training cells to pre-train on instead; set CGCBENCH_MIRRORS to a directory holding "
                f"one, run `cgcbench datasets fetch {' '.join(real_cards(cards)) or 'pbmc3k_raw'}` with "
                "internet access, or pass cgc.checkpoint=PATH")
        digest = cells_digest(reference)
        payload["corpus"] = {"reference_cells": digest}
        notes["corpus"] = (f"reference cells only ({reference.n_obs} {reference_source}, "
                           f"{reference.n_vars} genes, sha256 {digest[:16]}; no real corpus data set "
                           "could be had)")
        _say_once(say, f"cgc: pre-training on {notes['corpus']}")
        kept = ()
    elif missing_corpus:
        payload["corpus"] = {c: _card_sha(c) for c in kept}
    key = _hash(payload)
    dest = root / key
    if (dest / "checkpoint" / MANIFEST).is_file():
        return dest
    with file_lock(root / f"{key}.lock"):
        if (dest / "checkpoint" / MANIFEST).is_file():
            return dest
        if fallback:
            assert reference is not None
            adatas, counts = reference_corpus(reference, n_cells, seed)
        else:
            adatas, counts = load_corpus(kept, n_cells, seed)
        priors = default_priors(kept, n_cells, seed, text_encoder, say, counts=counts,
                                corpus_key=payload["corpus"] if fallback else None, files=files)
        corpus_text = notes.get("corpus") or ", ".join(kept)
        tmp = root / f".{key}.tmp-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        try:
            say(f"cgc: pre-training the default checkpoint on {corpus_text} "
                f"({sum(a.n_obs for a in adatas)} cells, {steps} steps; cached for later runs)")
            t0 = time.perf_counter()
            res = pretrain(adatas, tmp / "run", RunConfig(config, train), seed=seed, priors=priors,
                           corpus_kwargs={"min_genes": 20, "val_fraction": 0.05, "shard_size": 50_000,
                                          "panel_size": config.max_genes,
                                          "n_hvg": config.max_genes
                                          if config.input_genes == "panel" else None},
                           device="cpu", progress=False, log=say)
            wall = time.perf_counter() - t0
            if res.checkpoint is None:
                raise RuntimeError("cgc: default pre-training wrote no checkpoint")
            manifest = json.loads((tmp / "run" / "corpus" / "corpus.json").read_text())
            os.replace(res.checkpoint, tmp / "checkpoint")
            losses = [h["loss"] for h in res.history]
            info = {
                **payload,
                **notes,
                "corpus_cards": list(kept),
                "n_train_cells": manifest.get("n_train"),
                "n_val_cells": manifest.get("n_val"),
                "steps": res.step,
                "wall_time_s": round(wall, 1),
                "first_train_loss": losses[0] if losses else None,
                "final_train_loss": float(np.mean(losses[-10:])) if losses else None,
                "val_losses": res.val_losses,
                "final_val_loss": res.val_losses[-1] if res.val_losses else None,
                "mean_predictor_val_loss": res.mean_predictor_val_loss,
                "priors_hash": priors.content_hash,
                "loss_curve": [[h["step"], round(float(h["loss"]), 6)] for h in res.history],
                "val_loss_curve": [[h["step"], round(float(h["val_loss"]), 6)]
                                   for h in res.history if "val_loss" in h],
            }
            (tmp / "pretrain.json").write_text(json.dumps(info, indent=2, default=str))
            shutil.rmtree(tmp / "run")
            os.replace(tmp, dest)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        say(f"cgc: pre-trained {dest.name} in {info['wall_time_s']}s: validation loss "
            f"{info['final_val_loss']:.4f} vs per-gene-mean predictor "
            f"{info['mean_predictor_val_loss']:.4f}")
    return dest
