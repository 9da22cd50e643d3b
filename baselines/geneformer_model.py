"""``geneformer``: Geneformer (Theodoris et al. 2023) — rank-value encoding + BERT.

The model is Hugging Face ``transformers``' :class:`~transformers.BertForMaskedLM`, fed cells
tokenised exactly as Geneformer's ``TranscriptomeTokenizer`` does with the dictionaries of the
model's version (V1: Genecorpus-30M, the ``geneformer_vocab`` card; V2: the ``*_gc104M.pkl``
/ ``*_gc95M.pkl`` files, given with ``vocab_dir=`` or inside the model directory): columns
with the same Ensembl id are summed (``collapse_gene_ids``), counts of the genes of the token
dictionary are divided by the cell's total counts × 10,000 and by each gene's non-zero median,
the detected genes are sorted by that value (descending) and the sequence of their tokens is
truncated to ``model_input_size`` (V1 2,048; V2 4,096 with ``<cls>`` first and ``<eos>`` last,
so 4,094 genes). Sorting is stable, so ties keep gene order (Geneformer's ``np.argsort``
leaves them unspecified). The version found is recorded (``params.geneformer_version``).

* **weights** — ``checkpoint=`` / ``$GENEFORMER_CHECKPOINT``: a Geneformer model directory
  (``config.json`` + ``pytorch_model.bin`` or ``model.safetensors``, e.g. the released
  ``Geneformer-V1-10M`` or ``Geneformer-V2-104M``); ``init="pretrained"``; a V2 model with
  V1 dictionaries (or the reverse) is refused before any work. Otherwise a BERT is pre-trained here from
  scratch by masked language modelling on rank-encoded cells (15 % of tokens, BERT's
  80/10/10 rule, AdamW with linear warm-up/decay as in Geneformer's pre-training), on the data
  given to ``fit`` / ``fit_classifier`` or, for gene embeddings, on the ``corpus`` cards.
* **cell embeddings** — Geneformer's ``EmbExtractor`` recipe at layer ``emb_layer`` (-1 =
  second-to-last layer, its default): the ``<cls>`` state (V2) or the mean over the cell's
  gene tokens (V1; ``emb_mode="cell"``).
* **gene embeddings** — rows of the input token-embedding table (the zero-shot analogue of
  CGC's gene embedding ``emb_g``).
* **annotation** — Geneformer's cell-classification fine-tuning: a
  :class:`~transformers.BertForSequenceClassification` initialised from the BERT, trained with
  cross-entropy.

Inputs: raw counts, or log-normalised values (``expm1`` restores the per-cell-scaled values,
which give the same ranks). Genes are matched by Ensembl id (symbols are converted with
Geneformer's own name → id dictionary, then NCBI gene info); coverage is reported.
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from baselines.checkpoints import UserCheckpointMixin
from baselines.gene_ids import (
    Coverage,
    GeneIdMapper,
    checkpoint_setting,
    default_mapper,
    resource_path,
    var_gene_ids,
)
from baselines.preprocessing import expression_kind
from benchmarks.errors import InputError
from benchmarks.interface import (
    AnnotationMixin,
    Capabilities,
    CellEmbeddingMixin,
    GeneEmbeddingMixin,
    GeneVocabulary,
    ModelAdapter,
    TaskKind,
)
from benchmarks.weights_io import load_state_dict, safetensors_names
from cgc.determinism import deterministic_cpu
from cgc.progress import task as progress_task

log = logging.getLogger(__name__)

VOCAB_CARD = "geneformer_vocab"
DEFAULT_CORPUS = ("pbmc3k_raw", "kang_pbmc_ctrl_stim")
QUICK_ARCH = {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 128}
V1_ARCH = {"hidden_size": 256, "num_hidden_layers": 6, "num_attention_heads": 4, "intermediate_size": 512}
"""Geneformer V1 6-layer (geneformer-6L-30M) sizes; the ``config.json`` of the vocab card."""


def _plain_dict(path: Path) -> dict[Any, Any]:
    from benchmarks.safe_pickle import load_plain_pickle

    data = load_plain_pickle(path)
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected a pickled dict, found {type(data).__name__}")
    return data


DICTIONARY_FILES = {
    "token": "token_dictionary",
    "median": "gene_median_dictionary",
    "name_to_id": "gene_name_id_dict",
    "mapping": "ensembl_mapping_dict",
}
"""Stems of Geneformer's dictionary pickles; release names add a corpus suffix
(``token_dictionary_gc104M.pkl``) and the card adds a ``geneformer_`` prefix."""

SPECIAL_TOKENS = ("<cls>", "<eos>")
"""The V2 series' special tokens (absent from the V1 dictionaries)."""


