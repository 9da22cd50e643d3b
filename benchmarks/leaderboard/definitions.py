# ruff: noqa: E501  (definition texts are kept whole)
"""What the leaderboard shows and ranks, declared in one place.

* :data:`METRICS` — per suite, the columns of its tables in order: each metric's direction,
  whether it is **ranked** (quality metrics only; coverage and aggregates are shown, not
  ranked), a definition and its source.
* :data:`REFERENCES` — per suite, the negative and positive controls between which every ranked
  metric is scaled before averaging (Open Problems style, :mod:`.scaling`).
* :data:`UNRANKED_DATASETS` — datasets shown on the board but never ranked, with the reason.
* :data:`METHODS` — per model name, its library, paper and repository.

Model names are opaque strings everywhere else: a model without an entry in :data:`METHODS`
(a third-party adapter, an ``obsm:`` embedding) is listed with "no method card".
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

SCIB = "Luecken et al. 2022, Benchmarking atlas-level data integration in single-cell genomics, Nat. Methods 19:41 (scib 1.1)"
SCIB_URL = "https://doi.org/10.1038/s41592-021-01336-8"
BEELINE = "Pratapa et al. 2020, Benchmarking algorithms for gene regulatory network inference from single-cell transcriptomic data (BEELINE), Nat. Methods 17:147"
BEELINE_URL = "https://doi.org/10.1038/s41592-019-0690-6"
GEARS = "Roohani et al. 2024, Predicting transcriptional outcomes of novel multigene perturbations with GEARS, Nat. Biotechnol. 42:927 (gears.inference 0.1.2)"
GEARS_URL = "https://doi.org/10.1038/s41587-023-01905-6"
CGC = "Fang, Hu et al. 2024, Cell-Graph Compass: modeling single cells with graph structure foundation model, bioRxiv 2024.06.04.597354"
CGC_URL = "https://doi.org/10.1101/2024.06.04.597354"
GENEFORMER = "Theodoris et al. 2023, Transfer learning enables predictions in network biology (Geneformer), Nature 618:616"
GENEFORMER_URL = "https://doi.org/10.1038/s41586-023-06139-9"
SKLEARN_URL = "https://scikit-learn.org/stable/modules/model_evaluation.html"
OPEN_PROBLEMS_URL = "https://openproblems.bio/"


@dataclass(frozen=True)
class MetricDef:
    """One column of a suite's table."""

    name: str
    higher_is_better: bool
    ranked: bool
    definition: str
    source: str
    url: str = ""
    why_not_ranked: str = ""
    label: str = ""
    """Column title when it differs from ``name``."""

    @property
    def title(self) -> str:
        """The column title."""
        return self.label or self.name


@dataclass(frozen=True)
class References:
    """The controls a suite's ranked metrics are scaled between.

    ``negative``/``positive`` are model labels; when several of one kind ran on a dataset their
    mean is the reference. ``oracle`` gives, per metric, the value a perfect method scores by
    definition (e.g. the true labels: accuracy 1); it is the positive reference of suites that
    have no positive control method.
    """

    negative: tuple[str, ...]
    positive: tuple[str, ...] = ()
    oracle: Mapping[str, float] = field(default_factory=dict)
    oracle_label: str = ""

    def describe(self) -> str:
        """One line for the site."""
        pos = ", ".join(self.positive) or ""
        if self.oracle:
            oracle = f"{self.oracle_label} ({', '.join(f'{m} = {v:g}' for m, v in self.oracle.items())})"
            pos = f"{pos}; otherwise {oracle}" if pos else oracle
        return f"negative: {', '.join(self.negative)} · positive: {pos}"


COVERAGE_NOTE = "coverage describes how much of the task a model could see, not how well it did; shown beside the scores, never ranked"

_CLASSIF = "scikit-learn (precision_recall_fscore_support, average='macro', zero_division=0), as in the CGC and scGPT papers"

