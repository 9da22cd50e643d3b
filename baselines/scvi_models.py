"""``scvi`` and ``scanvi``: scvi-tools' :class:`~scvi.model.SCVI` and :class:`~scvi.model.SCANVI`.

Both models run on raw counts (they declare ``expression_kinds={"counts"}``, so the suites
record ``not_applicable`` on log-normalised data) restricted to the highly variable genes.

* ``scvi`` — a batch-aware SCVI fitted on the data to embed (``fit(adata, batch_key)``); the
  cell embedding is the posterior mean of the latent space. With ``checkpoint=`` (a directory
  written by ``SCVI.save``) the reference model is mapped onto the data with scArches
  (``SCVI.prepare_query_anndata`` + ``SCVI.load_query_data``) and, if ``query_epochs > 0``,
  fine-tuned with ``weight_decay=0`` as the scvi-tools reference-mapping tutorial does.
* ``scanvi`` — the scvi-tools label-transfer protocol ("scArches reference mapping with
  scANVI"): SCVI on the labelled reference → ``SCANVI.from_scvi_model`` (unlabelled category
  ``"Unknown"``) → the query is prepared and loaded with ``SCANVI.load_query_data``, trained
  without weight decay, and labelled by ``SCANVI.predict``. With ``checkpoint=`` (a directory
  written by ``SCANVI.save``) the supplied reference model replaces the reference training.

Settings marked *quick* shrink under ``quick=True``; the full-size defaults follow
scvi-tools (``max_epochs=None`` = its heuristic ``min(round(20000 / n_cells * 400), 400)``).
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd

from baselines.checkpoints import UserCheckpointMixin
from baselines.gene_ids import checkpoint_setting
from baselines.preprocessing import highly_variable_genes, log_normalized
from benchmarks.errors import InputError
from benchmarks.interface import (
    AnnotationMixin,
    Capabilities,
    CellEmbeddingMixin,
    ModelAdapter,
    TaskKind,
)

log = logging.getLogger(__name__)

UNLABELED = "Unknown"
QUICK = {"max_epochs": 5, "scanvi_epochs": 3, "query_epochs": 3, "n_hidden": 64}


def _scvi() -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import scvi

    logging.getLogger("scvi").setLevel(logging.WARNING)
    logging.getLogger("lightning").setLevel(logging.WARNING)
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    return scvi


def _weights_file(directory: Path) -> Path:
    """Return the ``model.pt`` (or ``<prefix>model.pt``) of a saved scvi-tools model."""
    if directory.is_file():
        return directory
    found = sorted(directory.glob("*model.pt"))
    if not found:
        raise InputError(
            f"{directory}: no model.pt; pass a directory written by scvi-tools' model.save()"
        )
    return found[0]


def _subset_genes(adata: ad.AnnData, genes: np.ndarray) -> ad.AnnData:
    sub = adata[:, genes].copy()
    sub.obs = sub.obs.copy()
    return sub


class _ScviBase(UserCheckpointMixin, ModelAdapter):
    """Settings and helpers shared by the scVI and scANVI adapters.

    Parameters
    ----------
    n_hvg
        Highly variable genes used (Seurat flavour on log-normalised counts).
    n_latent, n_hidden, n_layers
        SCVI architecture (scvi-tools defaults 10 / 128 / 1); *quick*: ``n_hidden=64``.
    gene_likelihood
        ``"zinb"`` (default), ``"nb"`` or ``"poisson"``.
    max_epochs
        SCVI training epochs; ``None`` = scvi-tools' heuristic. *quick*: 5.
    query_epochs
        Epochs of scArches query training after ``load_query_data`` (0 = map without
        training). *quick*: 3.
    batch_size
        Mini-batch size.
    checkpoint
        A directory written by ``model.save()`` (default ``$SCVI_CHECKPOINT`` /
        ``$SCANVI_CHECKPOINT``); makes ``init="pretrained"``.

    """

    env_var = "SCVI_CHECKPOINT"
    capabilities = Capabilities(task_kinds=frozenset({TaskKind.CELL_EMBEDDING}))
    requires = ("scvi",)
    install_hint = "pip install 'cgcbench[baselines]' (scvi-tools)"

    def __init__(
        self,
        *,
        n_hvg: int = 2000,
        n_latent: int = 10,
        n_hidden: int | None = None,
        n_layers: int = 1,
        gene_likelihood: str = "zinb",
        max_epochs: int | None = None,
        query_epochs: int | None = None,
        batch_size: int = 128,
        checkpoint: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            n_hvg=n_hvg, n_latent=n_latent, n_hidden=n_hidden, n_layers=n_layers,
            gene_likelihood=gene_likelihood, max_epochs=max_epochs, query_epochs=query_epochs,
            batch_size=batch_size, checkpoint=checkpoint, **kwargs,
        )
        self.n_hvg, self.n_latent, self.n_layers = int(n_hvg), int(n_latent), int(n_layers)
        self.n_hidden = int(n_hidden if n_hidden is not None else (
            QUICK["n_hidden"] if self.quick else 128))
        self.gene_likelihood = gene_likelihood
        self.max_epochs = max_epochs if max_epochs is not None else (
            QUICK["max_epochs"] if self.quick else None)
        self.query_epochs = int(query_epochs if query_epochs is not None else (
            QUICK["query_epochs"] if self.quick else 100))
        self.batch_size = int(batch_size)
        self.checkpoint_path = checkpoint_setting(checkpoint, self.env_var)
        self.genes_: np.ndarray | None = None
        self.batch_key_: str | None = None

    def checkpoint_weights(self) -> Path:
        """The scvi-tools directory's ``model.pt``."""
        assert self.checkpoint_path is not None
        return _weights_file(self.checkpoint_path)

    # -- helpers ---------------------------------------------------------------------------
    def _train_kwargs(self) -> dict[str, Any]:
        return {
            "batch_size": self.batch_size,
            "enable_progress_bar": False,
            "enable_model_summary": False,
            "enable_checkpointing": False,
            "log_every_n_steps": 1,
        }

    def _seed(self) -> Any:
        scvi = _scvi()
        scvi.settings.seed = self.seed
        return scvi

    def _select_genes(self, adata: ad.AnnData) -> np.ndarray:
        genes = highly_variable_genes(log_normalized(adata), self.n_hvg)
        return np.asarray(genes)

    def _batch_key(self, adata: ad.AnnData, batch_key: str | None) -> str | None:
        key = batch_key or adata.uns.get("cgcbench", {}).get("batch_key")
        if key is not None and key not in adata.obs.columns:
            raise InputError(f"batch_key {key!r} is not an obs column of the data")
        return key

    def _registry_keys(self, reference: Any) -> tuple[str | None, str | None]:
        """Return the (batch, labels) obs keys a reference model (or saved dir) was set up with."""
        scvi = _scvi()
        if isinstance(reference, str | Path):
            from benchmarks.weights_io import check_pickle_globals

            # scvi-tools reads model.pt with weights_only=False: scan its pickle first
            check_pickle_globals(_weights_file(Path(reference)), "scvi-tools model.pt")
            setup = scvi.model.SCANVI.load_registry(str(reference)).get("setup_args", {})
        else:
            setup = reference.adata_manager.registry.get("setup_args", {})
        return setup.get("batch_key"), setup.get("labels_key")

    def _as_query(self, adata: ad.AnnData, reference: Any, cls: Any) -> ad.AnnData:
        """Copy ``adata`` padded/ordered to the reference genes, its batch column filled."""
        query = adata.copy()
        if self.batch_key_ is not None and self.batch_key_ not in query.obs.columns:
            query.obs[self.batch_key_] = "query"
        ref_genes = pd.Index(cls.prepare_query_anndata(
            query, reference if not isinstance(reference, Path) else str(reference),
            return_reference_var_names=True))
        overlap = float(ref_genes.isin(query.var_names).mean())
        self.params["query_gene_overlap"] = overlap
        if overlap < 0.5:
            raise InputError(
                f"{self.name}: only {overlap:.0%} of the reference model's {len(ref_genes)} "
                "genes are in the data; check the gene-id type the model was trained on"
            )
        cls.prepare_query_anndata(
            query, reference if not isinstance(reference, Path) else str(reference))
        return query


