"""``scgpt``: scGPT (Cui et al. 2024) through PyPI ``scgpt`` 0.2.4.

Everything model-specific is scGPT's own code: :class:`scgpt.model.TransformerModel` (gene and
cell embeddings, annotation), :class:`scgpt.model.TransformerGenerator` (perturbation and bulk
knockout, as in scGPT's perturbation tutorial), :class:`scgpt.tokenizer.GeneVocab`,
:class:`scgpt.DataCollator` (per-cell 51-bin value binning, ``<cls>`` first, sampling to
``max_seq_len``, MLM masking), :func:`scgpt.utils.load_pretrained` and
:func:`scgpt.loss.masked_mse_loss`. scgpt is installed with ``--no-deps`` and imports its
``torchtext.vocab`` pieces from :mod:`baselines._scgpt_compat`; it runs without flash-attn
(``use_fast_transformer=False``).

* **weights** — ``checkpoint=`` / ``$SCGPT_CHECKPOINT``: a directory in the layout of the
  released models (``args.json``, ``vocab.json``, ``best_model.pt``), e.g. the whole-human
  model; ``init="pretrained"``. Otherwise a model of the ``architecture`` sizes is trained from
  scratch with scGPT's generative objectives — GEP (masked expression prediction) + GEPC/MVC
  (expression prediction from the cell embedding), MSE on the masked bins — on the data given
  to ``fit`` / ``fit_classifier`` or, for gene embeddings, on the ``corpus`` cards; vocabulary
  = scGPT's census vocabulary (card ``scgpt_vocab``).
* **gene embeddings** — ``model.encoder(gene_ids)`` (scGPT's GRN tutorial).
* **cell embeddings** — the ``<cls>`` output, L2-normalised (``scgpt.tasks.embed_data``).
* **annotation** — scGPT's annotation fine-tuning: ``TransformerModel(n_cls=…)`` initialised
  from the base weights, CLS cross-entropy.
* **perturbation / bulk knockout** — ``TransformerGenerator`` initialised from the base
  weights; input = control (or before-knockout) log-normalised profile over all genes with
  perturbation flags on the perturbed genes (a perturbed gene absent from the profile is added
  as an extra token), target = perturbed (after) profile, MSE. CGC's two-step up/down
  classifier decoder is not part of scGPT and is not added here.
"""

from __future__ import annotations

import copy
import json
import logging
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from baselines._scgpt_compat import install_torchtext_shim
from baselines.checkpoints import UserCheckpointMixin
from baselines.gene_ids import (
    Coverage,
    checkpoint_setting,
    default_mapper,
    resource_path,
    var_gene_ids,
)
from baselines.preprocessing import log_normalized
from benchmarks.errors import InputError
from benchmarks.interface import (
    AnnotationMixin,
    BulkKnockoutMixin,
    Capabilities,
    CellEmbeddingMixin,
    GeneEmbeddingMixin,
    GeneVocabulary,
    ModelAdapter,
    PerturbationMixin,
    TaskKind,
)
from benchmarks.weights_io import load_state_dict
from cgc.determinism import deterministic_cpu
from cgc.progress import task as progress_task


def release_name(directory: Path) -> str:
    """``scGPT_human`` when ``vocab.json`` is the whole-human release's, else a generic name."""
    from benchmarks.data.fetch import sha256_file
    from benchmarks.weights import RELEASES

    whole_human = next(r for r in RELEASES if r.name == "scGPT_human")
    if sha256_file(directory / "vocab.json") == whole_human.sha256["vocab.json"]:
        return "scGPT_human"
    return "scGPT release directory (vocab.json of another release)"

log = logging.getLogger(__name__)

PAD, CLS_TOKEN, EOC = "<pad>", "<cls>", "<eoc>"
DEFAULT_CORPUS = ("pbmc3k_raw", "kang_pbmc_ctrl_stim")
WHOLE_HUMAN_ARCH = {"embsize": 512, "nheads": 8, "d_hid": 512, "nlayers": 12}
QUICK_ARCH = {"embsize": 64, "nheads": 4, "d_hid": 64, "nlayers": 2}
CTRL = "ctrl"


def _scgpt() -> Any:
    install_torchtext_shim()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import scgpt
    logging.getLogger("scGPT").setLevel(logging.WARNING)
    return scgpt


