"""``geneformer``: Geneformer (Theodoris et al. 2023) — rank-value encoding + BERT.

The model is Hugging Face ``transformers``' :class:`~transformers.BertForMaskedLM`, fed cells
tokenised exactly as Geneformer's ``TranscriptomeTokenizer`` does with the V1 (Genecorpus-30M)
dictionaries of the ``geneformer_vocab`` card: counts of the protein-coding/miRNA genes in the
median dictionary are divided by the cell's total counts × 10,000 and by each gene's non-zero
median across Genecorpus-30M, the detected genes are sorted by that value (descending) and the
sequence of their tokens is truncated to ``model_input_size`` (2,048). Sorting is stable, so
ties keep gene order (Geneformer's ``np.argsort`` leaves them unspecified).

* **weights** — ``checkpoint=`` / ``$GENEFORMER_CHECKPOINT``: a Geneformer model directory
  (``config.json`` + ``pytorch_model.bin`` or ``model.safetensors``, e.g. the released
  ``geneformer-6L-30M``); ``init="pretrained"``. Otherwise a BERT is pre-trained here from
  scratch by masked language modelling on rank-encoded cells (15 % of tokens, BERT's
  80/10/10 rule, AdamW with linear warm-up/decay as in Geneformer's pre-training), on the data
  given to ``fit`` / ``fit_classifier`` or, for gene embeddings, on the ``corpus`` cards.
* **cell embeddings** — Geneformer's ``EmbExtractor`` recipe: the mean over the cell's tokens
  of the hidden states of layer ``emb_layer`` (-1 = second-to-last layer, its default).
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


@dataclass
class GeneformerVocab:
    """Geneformer's token dictionary, gene median dictionary and gene name → id dictionary."""

    token: dict[str, int]
    median: dict[str, float]
    name_to_id: dict[str, str]

    @classmethod
    def load(cls, directory: str | Path | None = None) -> GeneformerVocab:
        """Read the three pickles from ``directory`` or from the ``geneformer_vocab`` card.

        The pickles are read with :func:`benchmarks.safe_pickle.load_plain_pickle`, which allows
        only plain data (dicts, strings, numbers, NumPy scalars): a hostile file is refused with
        an :class:`~benchmarks.errors.InputError` instead of running code.
        """

        def path(name: str) -> Path:
            if directory is not None:
                return Path(directory) / name
            return resource_path(VOCAB_CARD, f"geneformer_{name}")

        # a restricted unpickler: a vocabulary directory is user input and must not run code
        token = {str(k): int(v) for k, v in _plain_dict(path("token_dictionary.pkl")).items()}
        median = {str(k): float(v) for k, v in _plain_dict(path("gene_median_dictionary.pkl")).items()}
        name_to_id = {str(k): str(v) for k, v in _plain_dict(path("gene_name_id_dict.pkl")).items()}
        return cls(token, median, name_to_id)

    @property
    def pad_id(self) -> int:
        """Token of ``<pad>``."""
        return self.token["<pad>"]

    @property
    def mask_id(self) -> int:
        """Token of ``<mask>``."""
        return self.token["<mask>"]

    def mapper(self) -> GeneIdMapper:
        """Symbol ↔ Ensembl mapper: Geneformer's dictionary first, then NCBI gene info."""
        return default_mapper().with_priority(self.name_to_id)

    def rank_encode(
        self, X: sp.spmatrix | np.ndarray, ensembl_ids: Sequence[str | None], max_len: int
    ) -> list[np.ndarray]:
        """Tokenise cells by Geneformer's rank-value encoding.

        Parameters
        ----------
        X
            ``(n_cells, n_genes)`` raw counts (or per-cell-scaled normalised values).
        ensembl_ids
            Ensembl id of each column (``None`` where unknown).
        max_len
            Truncation length (Geneformer: 2,048).

        Returns
        -------
        list of numpy.ndarray
            One ``int64`` token sequence per cell, highest median-scaled value first.

        """
        cols = np.array([i for i, e in enumerate(ensembl_ids) if e in self.median], dtype=np.int64)
        if len(cols) == 0:
            return [np.zeros(0, np.int64) for _ in range(X.shape[0])]
        norm = np.array([self.median[ensembl_ids[i]] for i in cols])  # type: ignore[index]
        tokens = np.array([self.token[ensembl_ids[i]] for i in cols], dtype=np.int64)  # type: ignore[index]
        Xc = sp.csr_matrix(X)[:, cols]
        Xc.sort_indices()
        totals = np.asarray(sp.csr_matrix(X).sum(1)).ravel()
        out = []
        for r in range(Xc.shape[0]):
            lo, hi = Xc.indptr[r], Xc.indptr[r + 1]
            idx, val = Xc.indices[lo:hi], Xc.data[lo:hi]
            keep = val != 0
            idx, val = idx[keep], val[keep]
            scaled = val / max(totals[r], 1e-12) * 10_000 / norm[idx]
            order = np.argsort(-scaled, kind="stable")
            out.append(tokens[idx[order]][:max_len])
        return out


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
        ``init="pretrained"``. Its vocabulary must be the V1 token dictionary (25,426 tokens).
    vocab_dir
        Folder with ``token_dictionary.pkl``, ``gene_median_dictionary.pkl`` and
        ``gene_name_id_dict.pkl`` (default: the ``geneformer_vocab`` card, V1).
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
    corpus
        Dataset cards to pre-train on when gene embeddings are needed without data.

    """

    name = "geneformer"
    requires = ("transformers",)
    install_hint = "pip install 'cgcbench[baselines]' (transformers)"
    description = "Geneformer: rank-value encoded cells, transformers BertForMaskedLM (V1 vocab)."
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
            corpus=list(corpus),
            **kwargs,
        )
        self.checkpoint_path = checkpoint_setting(checkpoint, "GENEFORMER_CHECKPOINT")
        self.vocab_dir = vocab_dir
        self.model_input_size = int(model_input_size or (256 if self.quick else 2048))
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
        """Return the Geneformer dictionaries (loaded once)."""
        if self.vocab_ is None:
            self.vocab_ = GeneformerVocab.load(self.vocab_dir)
        return self.vocab_

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
        _weights_file(self.checkpoint_path)
        model = BertForMaskedLM.from_pretrained(str(self.checkpoint_path))
        n_vocab = len(self.vocab().token)
        if model.config.vocab_size != n_vocab:
            raise InputError(
                f"{self.checkpoint_path}: vocab_size {model.config.vocab_size} does not match the "
                f"Geneformer dictionary ({n_vocab} tokens); pass vocab_dir= with the model's own "
                "token/median dictionaries (V2 models use the 95M dictionaries)"
            )
        self.model_input_size = min(self.model_input_size, model.config.max_position_embeddings)
        return model.eval()

    def tokenize(self, adata: ad.AnnData, what: str = "cells") -> list[np.ndarray]:
        """Rank-value encode the cells of ``adata`` (records gene coverage)."""
        vocab = self.vocab()
        ids = var_gene_ids(adata, "ensembl", vocab.mapper())
        known = [e if e in vocab.median else None for e in ids]
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
        return vocab.rank_encode(X, known, self.model_input_size)

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
                m = attn.unsqueeze(-1).to(hidden.dtype)
                out[start : start + len(ids)] = ((hidden * m).sum(1) / m.sum(1).clamp(min=1)).numpy()
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