METRICS: dict[str, tuple[MetricDef, ...]] = {
    "annotation": (
        MetricDef(
            "accuracy",
            True,
            True,
            "Fraction of query cells given their true label; a cell whose label is absent from the reference always counts as wrong.",
            "scikit-learn accuracy_score",
            SKLEARN_URL,
        ),
        MetricDef(
            "precision_macro",
            True,
            True,
            "Precision per cell type, unweighted mean over the cell types of the seen query cells.",
            _CLASSIF,
            SKLEARN_URL,
        ),
        MetricDef(
            "recall_macro",
            True,
            True,
            "Recall per cell type, unweighted mean over the cell types of the seen query cells.",
            _CLASSIF,
            SKLEARN_URL,
        ),
        MetricDef(
            "f1_macro",
            True,
            True,
            "F1 per cell type (harmonic mean of precision and recall), unweighted mean over cell types.",
            _CLASSIF,
            SKLEARN_URL,
        ),
    ),
    "clustering": (
        MetricDef(
            "nmi",
            True,
            True,
            "Normalised mutual information between cell types and Leiden clusters of the embedding's 15-NN graph, at the resolution (0.1–2.0) that maximises NMI.",
            SCIB + ": scib.metrics.nmi",
            SCIB_URL,
        ),
        MetricDef(
            "ari",
            True,
            True,
            "Adjusted Rand index between cell types and the same Leiden clusters.",
            SCIB + ": scib.metrics.ari",
            SCIB_URL,
        ),
        MetricDef(
            "asw_label",
            True,
            True,
            "Average silhouette width of the cells by cell type, rescaled to [0, 1] ((s + 1) / 2): bio-conservation.",
            SCIB + ": scib.metrics.silhouette",
            SCIB_URL,
        ),
        MetricDef(
            "asw_batch",
            True,
            True,
            "Per cell type, 1 − |silhouette by batch|, averaged: 1 means batches fully mixed.",
            SCIB + ": scib.metrics.silhouette_batch",
            SCIB_URL,
        ),
        MetricDef(
            "graph_connectivity",
            True,
            True,
            "Per cell type, the share of its cells in the largest connected component of the kNN graph, averaged.",
            SCIB + ": scib.metrics.graph_connectivity",
            SCIB_URL,
        ),
        MetricDef(
            "overall",
            True,
            False,
            "The CGC paper's overall score: mean of NMI, ARI, ASW_batch and graph connectivity.",
            CGC,
            CGC_URL,
            "an average of ranked columns; ranking it too would count them twice",
            label="overall (paper)",
        ),
        MetricDef(
            "scib_overall",
            True,
            False,
            "scIB's overall score: 0.4 · mean(ASW_batch, graph connectivity) + 0.6 · mean(NMI, ARI, ASW_label).",
            SCIB,
            SCIB_URL,
            "an average of ranked columns; ranking it too would count them twice",
            label="overall (scIB)",
        ),
    ),
    "gene-classification": (
        MetricDef(
            "roc_auc",
            True,
            True,
            "ROC AUC of a random forest trained on the gene embeddings, mean over 5 stratified folds; 0.5 for an uninformative embedding.",
            GENEFORMER + " (label sets and protocol); scikit-learn roc_auc_score",
            GENEFORMER_URL,
        ),
        MetricDef(
            "coverage",
            True,
            False,
            "Fraction of the labelled genes the model embeds; missing genes are dropped from the classification.",
            "this harness",
            "",
            COVERAGE_NOTE,
        ),
    ),
    "grn": (
        MetricDef(
            "epr",
            True,
            True,
            "Early precision ratio: precision of the K top-scoring (TF, gene) pairs, K = number of true edges, divided by the network density (precision of a random ranking; 1 = random).",
            BEELINE,
            BEELINE_URL,
        ),
        MetricDef(
            "auprc_ratio",
            True,
            True,
            "Area under the precision-recall curve (average precision) divided by the network density (1 = random).",
            BEELINE + "; scikit-learn average_precision_score",
            BEELINE_URL,
        ),
        MetricDef(
            "program_coherence",
            True,
            True,
            "Gene-program mode: mean within-program Pearson correlation of gene expression minus that of random gene sets of the same sizes (0 = chance).",
            CGC + " (gene programs); this harness",
            CGC_URL,
        ),
        MetricDef(
            "coverage",
            True,
            False,
            "Fraction of the network's genes the model embeds; pairs with a missing gene score below every real score.",
            "this harness",
            "",
            COVERAGE_NOTE,
        ),
    ),
    "perturbation": (
        MetricDef(
            "mse_de",
            False,
            True,
            "Mean squared error between predicted and observed mean expression of a test condition on its top-20 differentially expressed genes, averaged over conditions.",
            GEARS + ": compute_metrics",
            GEARS_URL,
        ),
        MetricDef(
            "pearson_de",
            True,
            True,
            "Pearson r between predicted and observed mean expression on the top-20 DE genes, averaged over conditions.",
            GEARS + ": compute_metrics",
            GEARS_URL,
        ),
        MetricDef(
            "pearson_delta",
            True,
            True,
            "Pearson r between predicted and observed change versus control (mean − ctrl) over all genes; a constant prediction scores 0.",
            GEARS + ": deeper_analysis",
            GEARS_URL,
        ),
        MetricDef(
            "pearson_delta_de",
            True,
            True,
            "Pearson r of predicted vs observed change versus control on the top-20 DE genes.",
            GEARS + ": deeper_analysis",
            GEARS_URL,
        ),
        MetricDef(
            "frac_correct_direction_20",
            True,
            True,
            "Fraction of the top-20 DE genes whose predicted change has the observed sign.",
            GEARS + ": deeper_analysis",
            GEARS_URL,
        ),
    ),
    "bulk-knockout": (
        MetricDef(
            "mse",
            False,
            True,
            "Mean squared error of the predicted vs observed after-knockout profile (log values), per test pair, averaged.",
            CGC + " (bulk knockout task)",
            CGC_URL,
        ),
        MetricDef(
            "pearson",
            True,
            True,
            "Pearson r of the predicted vs observed after-knockout profile, averaged over test pairs.",
            CGC + " (bulk knockout task)",
            CGC_URL,
        ),
        MetricDef(
            "pearson_delta",
            True,
            True,
            "Pearson r of predicted vs observed change (after − before); a constant predicted change scores 0 (GEARS convention).",
            GEARS + " (definition); " + CGC,
            GEARS_URL,
        ),
        MetricDef(
            "accuracy_3class",
            True,
            True,
            "Accuracy of each (pair, gene)'s fold-change class: up (FC > 2), unchanged, down (FC < ½).",
            CGC + "; scikit-learn accuracy_score",
            CGC_URL,
        ),
        MetricDef(
            "f1_macro_3class",
            True,
            True,
            "Macro F1 over the same three fold-change classes.",
            CGC + "; scikit-learn f1_score(average='macro')",
            CGC_URL,
        ),
        MetricDef(
            "f1_macro_5class",
            True,
            True,
            "Macro F1 over five classes: up ×5, up ×2, none, down ×2, down ×5.",
            CGC + "; scikit-learn f1_score(average='macro')",
            CGC_URL,
        ),
    ),
}
"""Per suite, the table columns in order. Only ``ranked`` metrics enter ranks and scaled scores."""