def _dense(X: Any) -> np.ndarray:
    return np.asarray(X.toarray() if sp.issparse(X) else X, dtype=np.float32)


class ScGPTAdapter(
    UserCheckpointMixin,
    ModelAdapter,
    GeneEmbeddingMixin,
    CellEmbeddingMixin,
    AnnotationMixin,
    PerturbationMixin,
    BulkKnockoutMixin,
):
    """scGPT through its own library (``TransformerModel`` / ``TransformerGenerator``).

    Parameters
    ----------
    checkpoint
        Directory with ``args.json``, ``vocab.json`` and ``best_model.pt`` (default
        ``$SCGPT_CHECKPOINT``).
    architecture
        ``embsize``, ``nheads``, ``d_hid``, ``nlayers`` of a model trained from scratch
        (default: the whole-human sizes 512/8/512/12; *quick*: 64/4/64/2).
    max_seq_len
        Genes per cell (default: the checkpoint's ``args.json``, else scGPT's 1,200;
        *quick*: 256).
    pretrain_epochs
        GEP + GEPC epochs when training from scratch (*quick*: 1).
    finetune_epochs
        Epochs of annotation fine-tuning (scGPT tutorial: 10), of self-supervised fine-tuning
        in ``fit`` with a checkpoint (default 0: zero-shot embeddings), *quick*: 2.
    perturb_epochs
        Epochs of perturbation / knockout fine-tuning (scGPT tutorial: 15; *quick*: 2).
    lr
        Learning rate (default 1e-4 with a checkpoint, as in scGPT's tutorials; 1e-3 from
        scratch).
    batch_size
        Cells per step.
    mask_ratio
        Share of expression values masked for GEP.
    dropout
        Transformer dropout (scGPT: 0.2).
    corpus
        Dataset cards to pre-train on when gene embeddings are asked without data.

    """

    name = "scgpt"
    requires = ("scgpt",)
    install_hint = "pip install --no-deps scgpt==0.2.4 (its declared pins conflict with scvi-tools)"
    description = "scGPT (PyPI scgpt 0.2.4 TransformerModel / TransformerGenerator)."
    capabilities = Capabilities(
        task_kinds=frozenset(
            {
                TaskKind.GENE_EMBEDDING,
                TaskKind.CELL_EMBEDDING,
                TaskKind.ANNOTATION,
                TaskKind.PERTURBATION,
                TaskKind.BULK_KNOCKOUT,
            }
        ),
        organisms=frozenset({"human"}),
        gene_id_type="symbol",
        expression_kinds=frozenset({"counts", "log1p_normalized", "log2_normalized"}),
    )

    def __init__(
        self,
        *,
        checkpoint: str | None = None,
        architecture: dict[str, int] | None = None,
        max_seq_len: int | None = None,
        pretrain_epochs: int | None = None,
        finetune_epochs: int | None = None,
        perturb_epochs: int | None = None,
        lr: float | None = None,
        batch_size: int = 16,
        mask_ratio: float = 0.4,
        dropout: float = 0.2,
        corpus: Sequence[str] = DEFAULT_CORPUS,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            checkpoint=checkpoint,
            architecture=architecture,
            max_seq_len=max_seq_len,
            pretrain_epochs=pretrain_epochs,
            finetune_epochs=finetune_epochs,
            perturb_epochs=perturb_epochs,
            lr=lr,
            batch_size=batch_size,
            mask_ratio=mask_ratio,
            dropout=dropout,
            corpus=list(corpus),
            **kwargs,
        )
        self.checkpoint_path = checkpoint_setting(checkpoint, "SCGPT_CHECKPOINT")
        q = self.quick
        self.architecture = dict(architecture or (QUICK_ARCH if q else WHOLE_HUMAN_ARCH))
        self._max_seq_len_set = max_seq_len is not None or q
        self.max_seq_len = int(max_seq_len or (256 if q else 1200))
        self.pretrain_epochs = int(pretrain_epochs if pretrain_epochs is not None else (1 if q else 10))
        self.finetune_epochs = finetune_epochs
        self.perturb_epochs = int(perturb_epochs if perturb_epochs is not None else (2 if q else 15))
        self.lr = float(lr if lr is not None else (1e-4 if self.checkpoint_path is not None else 1e-3))
        self.batch_size, self.mask_ratio, self.dropout = int(batch_size), float(mask_ratio), float(dropout)
        self.corpus = tuple(corpus)
        self.vocab_: Any = None
        self.args_: dict[str, Any] = {}
        self.base_: Any = None
        self.classifier_: Any = None
        self.labels_: np.ndarray | None = None
        self.generator_: Any = None
        self.gen_genes_: list[str] = []
        self.gen_var_names_: pd.Index | None = None
        self.coverage_: dict[str, float] = {}

    # -- provenance ----------------------------------------------------------------------
    def checkpoint_weights(self) -> Path:
        """ScGPT's ``best_model.pt``."""
        assert self.checkpoint_path is not None
        return self.checkpoint_path / "best_model.pt"

    def extra_metrics(self) -> dict[str, float]:
        """Return gene coverage of the last inputs and the final training loss."""
        out = dict(self.coverage_)
        if "final_gep_loss" in self.params:
            out["final_gep_loss"] = float(self.params["final_gep_loss"])
        return out

    # -- vocabulary and models ---------------------------------------------------------------
    def gene_vocabulary(self) -> GeneVocabulary:
        """The gene symbols scGPT knows (the checkpoint's ``vocab.json``, else the census vocabulary).

        Read from the JSON file only: scgpt is not imported and no model is built.
        """
        if self.checkpoint_path is not None:
            path = self.checkpoint_path / "vocab.json"
            with open(path) as fh:
                return GeneVocabulary(frozenset(map(str, json.load(fh))), "symbol", str(path), 0.2)
        return GeneVocabulary.from_card("scgpt_vocab", "default_census_vocab.json", min_coverage=0.2)

    def vocab(self) -> Any:
        """Return scGPT's ``GeneVocab`` (the checkpoint's, else the census vocabulary)."""
        if self.vocab_ is None:
            scgpt = _scgpt()
            if self.checkpoint_path is not None:
                path = self.checkpoint_path / "vocab.json"
                try:
                    with open(self.checkpoint_path / "args.json") as fh:
                        self.args_ = json.load(fh)
                except (OSError, ValueError) as exc:
                    raise InputError(
                        f"{self.checkpoint_path / 'args.json'}: cannot read the scGPT args.json ({exc}); "
                        "pass the release directory (args.json, vocab.json, best_model.pt)"
                    ) from exc
                self.params["release"] = release_name(self.checkpoint_path)
                if not self._max_seq_len_set:  # the released model's own input length
                    self.max_seq_len = int(self.args_.get("max_seq_len", self.max_seq_len))
            else:
                path = resource_path("scgpt_vocab", "default_census_vocab.json")
                self.args_ = self._scratch_args()
            vocab = scgpt.tokenizer.GeneVocab.from_file(path)
            for s in (PAD, CLS_TOKEN, EOC):
                if s not in vocab:
                    vocab.append_token(s)
            vocab.set_default_index(vocab[PAD])
            self.vocab_ = vocab
        return self.vocab_

    def _scratch_args(self) -> dict[str, Any]:
        """Return an ``args.json`` like the released models' for a model trained here."""
        return {
            **self.architecture,
            "n_layers_cls": 3,
            "dropout": self.dropout,
            "pad_token": PAD,
            "pad_value": -2,
            "mask_value": -1,
            "n_bins": 51,
            "input_emb_style": "continuous",
            "max_seq_len": self.max_seq_len,
            "MVC": True,
            "mask_ratio": [self.mask_ratio],
        }

    def _model_kwargs(self) -> dict[str, Any]:
        a = self.args_
        return {
            "ntoken": len(self.vocab()),
            "d_model": a["embsize"],
            "nhead": a["nheads"],
            "d_hid": a["d_hid"],
            "nlayers": a["nlayers"],
            "nlayers_cls": a.get("n_layers_cls", 3),
            "vocab": self.vocab(),
            "dropout": a.get("dropout", 0.2),
            "pad_token": a.get("pad_token", PAD),
            "pad_value": a.get("pad_value", -2),
            "use_fast_transformer": False,
        }

    def new_base(self) -> Any:
        """Return a fresh ``TransformerModel`` shaped like ``args.json``."""
        scgpt = _scgpt()
        import torch

        torch.manual_seed(self.seed)
        self.vocab()
        return scgpt.model.TransformerModel(
            **self._model_kwargs(),
            n_cls=1,
            do_mvc=True,
            do_dab=False,
            use_batch_labels=False,
            domain_spec_batchnorm=False,
            input_emb_style="continuous",
            cell_emb_style="cls",
            explicit_zero_prob=False,
            pre_norm=False,
        )

    def _load_into(self, model: Any, state: dict[str, Any], what: str) -> Any:
        """Load a released state dict as ``scgpt.utils.load_pretrained`` does, but refuse gaps.

        Every core parameter (gene encoder, value encoder, transformer) must be present with
        the shape ``args.json`` + ``vocab.json`` give; the first missing or mis-shaped one is
        named (a vocabulary of another size shows as ``encoder.embedding.weight``).
        """
        scgpt = _scgpt()
        own = model.state_dict()
        renamed = {k.replace("Wqkv.", "in_proj_"): v for k, v in state.items()}
        core = [k for k in own if k.startswith(("encoder.", "value_encoder.", "transformer_encoder."))]
        for k in core:
            if k not in renamed:
                raise InputError(
                    f"scgpt: {what} lacks parameter {k!r} that the model of args.json has; "
                    "check that args.json, vocab.json and best_model.pt belong together"
                )
            if tuple(renamed[k].shape) != tuple(own[k].shape):
                raise InputError(
                    f"scgpt: {what} parameter {k!r} has shape {tuple(renamed[k].shape)}, the model "
                    f"of args.json + vocab.json ({len(self.vocab())} tokens) expects "
                    f"{tuple(own[k].shape)}; check that args.json, vocab.json and best_model.pt "
                    "belong together"
                )
        scgpt.utils.load_pretrained(model, state, verbose=False)
        return model

    def base(self, tokens: list[tuple[np.ndarray, np.ndarray]] | None = None) -> Any:
        """Return the base ``TransformerModel`` (loaded, or trained from scratch on ``tokens``)."""
        if self.base_ is None:
            if self.checkpoint_path is not None:  # the file is checked before a model is built
                state = load_state_dict(self.checkpoint_weights(), "scGPT best_model.pt")
                self.base_ = self._load_into(self.new_base(), state, str(self.checkpoint_weights())).eval()
            else:
                if tokens is None:
                    tokens = self._corpus_tokens()
                self.base_ = self._train_gep(self.new_base(), tokens, self.pretrain_epochs)
        return self.base_

    # -- data ------------------------------------------------------------------------------
    def _gene_ids(self, adata: ad.AnnData, what: str) -> np.ndarray:
        vocab = self.vocab()
        symbols = var_gene_ids(adata, "symbol")
        ids = np.array([vocab[s] if s is not None and s in vocab else -1 for s in symbols])
        cov = Coverage(
            adata.n_vars,
            int((ids >= 0).sum()),
            [str(n) for n, i in zip(adata.var_names, ids, strict=True) if i < 0],
        )
        self.coverage_[f"gene_coverage_{what}"] = cov.fraction
        cov.check("scgpt", min_fraction=0.2, what="genes of the data")
        return ids

    def tokens(self, adata: ad.AnnData, what: str = "cells") -> list[tuple[np.ndarray, np.ndarray]]:
        """Return per cell the ``<cls>``-first gene ids and log-normalised values (non-zero)."""
        ids = self._gene_ids(adata, what)
        keep = ids >= 0
        X = sp.csr_matrix(log_normalized(adata).X)[:, np.flatnonzero(keep)]
        gids = ids[keep]
        cls_id, pad_value = self.vocab()[CLS_TOKEN], self.args_.get("pad_value", -2)
        out = []
        for r in range(X.shape[0]):
            lo, hi = X.indptr[r], X.indptr[r + 1]
            nz = X.data[lo:hi] != 0
            genes = np.concatenate([[cls_id], gids[X.indices[lo:hi][nz]]]).astype(np.int64)
            values = np.concatenate([[pad_value], X.data[lo:hi][nz]]).astype(np.float32)
            out.append((genes, values))
        return out

    def _collate(self, items: list[tuple[np.ndarray, np.ndarray]], mlm: bool) -> dict[str, Any]:
        scgpt = _scgpt()
        import torch

        collator = scgpt.DataCollator(
            do_padding=True,
            pad_token_id=self.vocab()[PAD],
            pad_value=self.args_.get("pad_value", -2),
            do_mlm=mlm,
            do_binning=True,
            mlm_probability=self.mask_ratio,
            mask_value=self.args_.get("mask_value", -1),
            max_length=self.max_seq_len,
            sampling=True,
            keep_first_n_tokens=1,
        )
        return collator(
            [{"genes": torch.as_tensor(g), "expressions": torch.as_tensor(v.copy())} for g, v in items]
        )

    def _corpus_tokens(self) -> list[tuple[np.ndarray, np.ndarray]]:
        from benchmarks.data.load import load_dataset

        out: list[tuple[np.ndarray, np.ndarray]] = []
        for name in self.corpus:
            _, adata = load_dataset(name)
            out += self.tokens(adata, what="corpus")
        self.params["pretrain_corpus"] = list(self.corpus)
        return out

    # -- training --------------------------------------------------------------------------
    def _train_gep(self, model: Any, items: list[tuple[np.ndarray, np.ndarray]], epochs: int) -> Any:
        """Train GEP + GEPC (MVC): masked-value MSE from the tokens and from the cell embedding."""
        scgpt = _scgpt()
        import torch

        rng = np.random.default_rng(self.seed)
        torch.manual_seed(self.seed)
        opt = torch.optim.Adam(model.parameters(), lr=self.lr)
        sched = torch.optim.lr_scheduler.StepLR(opt, 1, gamma=0.9)
        mask_value, pad_id = self.args_.get("mask_value", -1), self.vocab()[PAD]
        loss_val = float("nan")
        model.train()
        shown_step = 0
        device = next(model.parameters()).device
        with progress_task("scGPT training (GEP + GEPC)",
                           epochs * -(-len(items) // self.batch_size)) as shown, deterministic_cpu(device):
            for _ in range(epochs):
                order = rng.permutation(len(items))
                for s in range(0, len(items), self.batch_size):
                    batch = self._collate([items[i] for i in order[s : s + self.batch_size]], True)
                    genes, target, inputs = batch["gene"], batch["expr"], batch["masked_expr"]
                    masked = inputs.eq(mask_value)
                    if not masked.any():
                        continue
                    out = model(genes, inputs, src_key_padding_mask=genes.eq(pad_id), MVC=True)
                    loss = scgpt.loss.masked_mse_loss(out["mlm_output"], target, masked)
                    loss = loss + scgpt.loss.masked_mse_loss(out["mvc_output"], target, masked)
                    opt.zero_grad()
                    loss.backward()
                    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                    opt.step()
                    loss_val = float(loss.detach())
                    shown_step += 1
                    shown.update(shown_step, f"loss {loss_val:.4f}")
                sched.step()
        self.params["final_gep_loss"] = loss_val
        return model.eval()

    # -- gene / cell embeddings ----------------------------------------------------------------
    def fit(self, adata: ad.AnnData, batch_key: str | None = None) -> None:
        """Train from scratch on ``adata`` (with a checkpoint: ``finetune_epochs`` of GEP+GEPC)."""
        items = self.tokens(adata)
        if self.checkpoint_path is None and self.base_ is None:
            self.base(items)
            return
        base = self.base()
        epochs = int(self.finetune_epochs or 0)
        if epochs > 0:
            self.base_ = self._train_gep(base, items, epochs)

    def _current(self) -> Any:
        return self.classifier_ if self.classifier_ is not None else self.base()

    def embed_cells(self, adata: ad.AnnData) -> np.ndarray:
        """Return the L2-normalised ``<cls>`` embeddings (scGPT's ``embed_data`` recipe)."""
        import torch

        items = self.tokens(adata)
        if self.base_ is None and self.classifier_ is None:
            self.base(items if self.checkpoint_path is None else None)
        model = self._current().eval()
        torch.manual_seed(self.seed)
        np.random.seed(self.seed)
        pad_id = self.vocab()[PAD]
        out = np.zeros((len(items), self.args_["embsize"]), np.float32)
        with torch.no_grad():
            for s in range(0, len(items), self.batch_size):
                batch = self._collate(items[s : s + self.batch_size], False)
                genes = batch["gene"]
                emb = model._encode(genes, batch["expr"], src_key_padding_mask=genes.eq(pad_id))
                out[s : s + len(genes)] = emb[:, 0, :].numpy()
        norm = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.where(norm > 0, norm, 1)

    def embed_genes(self, genes: Sequence[str], id_type: str = "symbol") -> pd.DataFrame:
        """Return ``model.encoder(gene_ids)`` for the genes in scGPT's vocabulary."""
        import torch

        vocab = self.vocab()
        names = [str(g) for g in genes]
        symbols = default_mapper().to_symbol(names) if id_type == "ensembl" else names
        keep = [(n, s) for n, s in zip(names, symbols, strict=True) if s is not None and s in vocab]
        self.coverage_["gene_coverage"] = len(keep) / len(names) if names else 0.0
        model = self._current()
        with torch.no_grad():
            ids = torch.as_tensor([vocab[s] for _, s in keep], dtype=torch.long)
            emb = (
                model.encoder(ids.unsqueeze(0))[0].numpy()
                if keep
                else np.zeros((0, self.args_["embsize"]), np.float32)
            )
        return pd.DataFrame(emb, index=pd.Index([n for n, _ in keep], name="gene"))

    # -- annotation ------------------------------------------------------------------------
    def fit_classifier(self, reference: ad.AnnData, label_key: str) -> None:
        """Fine-tune ``TransformerModel(n_cls=…)`` from the base weights with the CLS loss."""
        scgpt = _scgpt()
        import torch

        items = self.tokens(reference)
        base = self.base(items if self.checkpoint_path is None else None)
        self.labels_, y = np.unique(reference.obs[label_key].astype(str).to_numpy(), return_inverse=True)
        torch.manual_seed(self.seed)
        clf = scgpt.model.TransformerModel(
            **self._model_kwargs(),
            n_cls=len(self.labels_),
            do_mvc=False,
            do_dab=False,
            use_batch_labels=False,
            domain_spec_batchnorm=False,
            input_emb_style="continuous",
            cell_emb_style="cls",
            explicit_zero_prob=False,
            pre_norm=False,
        )
        state = {k: v for k, v in base.state_dict().items() if not k.startswith("cls_decoder")}
        scgpt.utils.load_pretrained(clf, state, verbose=False)
        epochs = int(self.finetune_epochs if self.finetune_epochs is not None else (2 if self.quick else 10))
        opt = torch.optim.Adam(clf.parameters(), lr=self.lr)
        rng = np.random.default_rng(self.seed)
        pad_id = self.vocab()[PAD]
        clf.train()
        shown_step = 0
        device = next(clf.parameters()).device
        with progress_task("scGPT fine-tuning (classifier)",
                           epochs * -(-len(items) // self.batch_size)) as shown, deterministic_cpu(device):
            for _ in range(epochs):
                order = rng.permutation(len(items))
                for s in range(0, len(items), self.batch_size):
                    idx = order[s : s + self.batch_size]
                    batch = self._collate([items[i] for i in idx], False)
                    genes = batch["gene"]
                    out = clf(genes, batch["expr"], src_key_padding_mask=genes.eq(pad_id), CLS=True)
                    loss = torch.nn.functional.cross_entropy(
                        out["cls_output"], torch.as_tensor(y[idx], dtype=torch.long)
                    )
                    opt.zero_grad()
                    loss.backward()
                    torch.nn.utils.clip_grad_norm_(clf.parameters(), 1.0)
                    opt.step()
                    shown_step += 1
                    shown.update(shown_step, f"loss {float(loss.detach()):.4f}")
        self.classifier_ = clf.eval()

    def predict_labels(self, query: ad.AnnData) -> np.ndarray:
        """Predict reference labels for the query cells."""
        if self.classifier_ is None or self.labels_ is None:
            raise RuntimeError("ScGPTAdapter.predict_labels called before fit_classifier")
        import torch

        items = self.tokens(query)
        torch.manual_seed(self.seed)
        np.random.seed(self.seed)
        pad_id = self.vocab()[PAD]
        pred = np.zeros(len(items), np.int64)
        with torch.no_grad():
            for s in range(0, len(items), self.batch_size):
                batch = self._collate(items[s : s + self.batch_size], False)
                genes = batch["gene"]
                out = self.classifier_(genes, batch["expr"], src_key_padding_mask=genes.eq(pad_id), CLS=True)
                pred[s : s + len(genes)] = out["cls_output"].argmax(-1).numpy()
        return self.labels_[pred].astype(object)

    # -- perturbation and knockout (TransformerGenerator) -------------------------------------
    def _generator(self, genes: list[str], var_names: pd.Index) -> Any:
        scgpt = _scgpt()
        import torch

        base = self.base() if self.checkpoint_path is not None or self.base_ is not None else None
        torch.manual_seed(self.seed)
        self.vocab()
        gen = scgpt.model.TransformerGenerator(
            **self._model_kwargs(),
            n_cls=1,
            pert_pad_id=2,
            do_mvc=False,
            cell_emb_style="cls",
            explicit_zero_prob=False,
            pre_norm=False,
        )
        if base is not None:
            state = {
                k: v
                for k, v in base.state_dict().items()
                if k.startswith(("encoder.", "value_encoder.", "transformer_encoder."))
            }
            scgpt.utils.load_pretrained(gen, state, verbose=False)
        self.gen_genes_, self.gen_var_names_ = genes, var_names
        return gen

    def _pert_inputs(self, X: np.ndarray, perts: Sequence[Sequence[str]]) -> tuple[Any, ...]:
        """Return gene ids, values and flags for rows of ``X`` with their perturbed genes."""
        import torch

        vocab = self.vocab()
        base_ids = np.array([vocab[g] if g in vocab else vocab[PAD] for g in self.gen_genes_])
        extra = sorted({g for p in perts for g in p if g not in self.gen_genes_ and g in vocab})
        ids = np.concatenate([base_ids, [vocab[g] for g in extra]]).astype(np.int64)
        names = list(self.gen_genes_) + extra
        pos = {g: i for i, g in enumerate(names)}
        values = np.zeros((len(X), len(names)), np.float32)
        values[:, : X.shape[1]] = X
        flags = np.zeros((len(X), len(names)), np.int64)
        for r, p in enumerate(perts):
            for g in p:
                if g in pos:
                    flags[r, pos[g]] = 1
        src = torch.as_tensor(np.tile(ids, (len(X), 1)))
        return src, torch.as_tensor(values), torch.as_tensor(flags), src.eq(vocab[PAD])

    def _train_generator(self, gen: Any, X_in: np.ndarray, perts: list[list[str]], X_out: np.ndarray) -> Any:
        scgpt = _scgpt()
        import torch

        opt = torch.optim.Adam(gen.parameters(), lr=self.lr)
        sched = torch.optim.lr_scheduler.StepLR(opt, 1, gamma=0.9)
        rng = np.random.default_rng(self.seed)
        n_genes = X_out.shape[1]
        gen.train()
        shown_step = 0
        device = next(gen.parameters()).device
        total = self.perturb_epochs * -(-len(X_in) // self.batch_size)
        with progress_task("scGPT fine-tuning (perturbation)", total) as shown, deterministic_cpu(device):
            for _ in range(self.perturb_epochs):
                order = rng.permutation(len(X_in))
                for s in range(0, len(order), self.batch_size):
                    idx = order[s : s + self.batch_size]
                    src, values, flags, pad = self._pert_inputs(X_in[idx], [perts[i] for i in idx])
                    out = gen(
                        src, values, flags, src_key_padding_mask=pad, CLS=False, CCE=False, MVC=False,
                        ECS=False,
                    )
                    pred = out["mlm_output"][:, :n_genes]
                    target = torch.as_tensor(X_out[idx])
                    loss = scgpt.loss.masked_mse_loss(pred, target, ~pad[:, :n_genes])
                    opt.zero_grad()
                    loss.backward()
                    torch.nn.utils.clip_grad_norm_(gen.parameters(), 1.0)
                    opt.step()
                    shown_step += 1
                    shown.update(shown_step, f"loss {float(loss.detach()):.4f}")
                sched.step()
        return gen.eval()

    def _predict_generator(self, X_in: np.ndarray, perts: list[list[str]]) -> np.ndarray:
        import torch

        out = np.zeros((len(X_in), len(self.gen_genes_)), np.float32)
        with torch.no_grad():
            for s in range(0, len(X_in), self.batch_size):
                src, values, flags, pad = self._pert_inputs(
                    X_in[s : s + self.batch_size], perts[s : s + self.batch_size]
                )
                pred = self.generator_(
                    src, values, flags, src_key_padding_mask=pad, CLS=False, CCE=False, MVC=False, ECS=False
                )["mlm_output"]
                out[s : s + len(src)] = pred[:, : len(self.gen_genes_)].numpy()
        unknown = np.array([g not in self.vocab() for g in self.gen_genes_])
        out[:, unknown] = X_in[:, unknown]  # genes scGPT has no token for: no change predicted
        return out

    def _symbols(self, adata: ad.AnnData, what: str) -> list[str]:
        self._gene_ids(adata, what)  # records and checks coverage
        return [
            s if s is not None else str(v)
            for s, v in zip(var_gene_ids(adata, "symbol"), adata.var_names, strict=True)
        ]

    def fit_perturbation(self, train: ad.AnnData, condition_key: str = "condition") -> None:
        """Fine-tune a ``TransformerGenerator``: random control cell + flags → perturbed cell."""
        norm = log_normalized(train)
        X = _dense(norm.X)
        conds = train.obs[condition_key].astype(str).to_numpy()
        is_ctrl = np.array([not [g for g in c.split("+") if g and g != CTRL] for c in conds])
        if not is_ctrl.any():
            raise InputError(f"scgpt: no control cells (obs[{condition_key!r}] == 'ctrl')")
        if self.checkpoint_path is None and self.base_ is None:
            self.base(self.tokens(train))
        gen = self._generator(self._symbols(train, "cells"), train.var_names)
        rng = np.random.default_rng(self.seed)
        ctrl = X[is_ctrl]
        X_in = ctrl[rng.integers(0, len(ctrl), len(X))]
        perts = [[g for g in c.split("+") if g and g != CTRL] for c in conds]
        self.generator_ = self._train_generator(gen, X_in, perts, X)
        self._ctrl_ = ctrl

    def predict_perturbation(self, control: ad.AnnData, conditions: Sequence[str]) -> pd.DataFrame:
        """Return the mean predicted profile over the control cells for each condition."""
        if self.generator_ is None:
            raise RuntimeError("ScGPTAdapter.predict_perturbation called before fit_perturbation")
        ctrl = _dense(log_normalized(control[:, self.gen_var_names_]).X)
        rows = []
        for cond in conditions:
            genes = [g for g in str(cond).split("+") if g and g != CTRL]
            if not genes:
                rows.append(ctrl.mean(0))
                continue
            rows.append(self._predict_generator(ctrl, [genes] * len(ctrl)).mean(0))
        return pd.DataFrame(
            np.vstack(rows) if rows else np.zeros((0, len(self.gen_genes_))),
            index=pd.Index([str(c) for c in conditions], name="condition"),
            columns=self.gen_var_names_,
        )

    def fit_knockout(self, train: ad.AnnData, ko_key: str = "ko_gene") -> None:
        """Fine-tune a ``TransformerGenerator`` on (before + knocked-out gene → after) pairs."""
        for col in (ko_key, "pair_id", "state"):
            if col not in train.obs.columns:
                raise InputError(f"scgpt knockout: obs has no {col!r} column")
        norm = log_normalized(train)
        X = _dense(norm.X)
        obs = train.obs.reset_index(drop=True)
        before = obs[obs["state"] == "before"]
        after_pos = {
            p: i
            for i, p in zip(
                obs.index[obs["state"] == "after"], obs.loc[obs["state"] == "after", "pair_id"], strict=True
            )
        }
        idx_b = [i for i, p in zip(before.index, before["pair_id"], strict=True) if p in after_pos]
        idx_a = [after_pos[p] for p in before["pair_id"] if p in after_pos]
        if not idx_b:
            raise InputError("scgpt knockout: no (before, after) pair shares a pair_id")
        if self.checkpoint_path is None and self.base_ is None:
            self.base(self.tokens(train))
        gen = self._generator(self._symbols(train, "cells"), train.var_names)
        perts = [[str(obs.loc[i, ko_key])] for i in idx_b]
        self.generator_ = self._train_generator(gen, X[idx_b], perts, X[idx_a])

    def predict_knockout(self, before: ad.AnnData, ko_genes: Sequence[str]) -> np.ndarray:
        """Predict each profile after knocking out its gene (log-normalised scale)."""
        if self.generator_ is None:
            raise RuntimeError("ScGPTAdapter.predict_knockout called before fit_knockout")
        X = _dense(log_normalized(before[:, self.gen_var_names_]).X)
        return self._predict_generator(X, [[str(g)] for g in ko_genes])

    def save_pretrained(self, directory: str | Path) -> Path:
        """Write the base model in the released layout (args.json, vocab.json, best_model.pt)."""
        import torch

        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        base = self.base()
        (out / "args.json").write_text(json.dumps(self.args_, indent=2))
        self.vocab().save_json(out / "vocab.json")
        torch.save(copy.deepcopy(base.state_dict()), out / "best_model.pt")
        return out
