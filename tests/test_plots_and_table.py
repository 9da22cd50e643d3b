"""UMAP panels share one palette per key, legends hold ~40 categories, metric values are in
the title; the results table keeps model and data-set names whole at 80 columns (issue 18)."""

from __future__ import annotations

import io

import matplotlib.colors as mcolors
import numpy as np
import pytest

from benchmarks.plots import category_palette, umap_figure


def _colours_by_label(ax) -> dict[str, str]:
    out = {}
    for coll in ax.collections:
        out[coll.get_label()] = mcolors.to_hex(coll.get_facecolor()[0])
    return out


def test_true_and_predicted_labels_get_the_same_colours(pbmc68k_raw):
    rng = np.random.default_rng(0)
    true = pbmc68k_raw.obs["bulk_labels"].astype(str).to_numpy()
    pred = true.copy()
    # a classifier that never predicts two of the types and confuses a third: the predicted
    # panel has fewer categories than the true one, which shifted every colour before
    cats = sorted(set(true))
    pred[np.isin(pred, cats[:2])] = cats[5]
    flip = rng.random(len(pred)) < 0.2
    pred[flip] = rng.choice(cats[3:], flip.sum())
    coords = rng.normal(size=(len(true), 2))
    fig = umap_figure(coords, {"true label": true, "predicted": pred}, "m",
                      keys={"true label": "label", "predicted": "label"}, subtitle="accuracy 0.800")
    left, right = (_colours_by_label(ax) for ax in fig.axes[:2])
    assert set(right) < set(left)
    for cat, colour in right.items():
        assert left[cat] == colour, cat
    assert len(set(left.values())) == len(left)  # distinct colours within a panel
    assert fig._suptitle.get_text() == "accuracy 0.800"


def test_legend_readable_with_forty_categories():
    labels = np.array([f"type {i:02d}" for i in range(40)] * 5)
    coords = np.random.default_rng(1).normal(size=(len(labels), 2))
    fig = umap_figure(coords, {"cell type": labels}, "m")
    legend = fig.axes[0].get_legend()
    assert legend is not None and len(legend.get_texts()) == 40
    palette = category_palette(labels)
    assert len(set(palette.values())) == 40  # scanpy's 102-colour palette: no repeats


def test_results_table_keeps_names_whole_at_80_columns():
    from rich.console import Console

    from benchmarks.cli import _results_table

    names = [("cbmc_citeseq_rna500", "cgc:-edge=coexpr"), ("pbmc68k_reduced", "pca-logreg"),
             ("pbmc68k_reduced", "majority")]
    records = []
    for ds, model in names:
        for seed in (0, 1, 2):
            records.append({
                "suite": "annotation", "dataset": {"name": ds}, "seed": seed, "status": "FINISHED",
                "model": {"label": model, "init": "scratch", "is_control": model == "majority"},
                "metrics": {m: 0.5 + 0.01 * seed for m in
                            ("accuracy", "precision_macro", "recall_macro", "f1_macro")},
            })
    records.append({  # a cell that failed before its adapter was built: no init known
        "suite": "annotation", "dataset": {"name": "pbmc68k_reduced"}, "seed": 0, "status": "FAILED",
        "model": {"label": "scgpt", "is_control": False}, "metrics": {},
        "error": {"type": "RuntimeError", "message": "checkpoint vocabulary mismatch\nsecond line"},
    })
    console = Console(width=80, file=io.StringIO(), record=True, color_system=None)
    metrics = ("accuracy", "precision_macro", "recall_macro", "f1_macro")
    console.print(_results_table(records, metrics, "annotation", 80))
    text = console.export_text()
    assert max(len(line) for line in text.splitlines()) <= 80
    for ds, model in names:
        assert any(ds in line for line in text.splitlines()), ds
        assert any(model in line for line in text.splitlines()), model
    assert "…" not in text
    assert "None" not in text and "unknown" in text
    flat = " ".join(line.strip("│ ") for line in text.splitlines())
    assert "checkpoint vocabulary" in flat and "second line" not in text


@pytest.mark.parametrize("n", [3, 25, 120])
def test_palette_is_stable_and_follows_scanpy(n):
    from scanpy.plotting import palettes

    cats = [f"c{i}" for i in range(n)]
    pal = category_palette(reversed(cats))
    assert pal == category_palette(cats)
    base = palettes.default_20 if n <= 20 else palettes.default_28 if n <= 28 else palettes.default_102
    assert pal[sorted(cats)[0]] == base[0]