REFERENCES: dict[str, References] = {
    "annotation": References(
        ("majority",),
        (),
        {"accuracy": 1.0, "precision_macro": 1.0, "recall_macro": 1.0, "f1_macro": 1.0},
        "the true labels",
    ),
    "clustering": References(("shuffled", "random"), ("pca",)),
    "gene-classification": References(("random",), (), {"roc_auc": 1.0}, "the true labels"),
    "grn": References(("random",), ("coexpression",)),
    "perturbation": References(("no-change",), ("linear",)),
    "bulk-knockout": References(("no-change",), ("train-mean-shift",)),
}
"""Per suite, the controls every ranked metric is scaled between (:func:`.scaling.scale`)."""

SCALING_RULE = (
    "Each ranked metric is scaled per dataset between the suite's controls, as Open Problems does: "
    "scaled = (x − neg) / (pos − neg), where neg and pos are the mean scores of the negative and the "
    "positive controls on that dataset (run with the same suite settings), so the negative control "
    "scores 0 and the positive 1 whatever the metric's direction; where the positive control scores "
    "worse than the negative one, the better of the two is 1. A model's score is the mean of its scaled "
    "ranked metrics; the overall rank orders the models by it. Metrics without both references on a "
    "dataset are left out of every model's score there."
)

UNRANKED_DATASETS: dict[str, str] = {
    "norman_subset": "50-cell fixture: its card says it is far too small for metrics (shown, never ranked)",
}
"""Datasets shown on the board but never ranked, with the reason."""