def _find_dictionary(directory: Path, stem: str, required: bool) -> Path | None:
    found = sorted(p for p in directory.glob(f"*{stem}*.pkl") if p.is_file())
    if len(found) > 1:
        raise InputError(
            f"{directory}: {len(found)} files match *{stem}*.pkl ({', '.join(p.name for p in found)}); "
            "keep the dictionaries of one Geneformer version per folder"
        )
    if not found and required:
        raise InputError(
            f"{directory}: no *{stem}*.pkl; pass vocab_dir= with the Geneformer dictionaries that "
            "belong to the model (token, gene median and gene name dictionaries)"
        )
    return found[0] if found else None


@dataclass
class GeneformerVocab:
    """Geneformer's token, gene median, gene name → id and (optional) Ensembl mapping dictionaries.

    ``version`` is ``"V2"`` when the token dictionary holds ``<cls>`` and ``<eos>`` (the V2
    series' dictionaries), else ``"V1"``.
    """

    token: dict[str, int]
    median: dict[str, float]
    name_to_id: dict[str, str]
    mapping: dict[str, str] | None = None
    source: str = "geneformer_vocab"

    @classmethod
    def load(cls, directory: str | Path | None = None) -> GeneformerVocab:
        """Read the dictionaries from ``directory`` or from the ``geneformer_vocab`` card (V1).

        In a directory, each dictionary is the one ``*<stem>*.pkl`` file (``token_dictionary``,
        ``gene_median_dictionary``, ``gene_name_id_dict``; optional ``ensembl_mapping_dict``),
        so the released names (``token_dictionary_gc104M.pkl``) and the card's
        (``geneformer_token_dictionary.pkl``) both work. The pickles are read with
        :func:`benchmarks.safe_pickle.load_plain_pickle`, which allows only plain data (dicts,
        strings, numbers, NumPy scalars): a hostile file is refused with an
        :class:`~benchmarks.errors.InputError` instead of running code.
        """
        paths: dict[str, Path | None]
        if directory is not None:
            root = Path(directory)
            if not root.is_dir():
                raise InputError(f"vocab_dir={root} is not a directory; pass the folder of the dictionaries")
            paths = {k: _find_dictionary(root, stem, k != "mapping") for k, stem in DICTIONARY_FILES.items()}
        else:
            paths = {
                k: resource_path(VOCAB_CARD, f"geneformer_{stem}.pkl")
                for k, stem in DICTIONARY_FILES.items()
                if k != "mapping"
            }
            paths["mapping"] = None

        def read(key: str) -> dict[Any, Any]:
            path = paths[key]
            assert path is not None
            return _plain_dict(path)

        try:
            token = {str(k): int(v) for k, v in read("token").items()}
            median = {str(k): float(v) for k, v in read("median").items()}
            name_to_id = {str(k): str(v) for k, v in read("name_to_id").items()}
            mapping = (
                None
                if paths["mapping"] is None
                else {str(k): str(v) for k, v in read("mapping").items() if v is not None}
            )
        except (TypeError, ValueError) as exc:
            raise InputError(
                f"{directory or VOCAB_CARD}: a Geneformer dictionary has entries of the wrong type "
                f"({exc}); token ids must be integers and medians numbers"
            ) from exc
        for special in ("<pad>", "<mask>"):
            if special not in token:
                raise InputError(
                    f"{paths['token']}: token dictionary has no {special!r}; not a Geneformer dictionary"
                )
        return cls(token, median, name_to_id, mapping, str(directory or VOCAB_CARD))

    @property
    def version(self) -> str:
        """``"V2"`` if the token dictionary has ``<cls>`` and ``<eos>``, else ``"V1"``."""
        return "V2" if all(t in self.token for t in SPECIAL_TOKENS) else "V1"

    @property
    def pad_id(self) -> int:
        """Token of ``<pad>``."""
        return self.token["<pad>"]

    @property
    def mask_id(self) -> int:
        """Token of ``<mask>``."""
        return self.token["<mask>"]

    @property
    def special_ids(self) -> frozenset[int]:
        """Tokens that are not genes (``<pad>``, ``<mask>``, ``<cls>``, ``<eos>``)."""
        return frozenset(v for k, v in self.token.items() if k.startswith("<"))

    def mapper(self) -> GeneIdMapper:
        """Symbol ↔ Ensembl mapper: Geneformer's dictionary first, then NCBI gene info."""
        return default_mapper().with_priority(self.name_to_id)

    def collapse(self, ensembl_ids: Sequence[str | None]) -> list[str | None]:
        """Map each column's Ensembl id as Geneformer's tokenizer does (``collapse_gene_ids``).

        With an Ensembl mapping dictionary, ids are upper-cased and mapped through it (ids it
        does not map are dropped); without one, the mapping is the identity on the token
        dictionary. Either way only ids with a token and a median are kept; columns that end up
        with the same id are summed by :meth:`rank_encode`.
        """
        out: list[str | None] = []
        for e in ensembl_ids:
            m = None if e is None else (e if self.mapping is None else self.mapping.get(e.upper()))
            out.append(m if m is not None and m in self.token and m in self.median else None)
        return out

    def rank_encode(
        self,
        X: sp.spmatrix | np.ndarray,
        ensembl_ids: Sequence[str | None],
        max_len: int,
        special_tokens: bool | None = None,
    ) -> list[np.ndarray]:
        """Tokenise cells by Geneformer's rank-value encoding (``TranscriptomeTokenizer``).

        Each cell's counts are divided by its total count (all columns) × 10,000 and by each
        gene's non-zero median; the detected genes are sorted by that value, highest first.
        Columns with the same (collapsed) Ensembl id are summed first. V2 (``special_tokens``)
        truncates to ``max_len - 2`` and adds ``<cls>`` in front and ``<eos>`` at the end; V1
        truncates to ``max_len``.

        Parameters
        ----------
        X
            ``(n_cells, n_genes)`` raw counts (or per-cell-scaled normalised values).
        ensembl_ids
            Ensembl id of each column (``None`` where unknown).
        max_len
            Model input size (V1: 2,048; V2: 4,096).
        special_tokens
            Add ``<cls>``/``<eos>`` (default: when the dictionaries are V2).

        Returns
        -------
        list of numpy.ndarray
            One ``int64`` token sequence per cell.

        """
        special = self.version == "V2" if special_tokens is None else bool(special_tokens)
        if special and self.version != "V2":
            raise InputError(f"{self.source}: V1 dictionaries have no <cls>/<eos> tokens")
        body = max_len - 2 if special else max_len
        head = np.array([self.token["<cls>"]] if special else [], np.int64)
        tail = np.array([self.token["<eos>"]] if special else [], np.int64)
        collapsed = self.collapse(ensembl_ids)
        genes = list(dict.fromkeys(e for e in collapsed if e is not None))  # first appearance
        Xr = sp.csr_matrix(X)
        totals = np.asarray(Xr.sum(1)).ravel()
        if not genes:
            return [np.concatenate([head, tail]) for _ in range(X.shape[0])]
        col_of = {g: i for i, g in enumerate(genes)}
        rows = [i for i, e in enumerate(collapsed) if e is not None]
        # (n_genes_in_data × n_unique_ids) 0/1 matrix: sums duplicated ids, as collapse_gene_ids
        cols = [col_of[collapsed[i]] for i in rows]  # type: ignore[index]
        summing = sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(len(collapsed), len(genes)))
        Xc = sp.csr_matrix(Xr @ summing)
        Xc.sort_indices()
        norm = np.array([self.median[g] for g in genes])
        tokens = np.array([self.token[g] for g in genes], dtype=np.int64)
        out = []
        for r in range(Xc.shape[0]):
            lo, hi = Xc.indptr[r], Xc.indptr[r + 1]
            idx, val = Xc.indices[lo:hi], Xc.data[lo:hi]
            keep = val != 0
            idx, val = idx[keep], val[keep]
            scaled = val / max(totals[r], 1e-12) * 10_000 / norm[idx]
            order = np.argsort(-scaled, kind="stable")
            out.append(np.concatenate([head, tokens[idx[order]][:body], tail]))
        return out


