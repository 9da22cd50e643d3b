"""The pre-flight check of one (model, data set) pair, before the model does any work.

:func:`preflight` answers, in this order and with the first failing reason:

1. **package** — every optional package the adapter declares (:attr:`ModelAdapter.requires`)
   is installed (found by ``importlib.util.find_spec``, nothing imported);
2. **task kind** — the adapter implements what the suite needs;
3. **organism** — the data set's organism (declared, detected or given with ``--organism``)
   is one the model supports;
4. **expression kind** — the model accepts the data's kind, or the harness can convert it
   soundly (:mod:`benchmarks.data.expression`) for a suite whose payload is only model input
   (:attr:`Suite.model_inputs`); the converted task is returned;
5. **gene coverage** — for a model with a fixed vocabulary
   (:meth:`ModelAdapter.gene_vocabulary`), the share of the data set's genes it knows (after
   symbol ↔ Ensembl mapping) reaches the vocabulary's ``min_coverage``.

A pair that fails is recorded ``NOT_APPLICABLE`` with the reason, costs no training, and never
counts as a failure. Labels and batches are checked per data set by the suite before any cell
runs (a missing key is an input error for every model alike).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field, replace
from typing import Any

import anndata as ad

from benchmarks.data.expression import KINDS, conversion_method, conversion_to, convert, why_not_convertible
from benchmarks.interface import ModelAdapter, Suite, TaskData


def missing_packages(cls: type[ModelAdapter]) -> list[str]:
    """The packages of ``cls.requires`` that cannot be found (nothing is imported)."""
    missing = []
    for name in cls.requires:
        try:
            found = importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            missing.append(name)
    return missing


def package_gap(cls: type[ModelAdapter]) -> str | None:
    """Why ``cls`` cannot run in this environment (a package is missing), or ``None``."""
    missing = missing_packages(cls)
    if not missing:
        return None
    hint = cls.install_hint or f"pip install {' '.join(missing)}"
    return f"package {', '.join(missing)} is not installed; install it with: {hint}"


@dataclass
class PreflightResult:
    """The answer for one pair: a reason it cannot run (or ``None``) and the task to run on."""

    reason: str | None
    task: TaskData
    params: dict[str, Any] = field(default_factory=dict)
    """What the check did or found, recorded with the run (conversion, gene coverage)."""


def _payload_anndata(task: TaskData, keys: tuple[str, ...] | None = None) -> list[tuple[str, ad.AnnData]]:
    items = task.payload.items() if keys is None else ((k, task.payload.get(k)) for k in keys)
    return [(k, v) for k, v in items if isinstance(v, ad.AnnData)]


def gene_coverage(adata: ad.AnnData, vocab: Any) -> tuple[float, list[str]]:
    """Share of ``adata``'s genes in ``vocab`` (a :class:`GeneVocabulary`) and unmapped examples."""
    from baselines.gene_ids import default_mapper, var_gene_ids

    mapper = None
    if vocab.id_type == "ensembl" and vocab.symbol_to_ensembl:
        mapper = default_mapper().with_priority(dict(vocab.symbol_to_ensembl))
    ids = var_gene_ids(adata, vocab.id_type, mapper)
    known = [i is not None and i in vocab.genes for i in ids]
    unmapped = [str(n) for n, k in zip(adata.var_names, known, strict=True) if not k]
    return (sum(known) / len(known) if known else 0.0), unmapped[:5]


def preflight(suite: Suite, adapter: ModelAdapter, task: TaskData) -> PreflightResult:
    """Check that ``adapter`` can run ``suite`` on ``task`` (see the module docstring).

    The adapter must only have been constructed: nothing here loads, fits or pre-trains it.
    """
    caps = adapter.capabilities
    gap = package_gap(type(adapter))
    if gap:
        return PreflightResult(gap, task)
    missing = sorted(k.value for k in suite.required_kinds if not caps.supports(k))
    if missing:
        kinds = ", ".join(sorted(k.value for k in caps.task_kinds)) or "none"
        reason = f"{suite.name} needs task kind {', '.join(missing)}; the model supports {kinds}"
        return PreflightResult(reason, task)
    ds = task.dataset
    organism = str(ds.get("organism") or "unknown")
    if "any" not in caps.organisms and organism not in caps.organisms:
        supported = ", ".join(sorted(caps.organisms))
        how = ds.get("organism_rule") or ds.get("organism_source") or "declared"
        fix = "; pass --organism if the detection is wrong" if ds.get("organism_source") == "detected" else ""
        return PreflightResult(
            f"the data set's organism is {organism} ({how}); {adapter.name} supports only {supported}{fix}",
            task,
        )
    params: dict[str, Any] = {}
    kind = ds.get("expression_kind")
    if kind and kind in KINDS:
        target = conversion_to(kind, caps.expression_kinds)
        inputs = _payload_anndata(task, suite.model_inputs)
        if target is None or (target != kind and not inputs):
            return PreflightResult(why_not_convertible(kind, caps.expression_kinds), task)
        if target != kind:
            payload = dict(task.payload)
            for key, adata in inputs:
                payload[key] = convert(adata, kind, target)
            method = conversion_method(kind, target)
            params = {"expression_converted": f"{kind} -> {target} ({method})"}
            task = replace(task, dataset={**ds, "expression_kind": target, "expression_kind_input": kind},
                           payload=payload)
    gap = suite.requirement_gap(caps, task)
    if gap:
        return PreflightResult(gap, task, params)
    vocab = adapter.gene_vocabulary()
    data = _payload_anndata(task)
    if vocab is not None and data:
        fraction, unmapped = gene_coverage(data[0][1], vocab)
        params["preflight_gene_coverage"] = round(fraction, 4)
        if fraction < vocab.min_coverage:
            n = data[0][1].n_vars
            return PreflightResult(
                f"only {fraction:.0%} of the data set's {n} genes are in {adapter.name}'s vocabulary "
                f"({vocab.source or vocab.id_type}; unmapped e.g. {', '.join(unmapped)}); the model needs "
                f">= {vocab.min_coverage:.0%} — name the genes with {vocab.id_type} ids (or point "
                "--gene-symbols-key at a var column of symbols)",
                task,
                params,
            )
    return PreflightResult(None, task, params)
