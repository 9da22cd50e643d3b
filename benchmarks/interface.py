"""The common task interface between suites and model adapters.

A suite never imports a model. It asks the registry for a :class:`ModelAdapter`, checks the
adapter's :class:`Capabilities` against what it needs (:meth:`Suite.requirement_gap`) and then
calls only the methods of the task kind it needs. Adapters implement the methods of the task
kinds they declare, as mixins (the scvi-tools pattern):

================  ==========================================  ================================
task kind         methods                                     used by
================  ==========================================  ================================
gene_embedding    ``embed_genes(genes) -> DataFrame``          gene-classification, grn
cell_embedding    ``fit(adata, batch_key)``, ``embed_cells``   clustering, annotation UMAPs
annotation        ``fit_classifier``, ``predict_labels``       annotation
perturbation      ``fit_perturbation``, ``predict_perturb…``   perturbation
bulk_knockout     ``fit_knockout``, ``predict_knockout``       bulk-knockout
================  ==========================================  ================================
"""

from __future__ import annotations

import abc
import enum
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from anndata import AnnData


class TaskKind(enum.StrEnum):
    """What an adapter can be asked to do."""

    GENE_EMBEDDING = "gene_embedding"
    CELL_EMBEDDING = "cell_embedding"
    ANNOTATION = "annotation"
    PERTURBATION = "perturbation"
    BULK_KNOCKOUT = "bulk_knockout"


Init = Literal["pretrained", "scratch", "none"]
"""``pretrained``: weights a user supplied; ``scratch``: trained here from random init;
``none``: the method has no learned weights to speak of (controls, PCA)."""

ExpressionKind = Literal["counts", "log1p_normalized", "log2_normalized", "linear_normalized", "scaled"]
"""See :mod:`benchmarks.data.expression` (``linear_normalized``: TPM/FPKM/CPM-like values)."""


@dataclass(frozen=True)
class Capabilities:
    """What an adapter declares it supports.

    Parameters
    ----------
    task_kinds
        The task kinds whose methods the adapter implements.
    organisms
        Organisms whose genes the model knows (``"human"``, ``"mouse"``, ``"any"``).
    gene_id_type
        The gene identifiers the model works in (``"symbol"``, ``"ensembl"`` or ``"any"``); the
        harness provides both columns in ``adata.var`` when the dataset has them.
    expression_kinds
        The input value types the adapter accepts (e.g. scVI needs raw ``counts``). Data of
        another kind is converted by the harness where a sound conversion exists
        (:mod:`benchmarks.data.expression`: counts, TPM-like and log2 values to
        ``log1p_normalized``); otherwise the run is ``NOT_APPLICABLE`` with the reason.

    """

    task_kinds: frozenset[TaskKind]
    organisms: frozenset[str] = frozenset({"any"})
    gene_id_type: str = "any"
    expression_kinds: frozenset[str] = frozenset({"counts", "log1p_normalized", "log2_normalized", "scaled"})

    def supports(self, kind: TaskKind) -> bool:
        """Whether the adapter implements ``kind``."""
        return kind in self.task_kinds


@dataclass(frozen=True)
class GeneVocabulary:
    """The genes a model can take as input, for the pre-flight coverage check.

    Parameters
    ----------
    genes
        Identifiers the model knows (special tokens may be included; they match no gene).
    id_type
        ``"symbol"`` or ``"ensembl"``: the type of ``genes``.
    source
        Where the vocabulary came from (a card name, a checkpoint path), for the record.
    min_coverage
        The smallest share of a data set's genes the model needs; below it the pair is
        ``NOT_APPLICABLE`` before any work.
    symbol_to_ensembl
        The model's own symbol → Ensembl table, consulted before the NCBI table.

    """

    genes: frozenset[str]
    id_type: str = "symbol"
    source: str = ""
    min_coverage: float = 0.1
    symbol_to_ensembl: Mapping[str, str] | None = None

    @classmethod
    def from_card(
        cls, card: str, file: str | None = None, *, id_type: str = "symbol", **kwargs: Any
    ) -> GeneVocabulary:
        """Read the keys of a JSON object (or the items of a JSON list) in a dataset card's file.

        Parameters
        ----------
        card
            Dataset card name (e.g. ``"cgc_vocab"``, ``"scgpt_vocab"``).
        file
            The file's name in the card (may be omitted for single-file cards).
        id_type, kwargs
            As for the class.

        """
        from benchmarks.data.cards import get_card
        from benchmarks.data.fetch import resolve_file

        spec = get_card(card)
        files = [f for f in spec.files if file is None or file in (f.name, Path(f.mirror_path or "").name)]
        if not files:
            raise ValueError(f"dataset card {card} has no file {file!r}")
        with open(resolve_file(spec, files[0])) as fh:
            data = json.load(fh)
        return cls(frozenset(map(str, data)), id_type=id_type, source=f"{card}:{files[0].name}", **kwargs)


