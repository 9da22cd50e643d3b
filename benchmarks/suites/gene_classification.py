"""Zero-shot gene classification from gene embeddings (SPEC §5.1, Geneformer's label sets).

Protocol
--------
* **Labels** — the six Geneformer gene-classification sets (dosage-sensitive vs -insensitive
  TFs; bivalent vs non-methylated; bivalent vs Lys4-only; long- vs short-range TFs; N1 network
  central vs peripheral; N1 targets vs non-targets). Each card's CSV has two rows: the class
  name and a Python-literal list of Ensembl ids. The first row is the positive class. A gene
  listed in both classes is removed (counted in ``n_genes_in_both_classes``).
* **Gene ids** — the labels are Ensembl ids; for a model working in gene symbols they are
  mapped with the NCBI gene table (``gene_info_hs``). Genes the model does not embed are
  dropped and reported: ``coverage`` (fraction of labelled genes embedded) and
  ``n_genes_used``; fewer than ``n_folds`` covered genes in a class fails the cell.
* **Classifier** — scikit-learn ``RandomForestClassifier`` (``n_estimators`` trees, seeded)
  on the raw embedding, evaluated by ``StratifiedKFold(n_folds, shuffle=True)``.
* **Metrics** — ``roc_auc``: mean over folds of ``sklearn.metrics.roc_auc_score`` on the
  held-out fold; ``roc_auc_fold_sd``: its standard deviation over folds;
  ``roc_auc_ci95_low`` / ``roc_auc_ci95_high``: a 95 % interval of the mean fold AUC by the
  corrected resampled t-test of Nadeau & Bengio (2003, *Machine Learning* 52:239), which
  inflates the fold variance by ``1/k + n_test/n_train`` because CV folds share training
  genes (the plain t-interval over folds is too narrow). A random embedding scores ≈ 0.5 and
  its interval contains 0.5; an embedding that encodes the label scores 1.
* **Artifacts** — ROC curves of every fold with the mean curve.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.ensemble import RandomForestClassifier
from sklearn.metrics import roc_auc_score, roc_curve
from sklearn.model_selection import StratifiedKFold

from benchmarks.data.fetch import resolve
from benchmarks.errors import InputError
from benchmarks.genes import embed_gene_list
from benchmarks.interface import Artifact, ModelAdapter, Suite, SuiteResult, TaskData, TaskKind
from benchmarks.plots import plots_enabled, roc_curves_plot

LABEL_SETS = (
    "dosage_sensitivity_tfs",
    "bivalent_vs_no_methyl",
    "bivalent_vs_lys4_only",
    "tf_regulatory_range",
    "n1_network",
    "n1_target",
)


def corrected_cv_interval(fold_scores: list[float], n: int, level: float = 0.95
                          ) -> tuple[float, float]:
    """Interval of the mean of k-fold CV scores by the corrected resampled t-test.

    Nadeau & Bengio (2003): the variance of the mean over ``k`` folds is
    ``(1/k + n_test/n_train) · s²`` rather than ``s²/k``, because the folds' training sets
    overlap; the interval uses Student's t with ``k - 1`` degrees of freedom.

    Parameters
    ----------
    fold_scores
        Score of every held-out fold (``k ≥ 2``).
    n
        Number of samples cross-validated (sets ``n_test/n_train = 1/(k-1)`` for equal folds).
    level
        Coverage of the interval.

    Returns
    -------
    tuple of float
        Lower and upper bounds.

    """
    from scipy import stats

    k = len(fold_scores)
    if k < 2 or n < k:
        raise ValueError(f"corrected_cv_interval: needs at least 2 folds and n >= k (k={k}, n={n})")
    mean = float(np.mean(fold_scores))
    sd = float(np.std(fold_scores, ddof=1))
    n_test = n / k
    se = sd * np.sqrt(1.0 / k + n_test / (n - n_test))
    half = float(stats.t.ppf(0.5 + level / 2, df=k - 1)) * se
    return mean - half, mean + half


def read_label_set(path: Path) -> tuple[list[str], list[list[str]]]:
    """Read a Geneformer label CSV: class names and their Ensembl-id lists."""
    table = pd.read_csv(path)
    if table.shape[1] != 2 or len(table) != 2:
        raise InputError(
            f"{path}: expected 2 rows × 2 columns (class name, list of Ensembl ids), got {table.shape}"
        )
    names, genes = [], []
    for _, row in table.iterrows():
        try:
            ids = ast.literal_eval(str(row.iloc[1]))
        except (ValueError, SyntaxError) as exc:
            raise InputError(f"{path}: class {row.iloc[0]!r} has no Python list of gene ids") from exc
        names.append(str(row.iloc[0]))
        genes.append([str(g).split(".")[0] for g in ids])
    return names, genes


class GeneClassificationSuite(Suite):
    """Random forest on gene embeddings, 5-fold CV ROC-AUC."""

    name = "gene-classification"
    description = "Zero-shot gene classification from gene embeddings (SPEC §5.1)."
    required_kinds = frozenset({TaskKind.GENE_EMBEDDING})
    headline_metrics = ("roc_auc", "coverage")
    higher_is_better = {"roc_auc": True, "coverage": True}
    default_datasets = LABEL_SETS
    quick_datasets = ("dosage_sensitivity_tfs",)
    controls = ("random",)

    def __init__(self, *, quick: bool = False, options: dict[str, Any] | None = None) -> None:
        super().__init__(quick=quick, options=options)
        self.options.setdefault("n_folds", 5)
        self.options.setdefault("n_estimators", 50 if quick else 200)

    def prepare(self, adata: Any, card: Any, seed: int) -> TaskData:
        """Read the label set of ``card`` (a ``gene_labels`` card)."""
        if card.kind != "gene_labels":
            raise InputError(
                f"dataset {card.name} is a {card.kind} set; gene-classification needs a gene_labels "
                f"card ({', '.join(LABEL_SETS)})"
            )
        path = next(iter(resolve(card).values()))
        names, genes = read_label_set(path)
        both = set(genes[0]) & set(genes[1])
        pos = sorted(set(genes[0]) - both)
        neg = sorted(set(genes[1]) - both)
        return TaskData(
            dataset=card.provenance(),
            payload={"genes": pos + neg, "labels": np.r_[np.ones(len(pos)), np.zeros(len(neg))]},
            params={
                "positive_class": names[0],
                "negative_class": names[1],
                "n_positive": len(pos),
                "n_negative": len(neg),
                "n_genes_in_both_classes": len(both),
                "gene_id_type": "ensembl",
            },
        )

    def run(self, adapter: ModelAdapter, task: TaskData, seed: int, workdir: Path) -> SuiteResult:
        """Embed the labelled genes and cross-validate a random forest on them."""
        genes: list[str] = task.payload["genes"]
        labels: np.ndarray = task.payload["labels"]
        emb, covered = embed_gene_list(adapter, genes, "ensembl")
        y = labels[covered]
        n_folds = int(self.options["n_folds"])
        per_class = np.bincount(y.astype(int), minlength=2)
        if per_class.min() < n_folds:
            raise RuntimeError(
                f"{adapter.info().label} embeds only {per_class[1]} positive and {per_class[0]} negative "
                f"genes of {task.dataset['name']}; {n_folds}-fold CV needs at least {n_folds} per class"
            )
        folds = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
        aucs, curves = [], []
        for fold, (train, test) in enumerate(folds.split(emb, y)):
            forest = RandomForestClassifier(
                n_estimators=int(self.options["n_estimators"]), random_state=seed + fold, n_jobs=1
            )
            forest.fit(emb[train], y[train])
            score = forest.predict_proba(emb[test])[:, 1]
            aucs.append(roc_auc_score(y[test], score))
            fpr, tpr, _ = roc_curve(y[test], score)
            curves.append((fpr, tpr))
        low, high = corrected_cv_interval(aucs, len(y))
        metrics = {
            "roc_auc": float(np.mean(aucs)),
            "roc_auc_fold_sd": float(np.std(aucs, ddof=1)),
            "roc_auc_ci95_low": low,
            "roc_auc_ci95_high": high,
            "coverage": float(covered.mean()),
            "n_genes_used": float(covered.sum()),
        }
        artifacts = [Artifact(roc_curves_plot(
            curves,
            aucs,
            workdir / "roc_curves.png",
            f"{adapter.info().label}: {task.params['positive_class']} vs {task.params['negative_class']}",
        ), "plot", "ROC curves of the CV folds")] if plots_enabled() else []
        return SuiteResult(
            metrics=metrics,
            artifacts=artifacts,
            params={"n_folds": n_folds, "fold_roc_auc": [float(a) for a in aucs]},
        )