@dataclass(frozen=True)
class MethodCard:
    """Library, paper and repository of a model (what a reader needs to look it up)."""

    library: str
    packages: tuple[str, ...]
    """Distribution names whose versions (from the records' provenance) are shown."""
    paper: str
    url: str
    repository: str = ""
    shown_params: tuple[str, ...] = ()
    """Model parameters (``record.model.params``) whose values the site lists, e.g. the text model."""


METHODS: dict[str, MethodCard] = {
    "cgc": MethodCard(
        "cgc (this repository's re-implementation)",
        ("cgcbench", "torch", "torch-geometric"),
        CGC,
        CGC_URL,
        "https://github.com/epang-ucas/Cell-Graph-Compass",
    ),
    "scvi": MethodCard(
        "scvi-tools SCVI",
        ("scvi-tools",),
        "Lopez et al. 2018, Deep generative modeling for single-cell transcriptomics, Nat. Methods 15:1053",
        "https://doi.org/10.1038/s41592-018-0229-2",
        "https://github.com/scverse/scvi-tools",
    ),
    "scanvi": MethodCard(
        "scvi-tools SCANVI",
        ("scvi-tools",),
        "Xu et al. 2021, Probabilistic harmonization and annotation of single-cell transcriptomics data with deep generative models, Mol. Syst. Biol. 17:e9620",
        "https://doi.org/10.15252/msb.20209620",
        "https://github.com/scverse/scvi-tools",
    ),
    "scgpt": MethodCard(
        "scGPT",
        ("scgpt", "torch"),
        "Cui et al. 2024, scGPT: toward building a foundation model for single-cell multi-omics using generative AI, Nat. Methods 21:1470",
        "https://doi.org/10.1038/s41592-024-02201-0",
        "https://github.com/bowang-lab/scGPT",
    ),
    "geneformer": MethodCard(
        "Geneformer (transformers BertForMaskedLM)",
        ("transformers", "torch"),
        GENEFORMER,
        GENEFORMER_URL,
        "https://huggingface.co/ctheodoris/Geneformer",
    ),
    "gears": MethodCard(
        "GEARS (cell-gears)",
        ("cell-gears", "torch-geometric"),
        GEARS,
        GEARS_URL,
        "https://github.com/snap-stanford/GEARS",
    ),
    "gene2vec": MethodCard(
        "Gene2vec (gensim Word2Vec)",
        ("gensim",),
        "Du et al. 2019, Gene2vec: distributed representation of genes based on co-expression, BMC Genomics 20:82",
        "https://doi.org/10.1186/s12864-018-5370-x",
        "https://github.com/jingcheng-du/Gene2vec",
    ),
    "biobert": MethodCard(
        "gene-description text embeddings: BioBERT when its weights are supplied, else the sentence-transformers model all-MiniLM-L6-v2 (the model each run used is listed beside)",
        ("transformers", "sentence-transformers"),
        "Lee et al. 2020, BioBERT: a pre-trained biomedical language representation model, Bioinformatics 36:1234; fallback: Reimers & Gurevych 2019, Sentence-BERT, EMNLP (all-MiniLM-L6-v2)",
        "https://doi.org/10.1093/bioinformatics/btz682",
        "https://github.com/dmis-lab/biobert",
        ("text_model",),
    ),
    "pca-logreg": MethodCard(
        "scanpy PCA + scikit-learn LogisticRegression",
        ("scanpy", "scikit-learn"),
        "Pedregosa et al. 2011, Scikit-learn: machine learning in Python, JMLR 12:2825",
        "https://jmlr.org/papers/v12/pedregosa11a.html",
        "https://github.com/scikit-learn/scikit-learn",
    ),
    "pca": MethodCard(
        "scanpy PCA (control: no integration)",
        ("scanpy",),
        "Wolf et al. 2018, SCANPY: large-scale single-cell gene expression data analysis, Genome Biol. 19:15",
        "https://doi.org/10.1186/s13059-017-1382-0",
        "https://github.com/scverse/scanpy",
    ),
    "shuffled": MethodCard(
        "control: PCA embedding with rows shuffled (this harness)",
        ("cgcbench", "scanpy"),
        "scIB's shuffled-embedding negative control; " + SCIB,
        SCIB_URL,
    ),
    "random": MethodCard(
        "control: i.i.d. N(0, 1) vectors (this harness)",
        ("cgcbench", "numpy"),
        "negative control, as in Open Problems",
        OPEN_PROBLEMS_URL,
    ),
    "majority": MethodCard(
        "control: most frequent reference label (this harness)",
        ("cgcbench",),
        "negative control, as in Open Problems' label projection",
        OPEN_PROBLEMS_URL,
    ),
    "coexpression": MethodCard(
        "control: Pearson co-expression (this harness)",
        ("cgcbench", "numpy"),
        "co-expression baseline of " + BEELINE,
        BEELINE_URL,
    ),
    "no-change": MethodCard(
        "control: predicts no change (this harness)",
        ("cgcbench",),
        "Ahlmann-Eltze, Huber & Anders 2024, Deep learning-based predictions of gene perturbation effects do not yet outperform simple linear baselines, bioRxiv 2024.09.16.613342",
        "https://doi.org/10.1101/2024.09.16.613342",
    ),
    "train-mean": MethodCard(
        "control: mean of perturbed training cells (this harness)",
        ("cgcbench",),
        "Csendes et al. 2024, Benchmarking foundation cell models for post-perturbation RNA-seq prediction, bioRxiv 2024.09.30.615843",
        "https://doi.org/10.1101/2024.09.30.615843",
    ),
    "linear": MethodCard(
        "control: additive single-gene effects (this harness)",
        ("cgcbench",),
        "Ahlmann-Eltze, Huber & Anders 2024 (additive linear baseline), bioRxiv 2024.09.16.613342",
        "https://doi.org/10.1101/2024.09.16.613342",
    ),
    "train-mean-shift": MethodCard(
        "control: mean training shift (this harness)",
        ("cgcbench",),
        "mean-shift baseline of the CGC paper's bulk knockout task; " + CGC,
        CGC_URL,
    ),
}
"""Per registered model name (the part before ``:variant``)."""


def suite_metrics(suite: str) -> tuple[MetricDef, ...] | None:
    """The declared columns of ``suite``, or ``None`` for a suite without declarations."""
    return METRICS.get(suite)


def method_card(name: str) -> MethodCard | None:
    """The card of a model name (``cgc`` for ``cgc:no-graph``), or ``None``."""
    return METHODS.get(str(name).partition(":")[0])