@dataclass
class ModelInfo:
    """Provenance of the model behind a result."""

    name: str
    variant: str = ""
    init: Init = "scratch"
    checkpoint_sha256: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    is_control: bool = False

    @property
    def label(self) -> str:
        """``name`` or ``name:variant``, as written on the command line."""
        return f"{self.name}:{self.variant}" if self.variant else self.name


class ModelAdapter(abc.ABC):
    """Base class of every model adapter.

    Subclasses set :attr:`name` and :attr:`capabilities`, take their settings as keyword
    arguments in ``__init__`` (every one of them is recorded), and implement the methods of the
    task-kind mixins they inherit. ``seed`` is passed by the runner; an adapter must make every
    random choice from it.
    """

    name: ClassVar[str]
    capabilities: ClassVar[Capabilities]
    description: ClassVar[str] = ""
    is_control: ClassVar[bool] = False
    """Controls bound a metric (trivial or perfect scores); the leaderboard styles them apart."""
    variants: ClassVar[Mapping[str, Mapping[str, Any]]] = {}
    requires: ClassVar[tuple[str, ...]] = ()
    """Import names of the optional packages the adapter needs (e.g. ``("scgpt",)``); a missing
    one makes every run of the model ``NOT_APPLICABLE`` and ``cgcbench list models`` says so."""
    install_hint: ClassVar[str] = ""
    """How to install :attr:`requires` (e.g. ``pip install --no-deps scgpt==0.2.4``)."""
    """Named variants: ``"no-graph" -> {"use_graph": False}`` lets ``model:no-graph`` work."""
    free_variant: ClassVar[str] = ""
    """When set, any variant string is accepted and names this (e.g. ``"obsm key"`` for
    ``obsm:X_mine``); the adapter reads it from :attr:`variant`."""
    zero_shot_seed_params: ClassVar[Mapping[str, Any]] = {}
    """Settings that make the benchmark seed reach pre-training (e.g. ``{"pretrain_seed": "run"}``).

    In a zero-shot suite a model is scored on its pre-trained weights as they are; when those
    come from one fixed pre-training seed, every benchmark seed scores the same weights and
    seed-to-seed intervals (``cgcbench ablate``) say nothing. ``cgcbench ablate`` applies these
    settings on zero-shot suites unless the user set the same keys.
    """

    def __init__(self, *, seed: int = 0, quick: bool = False, variant: str = "", **params: Any) -> None:
        self.seed = int(seed)
        self.quick = bool(quick)
        self.variant = variant
        self.params: dict[str, Any] = dict(params)

    @property
    def init(self) -> Init:
        """Whether the weights came from a user's checkpoint, were trained here, or are none."""
        return "scratch"

    @property
    def checkpoint_sha256(self) -> str | None:
        """sha256 of the checkpoint the adapter loaded, if any."""
        return None

    def info(self) -> ModelInfo:
        """Provenance of this adapter instance."""
        return ModelInfo(
            name=self.name,
            variant=self.variant,
            init=self.init,
            checkpoint_sha256=self.checkpoint_sha256,
            params=dict(self.params),
            is_control=self.is_control,
        )

    def extra_metrics(self) -> dict[str, float]:
        """Metrics an adapter reports about itself (e.g. gene coverage, final train loss)."""
        return {}

    def training_curves(self) -> dict[str, list[tuple[int, float]]]:
        """Loss curves of the training this adapter did or loaded (default: none).

        ``{"pretrain_loss": [(step, value), ...], "finetune_loss": [...], ...}``; the harness
        writes them as the cell's ``training_curves.json`` artifact and logs them to MLflow as
        step metrics, so runs can be compared curve by curve.
        """
        return {}

    def gene_vocabulary(self) -> GeneVocabulary | None:
        """The genes the model can take as input; ``None`` (the default) when any feature works.

        The pre-flight check calls this before any work and refuses a data set whose genes the
        model cannot map (``NOT_APPLICABLE``). It must be cheap: read a vocabulary file (e.g.
        :meth:`GeneVocabulary.from_card`), never build, load or pre-train the model.
        """
        return None

    def bind_dataset(self, dataset: Mapping[str, Any]) -> None:  # noqa: B027
        """Learn which data set the adapter is about to be evaluated on (before any fit).

        The harness calls this with the record's dataset provenance (``name``, ``version``,
        …) before it asks for :attr:`init` or fits anything, so that an adapter that
        pre-trains on a corpus can leave the evaluated cells out of it. Default: nothing.
        """

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, variant={self.variant!r}, seed={self.seed})"


