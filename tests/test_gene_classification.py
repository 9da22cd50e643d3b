"""gene-classification: label parsing, coverage, and the random / perfect bounds of ROC-AUC."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import pytest

from benchmarks.data.cards import get_card
from benchmarks.interface import Capabilities, GeneEmbeddingMixin, ModelAdapter, TaskKind
from benchmarks.registry import build_model
from benchmarks.suites.gene_classification import (
    GeneClassificationSuite,
    corrected_cv_interval,
    read_label_set,
)


class LabelOracle(ModelAdapter, GeneEmbeddingMixin):
    """A known-answer embedding: each gene's vector is its class (plus noise), i.e. perfect."""

    name = "oracle"
    capabilities = Capabilities(task_kinds=frozenset({TaskKind.GENE_EMBEDDING}), gene_id_type="ensembl")

    def __init__(self, positives: set[str], drop: set[str] = frozenset(), **kw):
        super().__init__(**kw)
        self.positives, self.drop = positives, drop

    def embed_genes(self, genes: Sequence[str], id_type: str = "symbol") -> pd.DataFrame:
        rng = np.random.default_rng(0)
        kept = [g for g in genes if g not in self.drop]
        label = np.array([[g in self.positives] for g in kept], dtype=float)
        return pd.DataFrame(np.hstack([label, rng.normal(size=(len(kept), 3))]), index=kept)


def test_label_file_parses(shared_data):
    names, genes = read_label_set(shared_data / "gene_classification" / "dosage_sensitivity_TFs.csv")
    assert names[0] == "Dosage-sensitive TFs" and len(genes[0]) == 122 and len(genes[1]) == 368
    assert all(g.startswith("ENSG") for g in genes[0] + genes[1])


@pytest.fixture(scope="module")
def dosage_task():
    return GeneClassificationSuite(quick=True).prepare(None, get_card("dosage_sensitivity_tfs"), 0)


def test_perfect_embedding_scores_one(dosage_task, tmp_path):
    genes, labels = dosage_task.payload["genes"], dosage_task.payload["labels"]
    pos = {g for g, y in zip(genes, labels, strict=True) if y == 1}
    result = GeneClassificationSuite(quick=True).run(LabelOracle(pos), dosage_task, 0, tmp_path)
    assert result.metrics["roc_auc"] == pytest.approx(1.0)
    assert result.metrics["coverage"] == 1.0
    assert (tmp_path / "roc_curves.png").stat().st_size > 1000


def test_random_embedding_is_at_chance(dosage_task, tmp_path):
    runs = [
        GeneClassificationSuite(quick=True)
        .run(build_model("random", seed=s), dosage_task, s, tmp_path / str(s))
        .metrics
        for s in range(3)
    ]
    assert abs(np.mean([m["roc_auc"] for m in runs]) - 0.5) < 0.08
    # the 95 % interval of a random embedding contains chance (it is not a one-sided bound)
    assert all(m["roc_auc_ci95_low"] < 0.5 < m["roc_auc_ci95_high"] for m in runs)


def test_corrected_interval_by_hand():
    """Nadeau-Bengio: se = sd·sqrt(1/k + n_test/n_train); t(0.975, 4) = 2.776445."""
    folds = [0.70, 0.80, 0.75, 0.65, 0.85]  # mean 0.75, sd 0.0790569
    low, high = corrected_cv_interval(folds, 100)
    half = 2.776445 * 0.0790569 * np.sqrt(1 / 5 + 20 / 80)
    assert (low, high) == pytest.approx((0.75 - half, 0.75 + half), abs=1e-5)
    # wider than the naive t-interval over folds, which ignores that folds share training data
    assert high - low > 2 * 2.776445 * 0.0790569 / np.sqrt(5)


def test_coverage_is_reported(dosage_task, tmp_path):
    genes, labels = dosage_task.payload["genes"], dosage_task.payload["labels"]
    pos = {g for g, y in zip(genes, labels, strict=True) if y == 1}
    dropped = set(genes[::4])
    result = GeneClassificationSuite(quick=True).run(LabelOracle(pos, dropped), dosage_task, 0, tmp_path)
    assert result.metrics["n_genes_used"] == len(genes) - len(dropped)
    assert result.metrics["coverage"] == pytest.approx(1 - len(dropped) / len(genes))


def test_too_few_genes_fails_the_cell(dosage_task, tmp_path):
    genes, labels = dosage_task.payload["genes"], dosage_task.payload["labels"]
    pos = {g for g, y in zip(genes, labels, strict=True) if y == 1}
    with pytest.raises(RuntimeError, match="5-fold CV needs at least 5 per class"):
        GeneClassificationSuite().run(LabelOracle(pos, pos), dosage_task, 0, tmp_path)