class SCVIAdapter(_ScviBase, CellEmbeddingMixin):
    """scVI cell embeddings (scvi-tools ``SCVI``), batch-aware.

    Takes the settings of :class:`_ScviBase`; ``checkpoint`` defaults to ``$SCVI_CHECKPOINT``.
    """

    name = "scvi"
    description = "scvi-tools SCVI: batch-aware VAE on counts; latent mean as cell embedding."
    env_var = "SCVI_CHECKPOINT"
    capabilities = Capabilities(
        task_kinds=frozenset({TaskKind.CELL_EMBEDDING}),
        expression_kinds=frozenset({"counts"}),
    )

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.model_: Any = None
        self._fitted_on: ad.AnnData | None = None

    def fit(self, adata: ad.AnnData, batch_key: str | None = None) -> None:
        """Train SCVI on ``adata`` (or map ``adata`` onto the checkpoint's reference model)."""
        scvi = self._seed()
        if self.checkpoint_path is not None:
            self.batch_key_, _ = self._registry_keys(self.checkpoint_path)
            query = self._as_query(adata, self.checkpoint_path, scvi.model.SCVI)
            model = scvi.model.SCVI.load_query_data(query, str(self.checkpoint_path))
            if self.query_epochs > 0:
                model.train(max_epochs=self.query_epochs, plan_kwargs={"weight_decay": 0.0},
                            **self._train_kwargs())
            else:  # map with the reference weights as they are (no query fine-tuning)
                model.is_trained_ = True
            self.genes_ = np.asarray(model.adata.var_names)
        else:
            self.batch_key_ = self._batch_key(adata, batch_key)
            self.genes_ = self._select_genes(adata)
            query = _subset_genes(adata, self.genes_)
            scvi.model.SCVI.setup_anndata(query, batch_key=self.batch_key_)
            model = scvi.model.SCVI(
                query, n_latent=self.n_latent, n_hidden=self.n_hidden, n_layers=self.n_layers,
                gene_likelihood=self.gene_likelihood,
            )
            model.train(max_epochs=self.max_epochs, **self._train_kwargs())
            elbo = model.history.get("elbo_train")
            if elbo is not None and len(elbo):
                self.params["final_elbo_train"] = float(elbo.iloc[-1, 0])
        self.model_ = model
        self._fitted_on = adata

    def embed_cells(self, adata: ad.AnnData) -> np.ndarray:
        """Return the SCVI latent means of the cells (fits on ``adata`` first if needed)."""
        if self.model_ is None:
            self.fit(adata)
        if adata is self._fitted_on:
            return np.asarray(self.model_.get_latent_representation(), dtype=np.float32)
        query = self._as_query(adata, self.model_, _scvi().model.SCVI)
        return np.asarray(self.model_.get_latent_representation(query), dtype=np.float32)

    def extra_metrics(self) -> dict[str, float]:
        """Return the final training ELBO (when trained here)."""
        elbo = self.params.get("final_elbo_train")
        return {"final_elbo_train": float(elbo)} if elbo is not None else {}