class GeneEmbeddingMixin(abc.ABC):
    """Zero-shot gene embeddings."""

    def fit_genes(self, adata: AnnData) -> None:  # noqa: B027
        """Learn from a task's expression matrix before :meth:`embed_genes` (default: no-op).

        Zero-shot models keep the default; data-driven controls (co-expression) use it. A suite
        calls it only when its task carries an expression matrix.
        """

    @abc.abstractmethod
    def embed_genes(self, genes: Sequence[str], id_type: str = "symbol") -> pd.DataFrame:
        """Return one row per gene the model knows (index = the gene id as given).

        Genes the model does not know are absent from the index; the suite reports coverage.
        """


class CellEmbeddingMixin(abc.ABC):
    """Cell embeddings, after an optional self-supervised fit on the target data."""

    def fit(self, adata: AnnData, batch_key: str | None = None) -> None:  # noqa: B027
        """Fit (or fine-tune) on ``adata`` without labels. The default is a no-op."""

    @abc.abstractmethod
    def embed_cells(self, adata: AnnData) -> np.ndarray:
        """Return an ``(n_cells, d)`` float array."""


class AnnotationMixin(abc.ABC):
    """Supervised cell-type annotation."""

    @abc.abstractmethod
    def fit_classifier(self, reference: AnnData, label_key: str) -> None:
        """Train on labelled reference cells."""

    @abc.abstractmethod
    def predict_labels(self, query: AnnData) -> np.ndarray:
        """Predict one label (a reference label) per query cell."""


class PerturbationMixin(abc.ABC):
    """Single-cell genetic perturbation response."""

    @abc.abstractmethod
    def fit_perturbation(self, train: AnnData, condition_key: str = "condition") -> None:
        """Train on perturbed and control cells (``obs[condition_key]`` = ``A+B`` / ``ctrl``)."""

    @abc.abstractmethod
    def predict_perturbation(self, control: AnnData, conditions: Sequence[str]) -> pd.DataFrame:
        """Predict the mean post-perturbation expression (rows: conditions, cols: genes)."""


class BulkKnockoutMixin(abc.ABC):
    """Bulk profile after a gene knockout."""

    @abc.abstractmethod
    def fit_knockout(self, train: AnnData, ko_key: str = "ko_gene") -> None:
        """Train on pairs of (before, after) bulk profiles."""

    @abc.abstractmethod
    def predict_knockout(self, before: AnnData, ko_genes: Sequence[str]) -> np.ndarray:
        """Predict each profile after knocking out the matching gene."""


MIXIN_OF_KIND: dict[TaskKind, type] = {
    TaskKind.GENE_EMBEDDING: GeneEmbeddingMixin,
    TaskKind.CELL_EMBEDDING: CellEmbeddingMixin,
    TaskKind.ANNOTATION: AnnotationMixin,
    TaskKind.PERTURBATION: PerturbationMixin,
    TaskKind.BULK_KNOCKOUT: BulkKnockoutMixin,
}


