"""Name → class registries for models and suites, and model-variant strings.

Models are registered by import path so that listing them never imports heavy libraries
(scvi-tools, transformers); third-party packages can add models through the
``cgcbench.models`` entry-point group and suites through ``cgcbench.suites``.

A model string is ``name`` or ``name:variant`` (``cgc:no-graph``, ``cgc:-edge=coexpr``); the
variant must be one the adapter class declares in :attr:`ModelAdapter.variants`.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any

from benchmarks.errors import CgcbenchError, UnknownNameError
from benchmarks.interface import ModelAdapter, Suite

MODELS: dict[str, str] = {
    "majority": "baselines.majority:MajorityAdapter",
    "pca-logreg": "baselines.pca_logreg:PCALogRegAdapter",
    "pca": "baselines.pca:PCAAdapter",
    "random": "baselines.random_embedding:RandomEmbeddingAdapter",
    "shuffled": "baselines.shuffled:ShuffledEmbeddingAdapter",
    "coexpression": "baselines.coexpression:CoexpressionAdapter",
    "no-change": "baselines.perturbation_controls:NoChangeAdapter",
    "train-mean": "baselines.perturbation_controls:TrainMeanAdapter",
    "linear": "baselines.perturbation_controls:LinearAdditiveAdapter",
    "train-mean-shift": "baselines.perturbation_controls:TrainMeanShiftAdapter",
    "scvi": "baselines.scvi_models:SCVIAdapter",
    "scanvi": "baselines.scvi_models:SCANVIAdapter",
    "scgpt": "baselines.scgpt_model:ScGPTAdapter",
    "geneformer": "baselines.geneformer_model:GeneformerAdapter",
    "gears": "baselines.gears_model:GEARSAdapter",
    "gene2vec": "baselines.gene2vec_model:Gene2vecAdapter",
    "biobert": "baselines.text_embedding:TextEmbeddingAdapter",
    "cgc": "baselines.cgc_model:CGCAdapter",
    "obsm": "baselines.precomputed:ObsmEmbeddingAdapter",
    "genes": "baselines.precomputed:GeneTableAdapter",
}
"""Built-in adapters: name → ``module:Class``."""

SUITES: dict[str, str] = {
    "annotation": "benchmarks.suites.annotation:AnnotationSuite",
    "gene-classification": "benchmarks.suites.gene_classification:GeneClassificationSuite",
    "grn": "benchmarks.suites.grn:GRNSuite",
    "clustering": "benchmarks.suites.clustering:ClusteringSuite",
    "perturbation": "benchmarks.suites.perturbation:PerturbationSuite",
    "bulk-knockout": "benchmarks.suites.bulk_knockout:BulkKnockoutSuite",
}
"""Built-in suites: name → ``module:Class``."""


class ModelUnavailableError(CgcbenchError, ImportError):
    """A registered model whose module (or its optional dependencies) cannot be imported."""


def register_model(name: str, target: str) -> None:
    """Register an adapter class under ``name`` (``target`` = ``"module:Class"``)."""
    MODELS[name] = target


def register_suite(name: str, target: str) -> None:
    """Register a suite class under ``name`` (``target`` = ``"module:Class"``)."""
    SUITES[name] = target


def _all(table: dict[str, str], group: str) -> dict[str, str]:
    merged = dict(table)
    for ep in entry_points(group=group):
        merged.setdefault(ep.name, ep.value)
    return merged


def _load(target: str) -> Any:
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


def model_names(available_only: bool = False) -> list[str]:
    """All registered model names (only importable ones with ``available_only``)."""
    names = sorted(_all(MODELS, "cgcbench.models"))
    if not available_only:
        return names
    out = []
    for name in names:
        try:
            model_class(name)
        except (ImportError, AttributeError):
            continue
        out.append(name)
    return out


def suite_names() -> list[str]:
    """All registered suite names."""
    return sorted(_all(SUITES, "cgcbench.suites"))


@dataclass(frozen=True)
class ModelSpec:
    """A parsed model string: registered name plus an optional variant."""

    name: str
    variant: str = ""

    @property
    def label(self) -> str:
        """The string as a user writes it."""
        return f"{self.name}:{self.variant}" if self.variant else self.name


def parse_model(spec: str) -> ModelSpec:
    """Parse ``name`` or ``name:variant`` and check that both exist.

    Raises
    ------
    UnknownNameError
        If the model or its variant is not registered (the message lists the valid ones).

    """
    name, _, variant = spec.strip().partition(":")
    cls = model_class(name)
    if cls.free_variant:
        if not variant:
            raise CgcbenchError(
                f"model {name} needs its {cls.free_variant}: write {name}:NAME, e.g. {name}:X_mine"
            )
        return ModelSpec(name, variant)
    if variant and variant not in cls.variants:
        raise UnknownNameError(f"variant of {name}", variant, cls.variants)
    return ModelSpec(name, variant)


def model_class(name: str) -> type[ModelAdapter]:
    """The adapter class registered under ``name``."""
    table = _all(MODELS, "cgcbench.models")
    if name not in table:
        raise UnknownNameError("model", name, table)
    try:
        return _load(table[name])
    except (ImportError, AttributeError) as exc:
        raise ModelUnavailableError(
            f"model {name!r} is registered but cannot be imported ({exc}); install its extra: "
            "pip install 'cgcbench[baselines]'"
        ) from exc


def build_model(spec: ModelSpec | str, *, seed: int, quick: bool = False, **params: Any) -> ModelAdapter:
    """Instantiate the adapter of ``spec`` with its variant's settings applied."""
    spec = parse_model(spec) if isinstance(spec, str) else spec
    cls = model_class(spec.name)
    settings = {**cls.variants.get(spec.variant, {}), **params}
    return cls(seed=seed, quick=quick, variant=spec.variant, **settings)


def suite_class(name: str) -> type[Suite]:
    """The suite class registered under ``name``."""
    table = _all(SUITES, "cgcbench.suites")
    if name not in table:
        raise UnknownNameError("suite", name, table)
    return _load(table[name])
