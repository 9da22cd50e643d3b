"""Annotation rows of a model that predicts one class are flagged in the results table."""

from __future__ import annotations

import numpy as np

from benchmarks.suites.annotation import annotation_metrics
from benchmarks.summary import COLLAPSE_NOTE, summarize


def _record(model: str, pred: np.ndarray, true: np.ndarray, seed: int, control: bool = False) -> dict:
    metrics, _ = annotation_metrics(true, pred, set(true))
    return {
        "suite": "annotation",
        "dataset": {"name": "pbmc68k_reduced"},
        "status": "FINISHED",
        "model": {"label": model, "init": "scratch", "is_control": control},
        "seed": seed,
        "metrics": metrics,
    }


def test_one_class_predictions_are_flagged_for_models_not_controls() -> None:
    true = np.array(["B", "T", "T", "NK", "T", "B"] * 10)
    constant = np.array(["T"] * 60)
    almost = constant.copy()
    almost[0] = "NK"  # 59 of 60 cells "T" (what scGPT --quick did: one stray prediction)
    varied = np.array(["B", "T", "NK", "NK", "T", "B"] * 10)
    records = [
        _record("scgpt", constant, true, 0),
        _record("scgpt", varied, true, 1),
        _record("geneformer", almost, true, 0),
        _record("pca-logreg", varied, true, 0),
        _record("majority", constant, true, 0, control=True),
    ]
    assert records[0]["metrics"]["predicted_classes"] == 1.0
    assert (
        records[2]["metrics"]["predicted_top_share"] > 0.95
        and records[2]["metrics"]["constant_accuracy"] == 0.5
    )
    rows = {r.model: r for r in summarize(records, ("accuracy",))}
    assert rows["scgpt"].reasons == [f"{COLLAPSE_NOTE}: 1/2 seeds"]
    assert rows["geneformer"].reasons == [f"{COLLAPSE_NOTE}: 1/1 seeds"]
    assert rows["pca-logreg"].reasons == [] and rows["majority"].reasons == []