@dataclass
class Artifact:
    """A file a suite produced for one run (a plot, a predictions table)."""

    path: Path
    kind: str = "plot"
    description: str = ""


@dataclass
class SuiteResult:
    """What :meth:`Suite.run` returns: metrics, artifacts and suite-level parameters."""

    metrics: dict[str, float]
    artifacts: list[Artifact] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)


@dataclass
class TaskData:
    """Data one suite run needs, prepared (and split) by the suite for a given seed.

    ``payload`` holds suite-specific objects (e.g. reference/query AnnData). ``dataset`` is the
    provenance of the source data (name, version, sha256, …) written into every record.
    """

    dataset: dict[str, Any]
    payload: dict[str, Any]
    params: dict[str, Any] = field(default_factory=dict)


class Suite(abc.ABC):
    """A benchmark task with a fixed protocol.

    Subclasses declare ``name``, the task kinds they need, their headline metrics (the
    results-table columns) and their default datasets; :meth:`prepare` builds the
    :class:`TaskData` for a dataset and seed and :meth:`run` evaluates one adapter on it.
    """

    name: ClassVar[str]
    description: ClassVar[str] = ""
    required_kinds: ClassVar[frozenset[TaskKind]]
    headline_metrics: ClassVar[tuple[str, ...]]
    higher_is_better: ClassVar[Mapping[str, bool]] = {}
    default_datasets: ClassVar[tuple[str, ...]] = ()
    quick_datasets: ClassVar[tuple[str, ...]] = ()
    controls: ClassVar[tuple[str, ...]] = ()
    """The control models that bound this suite's metrics (run beside a user's own embedding)."""
    model_inputs: ClassVar[tuple[str, ...]] = ()
    """Payload keys of the AnnData objects that are only model input (not ground truth); the
    harness may convert their expression kind per model (see :class:`Capabilities`). Suites
    that score expression values (perturbation, bulk knockout) leave this empty."""

    def __init__(self, *, quick: bool = False, options: Mapping[str, Any] | None = None) -> None:
        self.quick = quick
        self.options: dict[str, Any] = dict(options or {})

    def requirement_gap(self, capabilities: Capabilities, task: TaskData) -> str | None:
        """Return why an adapter cannot run on ``task``, or ``None`` when it can."""
        missing = [k.value for k in self.required_kinds if not capabilities.supports(k)]
        if missing:
            kinds = ", ".join(sorted(k.value for k in capabilities.task_kinds)) or "none"
            return f"{self.name} needs task kind {', '.join(missing)}; the model supports {kinds}"
        organism = task.dataset.get("organism", "any")
        if "any" not in capabilities.organisms and organism not in capabilities.organisms:
            return (
                f"dataset organism is {organism!r}; the model supports "
                f"{', '.join(sorted(capabilities.organisms))}"
            )
        expr = task.dataset.get("expression_kind")
        if expr and expr not in capabilities.expression_kinds:
            return (
                f"dataset expression is {expr!r}; the model needs "
                f"{' or '.join(sorted(capabilities.expression_kinds))}"
            )
        return None

    @abc.abstractmethod
    def prepare(self, adata: AnnData | None, card: Any, seed: int) -> TaskData:
        """Build the task data for one dataset and seed (splits fixed by the seed).

        ``adata`` is the validated AnnData for cards with an ``[anndata]`` section and ``None``
        for table cards (gene labels, networks), whose files the suite resolves from ``card``.
        """

    @abc.abstractmethod
    def run(self, adapter: ModelAdapter, task: TaskData, seed: int, workdir: Path) -> SuiteResult:
        """Evaluate ``adapter`` on ``task``; write artifacts under ``workdir``."""

    def config(self) -> dict[str, Any]:
        """The suite's settings, part of every run's config hash."""
        return {"suite": self.name, "quick": self.quick, **self.options}


def config_hash(payload: Mapping[str, Any]) -> str:
    """A short stable hash of a JSON-serialisable configuration."""
    blob = json.dumps(payload, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def model_info_dict(info: ModelInfo) -> dict[str, Any]:
    """A plain dict of :class:`ModelInfo` for records."""
    return asdict(info) | {"label": info.label}