def model_version(config: dict[str, Any]) -> str:
    """Geneformer series of a model ``config.json``: V2 takes 4,096 tokens, V1 2,048."""
    return "V2" if int(config.get("max_position_embeddings", 0)) >= 4096 else "V1"


def _torch() -> Any:
    import torch

    return torch


def _pad(seqs: Sequence[np.ndarray], pad_id: int) -> tuple[Any, Any]:
    torch = _torch()
    width = max(1, max(len(s) for s in seqs))
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = torch.as_tensor(s, dtype=torch.long)
        mask[i, : len(s)] = 1
    return ids, mask


def _weights_file(directory: Path) -> Path:
    for name in ("model.safetensors", "pytorch_model.bin"):
        if (directory / name).is_file():
            return directory / name
    raise InputError(
        f"{directory}: no model.safetensors or pytorch_model.bin; pass a Geneformer model "
        "directory (config.json + weights)"
    )


class GeneformerAdapter(
    UserCheckpointMixin, ModelAdapter, GeneEmbeddingMixin, CellEmbeddingMixin, AnnotationMixin
):
    """Geneformer: BERT over rank-value-encoded cells (``transformers`` ``BertForMaskedLM``).

    Parameters
    ----------
    checkpoint
        A Geneformer model directory (default ``$GENEFORMER_CHECKPOINT``); makes
        ``init="pretrained"``. V1 (2,048 inputs) or V2 (4,096 inputs, ``<cls>``/``<eos>``),
        told apart by ``config.json``; the dictionaries must be of the same version.
    vocab_dir
        Folder with the ``*token_dictionary*.pkl``, ``*gene_median_dictionary*.pkl``,
        ``*gene_name_id_dict*.pkl`` (and optional ``*ensembl_mapping_dict*.pkl``) of the
        model's version (default: those in the checkpoint directory, else the
        ``geneformer_vocab`` card, V1).
    model_input_size
        Token sequence length (Geneformer: 2,048; *quick*: 256).
    architecture
        BERT sizes for training from scratch (``hidden_size``, ``num_hidden_layers``,
        ``num_attention_heads``, ``intermediate_size``); default the V1 6-layer model,
        *quick*: 2 layers × 64.
    pretrain_epochs
        MLM epochs when training from scratch (*quick*: 1).
    pretrain_lr
        Peak learning rate of pre-training (Geneformer: 1e-3).
    max_pretrain_cells
        Cells (seeded sample) used for pre-training from scratch.
    finetune_epochs
        Cell-classifier fine-tuning epochs (Geneformer example: 10; *quick*: 2).
    finetune_lr
        Fine-tuning learning rate (default 5e-5 for a checkpoint, 1e-3 from scratch).
    batch_size
        Cells per step.
    emb_layer
        Hidden layer for cell embeddings relative to the last (-1: second to last; 0: last).
    emb_mode
        ``"cls"`` (the ``<cls>`` state; V2 only, its default) or ``"cell"`` (mean over the gene
        tokens; V1 default), as Geneformer's ``EmbExtractor``.
    corpus
        Dataset cards to pre-train on when gene embeddings are needed without data.

    """

    name = "geneformer"
    requires = ("transformers",)
    install_hint = "pip install 'cgcbench[baselines]' (transformers)"
    description = "Geneformer V1/V2: rank-value encoded cells, transformers BertForMaskedLM."
    capabilities = Capabilities(
        task_kinds=frozenset({TaskKind.GENE_EMBEDDING, TaskKind.CELL_EMBEDDING, TaskKind.ANNOTATION}),
        organisms=frozenset({"human"}),
        gene_id_type="ensembl",
        expression_kinds=frozenset({"counts", "log1p_normalized", "log2_normalized"}),
    )

    def __init__(
        self,
        *,
        checkpoint: str | None = None,
        vocab_dir: str | None = None,
        model_input_size: int | None = None,
        architecture: dict[str, int] | None = None,
        pretrain_epochs: int | None = None,
        pretrain_lr: float = 1e-3,
        max_pretrain_cells: int = 20_000,
        finetune_epochs: int | None = None,
        finetune_lr: float | None = None,
        batch_size: int = 16,
        emb_layer: int = -1,
        emb_mode: str | None = None,
        corpus: Sequence[str] = DEFAULT_CORPUS,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            checkpoint=checkpoint,
            vocab_dir=vocab_dir,
            model_input_size=model_input_size,
            architecture=architecture,
            pretrain_epochs=pretrain_epochs,
            pretrain_lr=pretrain_lr,
            max_pretrain_cells=max_pretrain_cells,
            finetune_epochs=finetune_epochs,
            finetune_lr=finetune_lr,
            batch_size=batch_size,
            emb_layer=emb_layer,
            emb_mode=emb_mode,
            corpus=list(corpus),
            **kwargs,
        )
        if emb_mode not in (None, "cls", "cell"):
            raise InputError(f"geneformer: emb_mode={emb_mode!r}; use 'cls' (V2 only) or 'cell'")
        self.checkpoint_path = checkpoint_setting(checkpoint, "GENEFORMER_CHECKPOINT")
        self.vocab_dir = vocab_dir
        self._input_size_set = model_input_size is not None
        self.model_input_size = int(model_input_size or (256 if self.quick else 2048))
        self.emb_mode = emb_mode
        self.version_: str | None = None
        self.architecture = dict(architecture or (QUICK_ARCH if self.quick else V1_ARCH))
        self.pretrain_epochs = int(
            pretrain_epochs if pretrain_epochs is not None else (1 if self.quick else 3)
        )
        self.pretrain_lr = float(pretrain_lr)
        self.max_pretrain_cells = int(max_pretrain_cells)
        self.finetune_epochs = int(
            finetune_epochs if finetune_epochs is not None else (2 if self.quick else 10)
        )
        default_ft = 5e-5 if self.checkpoint_path is not None else 1e-3
        self.finetune_lr = float(finetune_lr if finetune_lr is not None else default_ft)
        self.batch_size, self.emb_layer = int(batch_size), int(emb_layer)
        self.corpus = tuple(corpus)
        self.vocab_: GeneformerVocab | None = None
        self.mlm_: Any = None
        self.classifier_: Any = None
        self.labels_: np.ndarray | None = None
        self.coverage_: dict[str, float] = {}

    # -- provenance ----------------------------------------------------------------------
    def checkpoint_weights(self) -> Path:
        """The Geneformer directory's weight file."""
        assert self.checkpoint_path is not None
        return _weights_file(self.checkpoint_path)

    def extra_metrics(self) -> dict[str, float]:
        """Return gene coverage of the last inputs and the final pre-training loss."""
        out = dict(self.coverage_)
        if "final_mlm_loss" in self.params:
            out["final_mlm_loss"] = float(self.params["final_mlm_loss"])
        return out

    # -- model -----------------------------------------------------------------------------
    def vocab(self) -> GeneformerVocab:
        """Return the Geneformer dictionaries (loaded once).

        ``vocab_dir`` if given; else the dictionaries inside the checkpoint directory if it
        holds them (``*token_dictionary*.pkl`` …); else the ``geneformer_vocab`` card (V1).
        """
        if self.vocab_ is None:
            directory = self.vocab_dir
            if directory is None and self.checkpoint_path is not None and self.checkpoint_path.is_dir():
                if any(self.checkpoint_path.glob("*token_dictionary*.pkl")):
                    directory = str(self.checkpoint_path)
            self.vocab_ = GeneformerVocab.load(directory)
        return self.vocab_

    def release_config(self) -> dict[str, Any]:
        """The checkpoint's ``config.json``, checked against the dictionaries.

        Records ``geneformer_version`` (V1/V2) in the params; the model input size becomes the
        config's ``max_position_embeddings`` (V1 2,048, V2 4,096) unless set.

        Raises
        ------
        InputError
            ``config.json`` is missing or unreadable, or the model's series, ``vocab_size`` or
            special tokens disagree with the dictionaries (e.g. a V2 model with V1 dictionaries).

        """
        import json

        assert self.checkpoint_path is not None
        path = self.checkpoint_path / "config.json"
        try:
            config = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise InputError(
                f"{path}: cannot read the Geneformer model config ({exc}); pass the model directory "
                "(config.json + model.safetensors or pytorch_model.bin)"
            ) from exc
        if not isinstance(config, dict) or "vocab_size" not in config:
            raise InputError(f"{path}: not a BERT config.json (no vocab_size)")
        vocab = self.vocab()
        version = model_version(config)
        n_vocab = len(vocab.token)
        if version != vocab.version or int(config["vocab_size"]) != n_vocab:
            has = "has" if vocab.version == "V2" else "lacks"
            raise InputError(
                f"{self.checkpoint_path}: Geneformer {version} model (max_position_embeddings "
                f"{config.get('max_position_embeddings')}, vocab_size {config['vocab_size']}) but the "
                f"dictionaries of {vocab.source} are {vocab.version} ({n_vocab} tokens, {has} "
                "<cls>/<eos>); pass vocab_dir= with the token/median dictionaries released with "
                f"this model ({'gc104M/gc95M' if version == 'V2' else 'gc30M'})"
            )
        self.version_ = version
        self.params["geneformer_version"] = version
        self.params["release"] = f"Geneformer {version} ({self.checkpoint_path.name})"
        if not self._input_size_set:
            self.model_input_size = int(config["max_position_embeddings"])
        log.info("geneformer: %s model at %s (%d tokens)", version, self.checkpoint_path, n_vocab)
        return config

    def gene_vocabulary(self) -> GeneVocabulary:
        """The Ensembl ids Geneformer can rank-encode (its gene median dictionary), no model built."""
        vocab = self.vocab()
        return GeneVocabulary(
            frozenset(vocab.median),
            "ensembl",
            self.vocab_dir or VOCAB_CARD,
            min_coverage=0.2,
            symbol_to_ensembl=vocab.name_to_id,
        )

    def _new_mlm(self) -> Any:
        from transformers import BertConfig, BertForMaskedLM

        torch = _torch()
        torch.manual_seed(self.seed)
        vocab = self.vocab()
        config = BertConfig(
            vocab_size=len(vocab.token),
            max_position_embeddings=self.model_input_size,
            hidden_act="relu",
            hidden_dropout_prob=0.02,
            attention_probs_dropout_prob=0.02,
            initializer_range=0.02,
            layer_norm_eps=1e-12,
            pad_token_id=vocab.pad_id,
            **self.architecture,
        )
        return BertForMaskedLM(config)

    def _load_mlm(self) -> Any:
        from transformers import BertForMaskedLM

        assert self.checkpoint_path is not None
        config = self.release_config()
        weights = _weights_file(self.checkpoint_path)
        if weights.suffix == ".bin":  # refuse anything torch.load(weights_only=True) would not rebuild
            load_state_dict(weights, "Geneformer pytorch_model.bin")
        else:
            safetensors_names(weights, "Geneformer model.safetensors")
        try:
            model = BertForMaskedLM.from_pretrained(str(self.checkpoint_path))
        except (OSError, ValueError, RuntimeError) as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
            raise InputError(
                f"{weights}: cannot load the Geneformer weights ({first}); the file is truncated or "
                "does not belong to config.json — download it again and check its sha256"
            ) from exc
        if model.config.vocab_size != config["vocab_size"]:  # pragma: no cover - transformers checks
            raise InputError(f"{weights}: weights do not match config.json")
        self.model_input_size = min(self.model_input_size, model.config.max_position_embeddings)
        return model.eval()

    def tokenize(self, adata: ad.AnnData, what: str = "cells") -> list[np.ndarray]:
        """Rank-value encode the cells of ``adata`` (records gene coverage)."""
        if self.checkpoint_path is not None and self.version_ is None:
            self.release_config()  # dictionaries and model must be of one series before any work
        vocab = self.vocab()
        ids = var_gene_ids(adata, "ensembl", vocab.mapper())
        known = vocab.collapse(ids)
        cov = Coverage(
            adata.n_vars,
            sum(e is not None for e in known),
            [str(n) for n, e in zip(adata.var_names, known, strict=True) if e is None],
        )
        self.coverage_[f"gene_coverage_{what}"] = cov.fraction
        cov.check("geneformer", min_fraction=0.2, what="genes of the data")
        X = adata.X
        kind = expression_kind(adata)
        if kind == "log1p_normalized":
            X = sp.csr_matrix(X).expm1() if sp.issparse(X) else np.expm1(X)
        elif kind == "log2_normalized":
            X = sp.csr_matrix(X)
            X.data = np.exp2(X.data) - 1
        elif kind != "counts":
            raise InputError(f"geneformer needs counts or log-normalised values, got {kind!r}")
        return vocab.rank_encode(X, ids, self.model_input_size)

    @property
    def emb_mode_(self) -> str:
        """``emb_mode``, else ``cls`` for V2 dictionaries and ``cell`` (mean) for V1."""
        mode = self.emb_mode or ("cls" if self.vocab().version == "V2" else "cell")
        if mode == "cls" and self.vocab().version != "V2":
            raise InputError("geneformer: emb_mode='cls' needs a V2 model (V1 has no <cls> token)")
        return mode

    def _pool(self, hidden: Any, ids: Any, attn: Any) -> Any:
        """Cell embedding of a batch: ``<cls>`` state, or the mean over gene tokens.

        Geneformer's ``EmbExtractor``: ``emb_mode="cls"`` takes the ``<cls>`` position (V2);
        ``"cell"`` averages the non-padding tokens, leaving out ``<cls>``/``<eos>`` (V2).
        """
        if self.emb_mode_ == "cls":
            return hidden[:, 0, :]
        torch = _torch()
        genes = attn.bool() & ~torch.isin(ids, torch.as_tensor(sorted(self.vocab().special_ids)))
        m = genes.unsqueeze(-1).to(hidden.dtype)
        return (hidden * m).sum(1) / m.sum(1).clamp(min=1)

    def _mask(self, ids: Any, attn: Any, gen: Any) -> tuple[Any, Any]:
        """Apply BERT masking (15 %; 80 % <mask>, 10 % random gene, 10 % kept)."""
        torch = _torch()
        labels = ids.clone()
        prob = torch.full(ids.shape, 0.15)
        chosen = torch.bernoulli(prob, generator=gen).bool() & attn.bool()
        labels[~chosen] = -100
        inputs = ids.clone()
        to_mask = torch.bernoulli(torch.full(ids.shape, 0.8), generator=gen).bool() & chosen
        inputs[to_mask] = self.vocab().mask_id
        rand = torch.bernoulli(torch.full(ids.shape, 0.5), generator=gen).bool() & chosen & ~to_mask
        n_vocab = len(self.vocab().token)
        inputs[rand] = torch.randint(2, n_vocab, ids.shape, generator=gen)[rand]
        return inputs, labels

    def pretrain(self, seqs: list[np.ndarray]) -> Any:
        """Pre-train a new BERT by masked language modelling on tokenised cells."""
        from transformers import get_linear_schedule_with_warmup

        torch = _torch()
        seqs = [s for s in seqs if len(s) > 0]
        if not seqs:
            raise InputError("geneformer: no cell has a detected gene of the vocabulary")
        rng = np.random.default_rng(self.seed)
        if len(seqs) > self.max_pretrain_cells:
            seqs = [seqs[i] for i in rng.choice(len(seqs), self.max_pretrain_cells, replace=False)]
        model = self._new_mlm().train()
        opt = torch.optim.AdamW(model.parameters(), lr=self.pretrain_lr, weight_decay=0.001)
        steps = self.pretrain_epochs * math.ceil(len(seqs) / self.batch_size)
        sched = get_linear_schedule_with_warmup(opt, max(1, steps // 10), max(1, steps))
        gen = torch.Generator().manual_seed(self.seed)
        loss_val = float("nan")
        shown_step = 0
        device = next(model.parameters()).device
        with progress_task("Geneformer pre-training (MLM)",
                           steps) as shown, deterministic_cpu(device):
            for _ in range(self.pretrain_epochs):
                order = rng.permutation(len(seqs))
                for start in range(0, len(seqs), self.batch_size):
                    batch = [seqs[i] for i in order[start : start + self.batch_size]]
                    ids, attn = _pad(batch, self.vocab().pad_id)
                    inputs, labels = self._mask(ids, attn, gen)
                    if not (labels != -100).any():
                        continue
                    # BertForMaskedLM's own head, evaluated on the masked positions only (the
                    # loss is the same as model(..., labels=labels).loss, at a fraction of the cost)
                    hidden = model.bert(input_ids=inputs, attention_mask=attn).last_hidden_state
                    chosen = labels != -100
                    logits = model.cls(hidden[chosen])
                    loss = torch.nn.functional.cross_entropy(logits, labels[chosen])
                    opt.zero_grad()
                    loss.backward()
                    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                    opt.step()
                    sched.step()
                    loss_val = float(loss.detach())
                    shown_step += 1
                    shown.update(shown_step, f"loss {loss_val:.4f}")
        self.params["final_mlm_loss"] = loss_val
        self.params["pretrain_cells"] = len(seqs)
        return model.eval()

    def _ensure_model(self, seqs: list[np.ndarray] | None = None) -> Any:
        if self.mlm_ is None:
            if self.checkpoint_path is not None:
                self.mlm_ = self._load_mlm()
            else:
                self.mlm_ = self.pretrain(seqs if seqs is not None else self._corpus_tokens())
        return self.mlm_

    def _corpus_tokens(self) -> list[np.ndarray]:
        from benchmarks.data.load import load_dataset

        seqs: list[np.ndarray] = []
        for name in self.corpus:
            _, adata = load_dataset(name)
            seqs += self.tokenize(adata, what="corpus")
        self.params["pretrain_corpus"] = list(self.corpus)
        return seqs

    # -- task kinds ------------------------------------------------------------------------
    def fit(self, adata: ad.AnnData, batch_key: str | None = None) -> None:
        """Pre-train from scratch on ``adata`` (no-op with a checkpoint: zero-shot)."""
        if self.checkpoint_path is None and self.mlm_ is None:
            self.mlm_ = self.pretrain(self.tokenize(adata, what="cells"))
        else:
            self._ensure_model()

    def _bert(self) -> Any:
        return self.classifier_.bert if self.classifier_ is not None else self._ensure_model().bert

    def embed_cells(self, adata: ad.AnnData) -> np.ndarray:
        """Return mean token hidden states of layer ``emb_layer`` (Geneformer's recipe)."""
        torch = _torch()
        seqs = self.tokenize(adata, what="cells")
        if self.mlm_ is None and self.classifier_ is None:
            self._ensure_model(seqs if self.checkpoint_path is None else None)
        bert = self._bert().eval()
        layer = bert.config.num_hidden_layers + self.emb_layer
        out = np.zeros((len(seqs), bert.config.hidden_size), np.float32)
        with torch.no_grad():
            for start in range(0, len(seqs), self.batch_size):
                ids, attn = _pad(seqs[start : start + self.batch_size], self.vocab().pad_id)
                hidden = bert(input_ids=ids, attention_mask=attn, output_hidden_states=True).hidden_states[
                    layer
                ]
                out[start : start + len(ids)] = self._pool(hidden, ids, attn).numpy()
        return out

    def embed_genes(self, genes: Sequence[str], id_type: str = "symbol") -> pd.DataFrame:
        """Return the input token embeddings of the genes in Geneformer's vocabulary."""
        vocab = self.vocab()
        names = [str(g) for g in genes]
        ens = vocab.mapper().convert(names, id_type, "ensembl")
        keep = [(n, e) for n, e in zip(names, ens, strict=True) if e in vocab.token]
        self.coverage_["gene_coverage"] = len(keep) / len(names) if names else 0.0
        table = self._bert().embeddings.word_embeddings.weight.detach().numpy()
        mat = table[[vocab.token[e] for _, e in keep]] if keep else np.zeros((0, table.shape[1]))
        return pd.DataFrame(mat.astype(np.float32), index=pd.Index([n for n, _ in keep], name="gene"))

    def fit_classifier(self, reference: ad.AnnData, label_key: str) -> None:
        """Fine-tune a ``BertForSequenceClassification`` from the BERT on the reference."""
        from transformers import BertForSequenceClassification, get_linear_schedule_with_warmup

        torch = _torch()
        seqs = self.tokenize(reference, what="cells")
        mlm = self._ensure_model(seqs if self.checkpoint_path is None else None)
        labels = reference.obs[label_key].astype(str).to_numpy()
        self.labels_, y = np.unique(labels, return_inverse=True)
        config = copy.deepcopy(mlm.config)
        config.num_labels = len(self.labels_)
        torch.manual_seed(self.seed)
        clf = BertForSequenceClassification(config)
        clf.bert.load_state_dict(mlm.bert.state_dict(), strict=False)
        keep = [i for i, s in enumerate(seqs) if len(s)]
        opt = torch.optim.AdamW(clf.parameters(), lr=self.finetune_lr, weight_decay=0.001)
        steps = self.finetune_epochs * math.ceil(len(keep) / self.batch_size)
        sched = get_linear_schedule_with_warmup(opt, max(1, steps // 10), max(1, steps))
        rng = np.random.default_rng(self.seed)
        clf.train()
        shown_step = 0
        device = next(clf.parameters()).device
        with progress_task("Geneformer fine-tuning (classifier)",
                           steps) as shown, deterministic_cpu(device):
            for _ in range(self.finetune_epochs):
                order = rng.permutation(keep)
                for start in range(0, len(order), self.batch_size):
                    idx = order[start : start + self.batch_size]
                    ids, attn = _pad([seqs[i] for i in idx], self.vocab().pad_id)
                    loss = clf(
                        input_ids=ids, attention_mask=attn, labels=torch.as_tensor(y[idx], dtype=torch.long)
                    ).loss
                    opt.zero_grad()
                    loss.backward()
                    torch.nn.utils.clip_grad_norm_(clf.parameters(), 1.0)
                    opt.step()
                    sched.step()
                    shown_step += 1
                    shown.update(shown_step, f"loss {float(loss.detach()):.4f}")
        self.classifier_ = clf.eval()

    def predict_labels(self, query: ad.AnnData) -> np.ndarray:
        """Predict reference labels for the query cells with the fine-tuned classifier."""
        if self.classifier_ is None or self.labels_ is None:
            raise RuntimeError("GeneformerAdapter.predict_labels called before fit_classifier")
        torch = _torch()
        seqs = self.tokenize(query, what="cells")
        pred = np.zeros(len(seqs), dtype=np.int64)
        with torch.no_grad():
            for start in range(0, len(seqs), self.batch_size):
                ids, attn = _pad(seqs[start : start + self.batch_size], self.vocab().pad_id)
                logits = self.classifier_(input_ids=ids, attention_mask=attn).logits
                pred[start : start + len(ids)] = logits.argmax(-1).numpy()
        return self.labels_[pred].astype(object)
