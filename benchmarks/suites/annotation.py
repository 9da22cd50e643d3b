"""Cell-type annotation: train on a labelled reference, predict a disjoint query (SPEC §5.4).

Protocol
--------
* **Split** — the data set's declared reference/query split (card ``split_key`` with
  ``reference_values``/``query_values``), otherwise a seeded stratified split of the cells
  (``query_fraction``, default 0.3; labels with a single cell stay in the reference).
  ``unseen_labels`` removes the named labels from the reference, so every cell of them is in
  the query: they test how a model handles types it never saw.
* **QC** — cells with fewer than ``min_genes`` expressed genes are removed before splitting
  (``scanpy.pp.filter_cells``); zero cells left is an input error.
* **Metrics** (scikit-learn):

  - ``accuracy`` — micro accuracy over *all* query cells; a cell whose true label is absent
    from the reference is always counted wrong (a model can only output reference labels).
  - ``accuracy_seen`` — accuracy over query cells whose label is in the reference.
  - ``precision_macro``, ``recall_macro``, ``f1_macro`` — unweighted means over the labels of
    the seen query cells (``sklearn.metrics.precision_recall_fscore_support``,
    ``average="macro"``, ``zero_division=0``), as in the CGC/scGPT papers.
  - ``unseen_fraction`` — fraction of query cells with labels unseen in the reference.
  - ``predicted_classes`` — distinct labels predicted; ``predicted_top_share`` — share of the
    cells given the most predicted label; ``constant_accuracy`` — accuracy of always answering
    the query's most common label. A non-control row is flagged as collapsed in the results
    table when it predicts one class, or ≥ 95 % one class while no more accurate than that
    constant (+0.01).
* **Artifacts** — confusion matrix (true × predicted, unseen labels as extra rows), a
  predictions table, and, for adapters with cell embeddings, a UMAP of the query cells
  coloured by true and predicted label.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd
import scanpy as sc
from sklearn.metrics import accuracy_score, precision_recall_fscore_support
from sklearn.model_selection import train_test_split

from benchmarks.errors import InputError
from benchmarks.interface import (
    Artifact,
    Capabilities,
    ModelAdapter,
    Suite,
    SuiteResult,
    TaskData,
    TaskKind,
)
from benchmarks.plots import confusion_matrix_plot, metrics_line, plots_enabled, umap_coordinates, umap_plot


def stratified_split(labels: pd.Series, query_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices of a seeded stratified reference/query split; singleton labels stay in reference."""
    labels = labels.astype(str).reset_index(drop=True)
    counts = labels.value_counts()
    singletons = labels.isin(counts[counts < 2].index).to_numpy()
    idx = np.flatnonzero(~singletons)
    ref, query = train_test_split(idx, test_size=query_fraction, random_state=seed, stratify=labels.iloc[idx])
    ref = np.sort(np.concatenate([ref, np.flatnonzero(singletons)]))
    return ref, np.sort(query)


