"""Plots the suites write as artifacts (matplotlib, non-interactive backend)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

NO_PLOTS_ENV = "CGCBENCH_NO_PLOTS"
"""Set (to anything non-empty) by ``cgcbench run --no-plots``: suites write no plot artifacts and
skip the work done only for a picture (UMAP coordinates, the query embedding of annotation)."""


def plots_enabled() -> bool:
    """Whether suites draw their plots (``False`` under ``--no-plots`` / ``CGCBENCH_NO_PLOTS``)."""
    return not os.environ.get(NO_PLOTS_ENV)


def confusion_matrix_plot(table: pd.DataFrame, path: Path, title: str, normalize: bool = True) -> Path:
    """Heat-map of a confusion table (rows: true labels, columns: predicted labels).

    Rows are normalised to fractions of each true label when ``normalize`` is set; the raw
    counts are written on the cells.
    """
    counts = table.to_numpy(dtype=float)
    shown = counts / np.clip(counts.sum(axis=1, keepdims=True), 1, None) if normalize else counts
    n_rows, n_cols = counts.shape
    fig, ax = plt.subplots(figsize=(1.0 + 0.55 * n_cols, 1.0 + 0.45 * n_rows), dpi=110)
    im = ax.imshow(shown, cmap="Blues", vmin=0, vmax=1 if normalize else None, aspect="auto")
    ax.set_xticks(range(n_cols), labels=[str(c) for c in table.columns], rotation=60, ha="right")
    ax.set_yticks(range(n_rows), labels=[str(r) for r in table.index])
    ax.set_xlabel("predicted label")
    ax.set_ylabel("true label")
    ax.set_title(title, fontsize=10)
    if n_rows * n_cols <= 900:
        for i in range(n_rows):
            for j in range(n_cols):
                if counts[i, j]:
                    colour = "white" if shown[i, j] > 0.6 else "black"
                    ax.text(
                        j,
                        i,
                        f"{int(counts[i, j])}",
                        ha="center",
                        va="center",
                        fontsize=6,
                        color=colour,
                    )
    fig.colorbar(im, ax=ax, fraction=0.04, label="fraction of true label" if normalize else "cells")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def category_palette(categories: Sequence[str]) -> dict[str, str]:
    """Colours for ``categories`` in scanpy's convention (what ``uns["<key>_colors"]`` holds).

    scanpy's default palettes: ``default_20`` up to 20 categories, ``default_28`` up to 28,
    ``default_102`` beyond (cycled past 102). Categories are sorted first, so the same set of
    names always gets the same colours.
    """
    from scanpy.plotting import palettes

    cats = sorted({str(c) for c in categories})
    n = len(cats)
    base = palettes.default_20 if n <= 20 else palettes.default_28 if n <= 28 else palettes.default_102
    return {c: base[i % len(base)] for i, c in enumerate(cats)}


def umap_figure(
    coords: np.ndarray,
    colours: dict[str, Sequence[str]],
    title: str,
    keys: dict[str, str] | None = None,
    subtitle: str = "",
) -> Figure:
    """The UMAP panels of :func:`umap_plot` as a matplotlib figure (not saved)."""
    keys = {name: keys.get(name, name) if keys else name for name in colours}
    members: dict[str, set[str]] = {}
    for name, labels in colours.items():
        members.setdefault(keys[name], set()).update(map(str, labels))
    palette = {key: category_palette(cats) for key, cats in members.items()}
    n_cats = max((len(c) for c in members.values()), default=1)
    ncol = max(1, int(np.ceil(n_cats / 20)))
    n = len(colours)
    fig, axes = plt.subplots(1, n, figsize=((4.4 + 1.4 * ncol) * n, 4.6), dpi=110, squeeze=False)
    for ax, (name, labels) in zip(axes[0], colours.items(), strict=True):
        labels = pd.Series([str(v) for v in labels])
        colour_of = palette[keys[name]]
        for cat in sorted(set(labels)):
            m = (labels == cat).to_numpy()
            ax.scatter(coords[m, 0], coords[m, 1], s=4, color=colour_of[cat], label=cat, linewidths=0)
        ax.set_title(f"{title} — {name}", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_xlabel("UMAP1")
        ax.set_ylabel("UMAP2")
        ax.legend(fontsize=6 if n_cats <= 20 else 5, markerscale=2.5, loc="center left",
                  bbox_to_anchor=(1, 0.5), frameon=False, ncol=ncol, handletextpad=0.2, columnspacing=0.6)
    if subtitle:
        fig.suptitle(subtitle, fontsize=9)
    fig.tight_layout()
    return fig


def umap_plot(
    coords: np.ndarray,
    colours: dict[str, Sequence[str]],
    path: Path,
    title: str,
    keys: dict[str, str] | None = None,
    subtitle: str = "",
) -> Path:
    """Side-by-side UMAP scatter plots, one panel per colouring (e.g. true / predicted label).

    Parameters
    ----------
    coords
        ``(n_cells, 2)`` UMAP coordinates.
    colours
        Panel name → one category per cell.
    path, title
        Where the PNG goes; the title of every panel (followed by the panel name).
    keys
        Panel name → categorical key. Panels of the same key share one palette (true and
        predicted labels: a cell type has the same colour in both); default: one key per panel.
    subtitle
        A line above the panels (the metric values).

    """
    fig = umap_figure(coords, colours, title, keys, subtitle)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, bbox_inches="tight")
    plt.close(fig)
    return path


def metrics_line(metrics: dict[str, float], names: Sequence[str]) -> str:
    """``"accuracy 0.838 · f1_macro 0.670"`` for the named metrics that are present."""
    return " · ".join(f"{n} {metrics[n]:.3f}" for n in names if metrics.get(n) is not None)


def umap_coordinates(embedding: np.ndarray, seed: int, n_neighbors: int = 15) -> np.ndarray:
    """2-D UMAP of an embedding, computed with scanpy (neighbours + umap), seeded."""
    import anndata as ad
    import scanpy as sc

    tmp = ad.AnnData(np.zeros((embedding.shape[0], 1), dtype=np.float32))
    tmp.obsm["X_emb"] = np.asarray(embedding, dtype=np.float32)
    sc.pp.neighbors(
        tmp,
        use_rep="X_emb",
        n_neighbors=min(n_neighbors, embedding.shape[0] - 1),
        random_state=seed,
    )
    sc.tl.umap(tmp, random_state=seed)
    return np.asarray(tmp.obsm["X_umap"])


def roc_curves_plot(
    curves: Sequence[tuple[np.ndarray, np.ndarray]], aucs: Sequence[float], path: Path, title: str
) -> Path:
    """ROC curve of each cross-validation fold, with the mean curve and the chance diagonal."""
    fig, ax = plt.subplots(figsize=(4.8, 4.4), dpi=110)
    grid = np.linspace(0, 1, 101)
    interp = []
    for i, ((fpr, tpr), auc) in enumerate(zip(curves, aucs, strict=True)):
        ax.plot(fpr, tpr, lw=1, alpha=0.45, label=f"fold {i + 1} (AUC {auc:.2f})")
        interp.append(np.interp(grid, fpr, tpr))
    ax.plot(
        grid,
        np.mean(interp, axis=0),
        lw=2.2,
        color="black",
        label=f"mean (AUC {np.mean(aucs):.2f} ± {np.std(aucs, ddof=1):.2f})",
    )
    ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=1, label="chance")
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=6, loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def precision_recall_plot(
    precision: np.ndarray, recall: np.ndarray, density: float, path: Path, title: str
) -> Path:
    """Precision-recall curve of edge scores against the random baseline (the edge density)."""
    fig, ax = plt.subplots(figsize=(4.8, 4.2), dpi=110)
    ax.plot(recall, precision, lw=1.5, label="model")
    ax.axhline(density, ls="--", color="grey", lw=1, label=f"random ({density:.3f})")
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_ylim(0, max(0.05, float(np.max(precision)) * 1.05))
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def heatmap_plot(table: pd.DataFrame, path: Path, title: str, cbar_label: str) -> Path:
    """A labelled heat-map of a numeric table (e.g. gene programs × cell types)."""
    n_rows, n_cols = table.shape
    fig, ax = plt.subplots(figsize=(1.5 + 0.5 * n_cols, 1.2 + 0.28 * n_rows), dpi=110)
    im = ax.imshow(
        table.to_numpy(dtype=float),
        cmap="RdBu_r",
        aspect="auto",
        vmin=-np.nanmax(np.abs(table.to_numpy(dtype=float))),
        vmax=np.nanmax(np.abs(table.to_numpy(dtype=float))),
    )
    ax.set_xticks(range(n_cols), labels=[str(c) for c in table.columns], rotation=60, ha="right")
    ax.set_yticks(range(n_rows), labels=[str(r) for r in table.index], fontsize=7)
    ax.set_title(title, fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.04, label=cbar_label)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
