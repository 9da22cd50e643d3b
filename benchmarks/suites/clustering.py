"""Batch correction and cell clustering from cell embeddings (SPEC §5.3), with scib's metrics.

Protocol
--------
* The adapter is fitted on the whole data set without labels (``fit(adata, batch_key)``: a
  self-supervised fine-tune, or nothing for zero-shot models), then embeds every cell.
* **Clusters** — Leiden on a 15-nearest-neighbour graph of the embedding at the resolution
  that maximises NMI, as in scib (``scib.metrics.cluster_optimal_resolution``, resolutions
  0.1…2.0).
* **Metrics** (scib 1.1, Luecken et al. 2022):

  - ``nmi`` — ``scib.metrics.nmi`` of Leiden clusters vs cell types;
  - ``ari`` — ``scib.metrics.ari`` of the same;
  - ``asw_label`` — ``scib.metrics.silhouette`` by cell type, scaled to [0, 1];
  - ``asw_batch`` — ``scib.metrics.silhouette_batch``: per cell type, 1 − |silhouette by
    batch|, averaged (1 = batches fully mixed);
  - ``graph_connectivity`` — ``scib.metrics.graph_connectivity``: per cell type, the share of
    its cells in the largest connected component of the kNN graph, averaged;
  - ``overall`` — mean of NMI, ARI, ASW_batch and graph connectivity (the CGC paper's overall);
  - ``scib_overall`` — scib's 0.4 · mean(ASW_batch, graph connectivity) + 0.6 · mean(NMI, ARI,
    ASW_label).
* **Controls** — ``pca`` (no integration: PCA of the log-normalised input) and ``shuffled``
  (the same embedding with rows permuted across cells: bio metrics at chance).
* **Artifacts** — UMAP of the embedding coloured by batch and by cell type.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from pathlib import Path
from typing import Any

import anndata as ad
import numpy as np
import scanpy as sc

from benchmarks.errors import CgcbenchError, InputError
from benchmarks.interface import Artifact, ModelAdapter, Suite, SuiteResult, TaskData, TaskKind
from benchmarks.plots import metrics_line, plots_enabled, umap_coordinates, umap_plot


def integration_metrics(
    embedding: np.ndarray, labels: np.ndarray, batches: np.ndarray, seed: int, n_neighbors: int = 15
) -> dict[str, float]:
    """Scib metrics of an embedding (see the module docstring)."""
    emb = ad.AnnData(np.zeros((len(labels), 1), dtype=np.float32))
    emb.obs["label"] = np.asarray(labels, dtype=str)
    emb.obs["batch"] = np.asarray(batches, dtype=str)
    emb.obs["label"] = emb.obs["label"].astype("category")
    emb.obs["batch"] = emb.obs["batch"].astype("category")
    emb.obsm["X_emb"] = np.asarray(embedding, dtype=np.float32)
    # scib prints a line per resolution to stdout and warns about pandas/leidenalg deprecations
    # it does not control: keep both out of the user's console
    # (record=True: scib's own filter changes cannot route them to the console either)
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        out = _scib_metrics(emb, seed, n_neighbors)
    for w in caught:  # anything else (not a deprecation notice) is passed on
        if not issubclass(w.category, (FutureWarning, DeprecationWarning)):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return out


def _scib_metrics(emb: ad.AnnData, seed: int, n_neighbors: int) -> dict[str, float]:
    import scib

    sc.pp.neighbors(emb, use_rep="X_emb", n_neighbors=n_neighbors, random_state=seed)
    scib.metrics.cluster_optimal_resolution(
        emb,
        label_key="label",
        cluster_key="cluster",
        use_rep="X_emb",
        force=True,
        verbose=False,
        resolutions=np.round(np.arange(0.1, 2.01, 0.1), 2).tolist(),
    )
    out = {
        "nmi": float(scib.metrics.nmi(emb, "cluster", "label")),
        "ari": float(scib.metrics.ari(emb, "cluster", "label")),
        "asw_label": float(scib.metrics.silhouette(emb, "label", "X_emb")),
        "graph_connectivity": float(scib.metrics.graph_connectivity(emb, "label")),
    }
    if emb.obs["batch"].nunique() > 1:
        out["asw_batch"] = float(scib.metrics.silhouette_batch(emb, "batch", "label", "X_emb", verbose=False))
        out["overall"] = float(np.mean([out["nmi"], out["ari"], out["asw_batch"], out["graph_connectivity"]]))
        batch_score = np.mean([out["asw_batch"], out["graph_connectivity"]])
        bio_score = np.mean([out["nmi"], out["ari"], out["asw_label"]])
        out["scib_overall"] = float(0.4 * batch_score + 0.6 * bio_score)
    return out


class ClusteringSuite(Suite):
    """Cell embeddings scored for biology conservation and batch mixing."""

    name = "clustering"
    description = "Batch correction / clustering of cell embeddings with scib metrics (SPEC §5.3)."
    required_kinds = frozenset({TaskKind.CELL_EMBEDDING})
    headline_metrics = ("nmi", "ari", "asw_batch", "graph_connectivity", "overall")
    higher_is_better = {m: True for m in (*headline_metrics, "asw_label", "scib_overall")}
    default_datasets = ("sergio_batches",)
    quick_datasets = ("sergio_batches",)
    controls = ("pca", "shuffled")
    model_inputs = ("adata",)

    def __init__(self, *, quick: bool = False, options: dict[str, Any] | None = None) -> None:
        super().__init__(quick=quick, options=options)
        self.options.setdefault("min_genes", 5)
        self.options.setdefault("n_neighbors", 15)

    def prepare(self, adata: ad.AnnData | None, card: Any, seed: int) -> TaskData:
        """QC; the data set must declare (or be given) a label key and a batch key."""
        if adata is None:
            raise InputError(f"dataset {card.name} (kind {card.kind}) has no cells; clustering needs an h5ad")
        try:
            import scib  # noqa: F401
        except ImportError as exc:
            raise CgcbenchError(
                f"the clustering suite computes its metrics with scib, which is not importable ({exc}); "
                "install it with pip install 'cgcbench[metrics]'"
            ) from exc
        meta = adata.uns["cgcbench"]
        where = meta["dataset"].get("path", card.name)
        label_key, batch_key = meta.get("label_key"), meta.get("batch_key")
        if not label_key:
            raise InputError(f"{where}: clustering needs cell types; pass --label-key")
        if not batch_key:
            raise InputError(f"{where}: clustering needs batches; pass --batch-key")
        n_before = adata.n_obs
        adata = adata.copy()
        sc.pp.filter_cells(adata, min_genes=int(self.options["min_genes"]))
        if adata.n_obs == 0:
            raise InputError(f"{where}: zero cells left after QC (min_genes={self.options['min_genes']})")
        return TaskData(
            dataset=meta["dataset"],
            payload={"adata": adata, "label_key": label_key, "batch_key": batch_key},
            params={
                "label_key": label_key,
                "batch_key": batch_key,
                "n_cells": int(adata.n_obs),
                "n_cells_removed_by_qc": int(n_before - adata.n_obs),
                "n_batches": int(adata.obs[batch_key].nunique()),
                "n_labels": int(adata.obs[label_key].nunique()),
            },
        )

    def run(self, adapter: ModelAdapter, task: TaskData, seed: int, workdir: Path) -> SuiteResult:
        """Fit, embed, score with scib, and plot the UMAP."""
        adata: ad.AnnData = task.payload["adata"]
        label_key, batch_key = task.payload["label_key"], task.payload["batch_key"]
        adapter.fit(adata, batch_key=batch_key)  # type: ignore[attr-defined]
        emb = np.asarray(adapter.embed_cells(adata), dtype=np.float32)  # type: ignore[attr-defined]
        if emb.shape[0] != adata.n_obs or not np.isfinite(emb).all():
            raise RuntimeError(f"{adapter.name}.embed_cells returned shape {emb.shape} or non-finite values")
        labels = adata.obs[label_key].astype(str).to_numpy()
        batches = adata.obs[batch_key].astype(str).to_numpy()
        metrics = integration_metrics(emb, labels, batches, seed, int(self.options["n_neighbors"]))
        artifacts = []
        if plots_enabled():
            plot = umap_plot(
                umap_coordinates(emb, seed),
                {"batch": batches.tolist(), "cell type": labels.tolist()},
                workdir / "umap.png",
                adapter.info().label,
                subtitle=f"{task.dataset['name']}, seed {seed}: "
                + metrics_line(metrics, ("nmi", "ari", "asw_batch", "graph_connectivity", "overall")),
            )
            artifacts.append(Artifact(plot, "plot", "UMAP by batch and cell type"))
        return SuiteResult(
            metrics=metrics,
            artifacts=artifacts,
            params={"embedding_dim": int(emb.shape[1])},
        )