class AnnotationSuite(Suite):
    """Reference → query cell-type annotation with accuracy and macro P/R/F1."""

    name = "annotation"
    description = "Cell-type annotation of a query set from a labelled reference (SPEC §5.4)."
    required_kinds = frozenset({TaskKind.ANNOTATION})
    headline_metrics = ("accuracy", "precision_macro", "recall_macro", "f1_macro")
    higher_is_better = {m: True for m in headline_metrics}
    default_datasets = ("pbmc68k_reduced", "cbmc_citeseq_rna500")
    quick_datasets = ("pbmc68k_reduced",)
    controls = ("majority",)
    model_inputs = ("reference", "query")

    def __init__(self, *, quick: bool = False, options: dict[str, Any] | None = None) -> None:
        super().__init__(quick=quick, options=options)
        self.options.setdefault("query_fraction", 0.3)
        self.options.setdefault("min_genes", 10)
        self.options["unseen_labels"] = sorted(self.options.get("unseen_labels") or [])

    def prepare(self, adata: ad.AnnData | None, card: Any, seed: int) -> TaskData:
        """QC, then the declared or a seeded stratified reference/query split."""
        if adata is None:
            raise InputError(f"dataset {card.name} (kind {card.kind}) has no cells; annotation needs an h5ad")
        meta = adata.uns["cgcbench"]
        label_key = meta.get("label_key")
        where = meta["dataset"].get("path", card.name)
        if not label_key:
            raise InputError(
                f"{where}: dataset {card.name} declares no label key; pass --label-key with the "
                "obs column holding cell types"
            )
        n_before = adata.n_obs
        adata = adata.copy()
        sc.pp.filter_cells(adata, min_genes=int(self.options["min_genes"]))
        if adata.n_obs == 0:
            raise InputError(
                f"{where}: zero cells left after QC (min_genes={self.options['min_genes']}); check "
                "that X holds expression values, or lower the QC threshold"
            )
        labels = adata.obs[label_key].astype(str)
        unseen = self.options["unseen_labels"]
        missing = [u for u in unseen if u not in set(labels)]
        if missing:
            raise InputError(
                f"{where}: --unseen-label {', '.join(missing)} not among obs[{label_key!r}] values "
                f"({', '.join(sorted(set(labels))[:20])})"
            )
        split_key = meta.get("split_key")
        if split_key and meta.get("reference_values") and meta.get("query_values"):
            split = adata.obs[split_key].astype(str)
            ref_idx = np.flatnonzero(split.isin(meta["reference_values"]).to_numpy())
            query_idx = np.flatnonzero(split.isin(meta["query_values"]).to_numpy())
            split_kind = f"declared ({split_key})"
        else:
            ref_idx, query_idx = stratified_split(labels, float(self.options["query_fraction"]), seed)
            split_kind = "stratified"
        if unseen:
            held = labels.isin(unseen).to_numpy()
            query_idx = np.union1d(query_idx, np.flatnonzero(held))
            ref_idx = np.setdiff1d(ref_idx, np.flatnonzero(held))
        reference, query = adata[ref_idx].copy(), adata[query_idx].copy()
        if reference.n_obs == 0 or query.n_obs == 0:
            raise InputError(
                f"{where}: the split leaves {reference.n_obs} reference and {query.n_obs} query "
                "cells; both must be non-empty"
            )
        ref_labels = set(reference.obs[label_key].astype(str))
        query_labels = query.obs[label_key].astype(str)
        seen = query_labels.isin(ref_labels).to_numpy()
        if not seen.any():
            raise InputError(
                f"{where}: every query label is absent from the reference "
                f"({', '.join(sorted(set(query_labels)))}); annotation cannot be scored — "
                "check the split or --unseen-label"
            )
        params = {
            "label_key": label_key,
            "split": split_kind,
            "query_fraction": float(self.options["query_fraction"]),
            "min_genes": int(self.options["min_genes"]),
            "n_cells_removed_by_qc": int(n_before - adata.n_obs),
            "n_reference": int(reference.n_obs),
            "n_query": int(query.n_obs),
            "n_reference_labels": len(ref_labels),
            "unseen_labels": sorted(set(query_labels[~seen])),
            "n_unseen_query_cells": int((~seen).sum()),
        }
        return TaskData(
            dataset=meta["dataset"],
            payload={"reference": reference, "query": query, "label_key": label_key},
            params=params,
        )

    def run(self, adapter: ModelAdapter, task: TaskData, seed: int, workdir: Path) -> SuiteResult:
        """Fit the adapter's classifier on the reference and score its query predictions."""
        reference: ad.AnnData = task.payload["reference"]
        query: ad.AnnData = task.payload["query"]
        label_key: str = task.payload["label_key"]
        adapter.fit_classifier(reference, label_key)  # type: ignore[attr-defined]
        pred = np.asarray(adapter.predict_labels(query), dtype=object).astype(str)  # type: ignore[attr-defined]
        if pred.shape != (query.n_obs,):
            raise RuntimeError(
                f"{adapter.name}.predict_labels returned shape {pred.shape}, expected ({query.n_obs},)"
            )
        metrics, tables = annotation_metrics(
            query.obs[label_key].astype(str).to_numpy(),
            pred,
            set(reference.obs[label_key].astype(str)),
        )
        draw = plots_enabled()
        artifacts = [
            Artifact(
                confusion_matrix_plot(
                    tables["confusion"],
                    workdir / "confusion_matrix.png",
                    f"{adapter.info().label} on {task.dataset['name']} (seed {seed})",
                ),
                "plot",
                "confusion matrix of query predictions (rows: true labels)",
            )
        ] if draw else []
        pred_path = workdir / "predictions.csv"
        pd.DataFrame(
            {
                "cell": query.obs_names,
                "true": query.obs[label_key].astype(str).values,
                "predicted": pred,
            }
        ).to_csv(pred_path, index=False)
        artifacts.append(Artifact(pred_path, "table", "per-cell predictions"))
        caps: Capabilities = adapter.capabilities
        if draw and caps.supports(TaskKind.CELL_EMBEDDING) and query.n_obs >= 10:
            emb = np.asarray(adapter.embed_cells(query))  # type: ignore[attr-defined]
            coords = umap_coordinates(emb, seed)
            artifacts.append(
                Artifact(
                    umap_plot(
                        coords,
                        {
                            "true label": query.obs[label_key].astype(str).tolist(),
                            "predicted": pred.tolist(),
                        },
                        workdir / "umap_query.png",
                        adapter.info().label,
                        keys={"true label": "label", "predicted": "label"},
                        subtitle=f"{task.dataset['name']}, seed {seed}: "
                        + metrics_line(metrics, ("accuracy", "f1_macro")),
                    ),
                    "plot",
                    "UMAP of the query cells' embedding",
                )
            )
        return SuiteResult(metrics=metrics, artifacts=artifacts, tables=tables)


def _top_share(labels: np.ndarray) -> float:
    """Share of the most common label (0 for no labels)."""
    return float(pd.Series(labels).value_counts(normalize=True).iloc[0]) if len(labels) else 0.0


def annotation_metrics(
    true: np.ndarray, pred: np.ndarray, reference_labels: set[str]
) -> tuple[dict[str, float], dict[str, pd.DataFrame]]:
    """Compute the annotation metrics (see the module docstring) and the confusion table."""
    true = np.asarray(true, dtype=str)
    pred = np.asarray(pred, dtype=str)
    seen = np.isin(true, sorted(reference_labels))
    correct = (true == pred) & seen
    metrics = {
        "accuracy": float(correct.mean()),
        "accuracy_seen": float(accuracy_score(true[seen], pred[seen])),
        "unseen_fraction": float((~seen).mean()),
        "predicted_classes": float(len(set(pred))),
        "predicted_top_share": _top_share(pred),
        "constant_accuracy": _top_share(true),
    }
    seen_labels = sorted(set(true[seen]))
    p, r, f, _ = precision_recall_fscore_support(
        true[seen], pred[seen], labels=seen_labels, average="macro", zero_division=0
    )
    metrics |= {"precision_macro": float(p), "recall_macro": float(r), "f1_macro": float(f)}
    rows = seen_labels + sorted(set(true[~seen]))
    cols = sorted(set(pred) | set(seen_labels))
    confusion = pd.crosstab(pd.Categorical(true, rows), pd.Categorical(pred, cols), dropna=False)
    confusion.index.name, confusion.columns.name = "true", "predicted"
    return metrics, {"confusion": confusion}