class SCANVIAdapter(_ScviBase, AnnotationMixin, CellEmbeddingMixin):
    """scANVI label transfer (scvi-tools ``SCANVI`` initialised from an ``SCVI``).

    Parameters
    ----------
    scanvi_epochs
        SCANVI epochs on the reference after ``from_scvi_model`` (scvi-tools tutorial: 20).
        *quick*: 3.
    n_samples_per_label
        Labelled cells sampled per label and epoch for the classification loss.
    label_key
        Label column used when the adapter is asked for cell embeddings only (``fit``);
        defaults to the data set's label key. scANVI is label-informed: its embedding uses the
        cell-type labels, as in the scIB benchmarks.
    **kwargs
        The settings of :class:`_ScviBase`; ``checkpoint`` (default ``$SCANVI_CHECKPOINT``) is
        a directory written by ``SCANVI.save`` and replaces the reference training.

    """

    name = "scanvi"
    description = "scvi-tools SCANVI from a reference SCVI; scArches query mapping + predict."
    env_var = "SCANVI_CHECKPOINT"
    capabilities = Capabilities(
        task_kinds=frozenset({TaskKind.ANNOTATION, TaskKind.CELL_EMBEDDING}),
        expression_kinds=frozenset({"counts"}),
    )

    def __init__(
        self,
        *,
        scanvi_epochs: int | None = None,
        n_samples_per_label: int = 100,
        label_key: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            scanvi_epochs=scanvi_epochs, n_samples_per_label=n_samples_per_label,
            label_key=label_key, **kwargs,
        )
        self.scanvi_epochs = int(scanvi_epochs if scanvi_epochs is not None else (
            QUICK["scanvi_epochs"] if self.quick else 20))
        self.n_samples_per_label = int(n_samples_per_label)
        self.label_key = label_key
        self.reference_: Any = None
        self.query_model_: Any = None
        self._query_data: ad.AnnData | None = None
        self._ref_data: ad.AnnData | None = None

    def fit_classifier(self, reference: ad.AnnData, label_key: str) -> None:
        """Train SCVI then SCANVI on the labelled reference (with a checkpoint: use it)."""
        scvi = self._seed()
        self._ref_data = None
        if self.checkpoint_path is not None:
            self.reference_ = str(self.checkpoint_path)
            self.batch_key_, _ = self._registry_keys(self.checkpoint_path)
            return
        self.batch_key_ = self._batch_key(reference, None)
        self.genes_ = self._select_genes(reference)
        ref = _subset_genes(reference, self.genes_)
        ref.obs[label_key] = ref.obs[label_key].astype(str)
        scvi.model.SCVI.setup_anndata(ref, batch_key=self.batch_key_, labels_key=label_key)
        vae = scvi.model.SCVI(
            ref, n_latent=self.n_latent, n_hidden=self.n_hidden, n_layers=self.n_layers,
            gene_likelihood=self.gene_likelihood,
        )
        vae.train(max_epochs=self.max_epochs, **self._train_kwargs())
        model = scvi.model.SCANVI.from_scvi_model(vae, unlabeled_category=UNLABELED,
                                                 labels_key=label_key)
        model.train(max_epochs=self.scanvi_epochs, n_samples_per_label=self.n_samples_per_label,
                    **self._train_kwargs())
        self.reference_ = model
        self._ref_data = reference

    def _map_query(self, query: ad.AnnData) -> Any:
        """Load ``query`` into the reference model (scArches) and train it unless told not."""
        scvi = self._seed()
        _, labels_key = self._registry_keys(self.reference_)
        q = self._as_query(query, self.reference_, scvi.model.SCANVI)
        if labels_key is not None:
            q.obs[labels_key] = UNLABELED
        qmodel = scvi.model.SCANVI.load_query_data(q, self.reference_)
        if self.query_epochs > 0:
            qmodel.train(max_epochs=self.query_epochs, plan_kwargs={"weight_decay": 0.0},
                         check_val_every_n_epoch=10, **self._train_kwargs())
        else:  # map with the reference weights as they are (no query fine-tuning)
            qmodel.is_trained_ = True
        self.query_model_, self._query_data = qmodel, query
        return qmodel

    def predict_labels(self, query: ad.AnnData) -> np.ndarray:
        """Map the query onto the reference model (scArches) and predict its labels."""
        if self.reference_ is None:
            raise RuntimeError("SCANVIAdapter.predict_labels called before fit_classifier")
        qmodel = self._map_query(query)
        return np.asarray(qmodel.predict(), dtype=object)

    def fit(self, adata: ad.AnnData, batch_key: str | None = None) -> None:
        """Train SCVI → SCANVI on ``adata`` with its own labels (scANVI needs labels)."""
        key = self.label_key or adata.uns.get("cgcbench", {}).get("label_key")
        if key is None or key not in adata.obs.columns:
            raise InputError(
                "scanvi needs cell-type labels to fit; pass label_key= or use a data set with a "
                "label key"
            )
        self.params["embedding_label_key"] = key
        data = adata
        if batch_key is not None:
            data = adata.copy()
            data.uns["cgcbench"] = {**adata.uns.get("cgcbench", {}), "batch_key": batch_key}
        self.fit_classifier(data, key)
        if self.checkpoint_path is None:
            self._ref_data = adata

    def embed_cells(self, adata: ad.AnnData) -> np.ndarray:
        """Return the scANVI latent means (the query model's for mapped data)."""
        if self.reference_ is None:
            self.fit(adata)
        if adata is self._query_data and self.query_model_ is not None:
            return np.asarray(self.query_model_.get_latent_representation(), dtype=np.float32)
        if adata is self._ref_data and not isinstance(self.reference_, str):
            return np.asarray(self.reference_.get_latent_representation(), dtype=np.float32)
        qmodel = self._map_query(adata)
        return np.asarray(qmodel.get_latent_representation(), dtype=np.float32)
