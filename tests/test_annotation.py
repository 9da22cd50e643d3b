"""The annotation suite: metrics against hand-computed values, controls, splits, determinism."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.data.load import UserKeys, load_dataset
from benchmarks.errors import InputError
from benchmarks.registry import build_model
from benchmarks.suites.annotation import AnnotationSuite, annotation_metrics


def test_metrics_hand_computed():
    true = np.array(["T", "T", "B", "B", "NK", "Mono"])
    pred = np.array(["T", "B", "B", "B", "T", "T"])
    metrics, tables = annotation_metrics(true, pred, {"T", "B", "NK"})  # Mono unseen
    assert metrics["accuracy"] == pytest.approx(3 / 6)
    assert metrics["accuracy_seen"] == pytest.approx(3 / 5)
    assert metrics["unseen_fraction"] == pytest.approx(1 / 6)
    # seen cells only (the Mono cell is excluded): precision B=2/3, NK=0 (never predicted),
    # T=1/2; recall B=1, NK=0, T=1/2
    assert metrics["precision_macro"] == pytest.approx((2 / 3 + 0 + 1 / 2) / 3)
    assert metrics["recall_macro"] == pytest.approx((1 + 0 + 0.5) / 3)
    f1 = [2 * (2 / 3) / (2 / 3 + 1), 0.0, 0.5]
    assert metrics["f1_macro"] == pytest.approx(np.mean(f1))
    conf = tables["confusion"]
    assert conf.loc["Mono", "T"] == 1 and conf.loc["T", "B"] == 1 and conf.to_numpy().sum() == 6


def test_unseen_cells_never_count_as_correct():
    true = np.array(["A", "X"])
    metrics, _ = annotation_metrics(true, np.array(["A", "X"]), {"A"})
    assert metrics["accuracy"] == 0.5


@pytest.fixture()
def pbmc_task(pbmc_user_file):
    card, adata = load_dataset(str(pbmc_user_file), UserKeys(label_key="cell_type"))
    return card, adata


def test_split_is_stratified_disjoint_and_seeded(pbmc_task):
    card, adata = pbmc_task
    suite = AnnotationSuite()
    t0, t0b, t1 = (
        suite.prepare(adata, card, 0),
        suite.prepare(adata, card, 0),
        suite.prepare(adata, card, 1),
    )
    ref, query = t0.payload["reference"], t0.payload["query"]
    assert set(ref.obs_names).isdisjoint(query.obs_names)
    assert ref.n_obs + query.n_obs == adata.n_obs
    assert list(query.obs_names) == list(t0b.payload["query"].obs_names)
    assert list(query.obs_names) != list(t1.payload["query"].obs_names)
    ref_share = ref.obs["cell_type"].value_counts(normalize=True)
    query_share = query.obs["cell_type"].value_counts(normalize=True)
    assert (ref_share - query_share).abs().max() < 0.03


def test_majority_and_pca_logreg_bound_each_other(pbmc_task, tmp_path):
    card, adata = pbmc_task
    suite = AnnotationSuite()
    task = suite.prepare(adata, card, 0)
    query_labels = task.payload["query"].obs["cell_type"]
    ref_top = task.payload["reference"].obs["cell_type"].value_counts().idxmax()
    maj = suite.run(build_model("majority", seed=0), task, 0, tmp_path / "maj")
    assert maj.metrics["accuracy"] == pytest.approx((query_labels == ref_top).mean())
    pca = suite.run(build_model("pca-logreg", seed=0), task, 0, tmp_path / "pca")
    assert pca.metrics["accuracy"] > 0.75
    assert pca.metrics["f1_macro"] > maj.metrics["f1_macro"] + 0.4
    assert {a.path.name for a in pca.artifacts} == {
        "confusion_matrix.png",
        "predictions.csv",
        "umap_query.png",
    }
    again = suite.run(build_model("pca-logreg", seed=0), task, 0, tmp_path / "pca2")
    assert again.metrics == pca.metrics


def test_unseen_label_goes_to_query_and_is_reported(pbmc_task, tmp_path):
    card, adata = pbmc_task
    suite = AnnotationSuite(options={"unseen_labels": ["Dendritic"]})
    task = suite.prepare(adata, card, 0)
    assert "Dendritic" not in set(task.payload["reference"].obs["cell_type"])
    n_dc = int((adata.obs["cell_type"] == "Dendritic").sum())
    assert task.params["n_unseen_query_cells"] == n_dc
    result = suite.run(build_model("pca-logreg", seed=0), task, 0, tmp_path)
    assert result.metrics["accuracy"] < result.metrics["accuracy_seen"]
    assert result.metrics["unseen_fraction"] == pytest.approx(n_dc / task.payload["query"].n_obs)


def test_unknown_unseen_label(pbmc_task):
    card, adata = pbmc_task
    with pytest.raises(InputError, match="--unseen-label Martian"):
        AnnotationSuite(options={"unseen_labels": ["Martian"]}).prepare(adata, card, 0)


def test_all_query_labels_unseen(tmp_path, pbmc68k_raw):
    """A declared split whose query holds only cell types the reference lacks cannot be scored."""
    from dataclasses import replace

    from benchmarks.data.load import card_for_user_file, load_anndata

    a = pbmc68k_raw.copy()
    a.obs["split"] = np.where(a.obs["bulk_labels"].str.startswith("CD14"), "query", "reference")
    path = tmp_path / "split.h5ad"
    a.write_h5ad(path)
    card = card_for_user_file(path, UserKeys(label_key="bulk_labels"))
    card = replace(
        card,
        anndata=replace(
            card.anndata,
            split_key="split",
            reference_values=("reference",),
            query_values=("query",),
        ),
    )
    adata = load_anndata(card, path=path)
    with pytest.raises(InputError, match="every query label is absent from the reference"):
        AnnotationSuite().prepare(adata, card, 0)


def test_zero_cells_after_qc(pbmc_task):
    card, adata = pbmc_task
    with pytest.raises(InputError, match="zero cells left after QC"):
        AnnotationSuite(options={"min_genes": 10_000}).prepare(adata, card, 0)
