"""Simulation designs: what a ``[simulation]`` table of a dataset card asks SERGIO to produce.

``design = "batches"``
    Unperturbed cells of ``n_cell_types`` types, each cell assigned (seeded, balanced) to one of
    ``n_batches`` batches; each batch gets its own technical noise (library size, dropout rate,
    outlier genes), so a batch is a real technical effect on the same biology. obs: ``cell_type``,
    ``batch``, ``condition`` (``ctrl``).
``design = "perturb"``
    One cell type; ``n_ctrl_cells`` control cells plus ``cells_per_condition`` cells for each of
    ``n_single`` single knockouts (``A+ctrl``) and ``n_combo`` double knockouts (``A+B``, both
    genes among the singles), GEARS notation. obs: ``condition``, ``cell_type``, ``batch``.
``design = "bulk_ko"``
    ``n_cell_types`` cell types (think: cell lines) × (control + ``n_ko`` single knockouts) ×
    ``n_replicates`` replicates; each sample is the pseudo-bulk (sum of UMI counts) of
    ``cells_per_replicate`` simulated cells. obs: ``cell_type``, ``replicate``, ``condition``
    (``ctrl`` or the knocked-out gene), ``ko_gene``. Before/after pairs are (control, knockout)
    samples of the same cell type and replicate.

SERGIO samples the cells of one cell type as time points of one long stochastic trajectory; to
keep cells less autocorrelated (and to parallelise) every condition is simulated as independent
trajectories of at most ``cells_per_trajectory`` cells per type, each with its own seed.

Knockout genes are drawn (seeded) among regulators with at least ``min_ko_descendants`` genes
downstream, so that every knockout has an effect to predict. Conditions are simulated in
parallel processes (``n_jobs``); every condition has its own seed, so the output does not depend
on ``n_jobs``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from benchmarks.errors import InputError
from benchmarks.simulate.engine import fit_half_response, simulate_clean, technical_noise
from benchmarks.simulate.grn import GroundTruthGRN, build_grn
from cgc.progress import task as progress_task

DESIGNS = ("batches", "perturb", "bulk_ko")

DEFAULTS: dict[str, Any] = {
    "design": "batches",
    "seed": 0,
    "grn_source": "sergio_human",
    "n_genes": 100,
    "max_regulators": 3,
    "n_cell_types": 4,
    "n_batches": 3,
    "cells_per_type": 250,
    "noise_s": 1.0,
    "n_single": 16,
    "n_combo": 16,
    "cells_per_condition": 40,
    "n_ctrl_cells": 200,
    "n_ko": 16,
    "n_replicates": 3,
    "cells_per_replicate": 20,
    "min_ko_descendants": 3,
    "cells_per_trajectory": 100,
    "library_mean": [6.0, 5.0, 6.5],
    "library_scale": [0.3, 0.5, 0.4],
    "dropout_shape": [8.0, 8.0, 8.0],
    "dropout_percentile": [45.0, 60.0, 70.0],
    "outlier_prob": [0.01, 0.05, 0.02],
    "outlier_mean": [0.8, 0.8, 0.8],
    "outlier_scale": [1.0, 1.0, 1.0],
}
"""Every simulation parameter and its default; a card's ``[simulation]`` table overrides them.

The per-batch noise lists (SERGIO's splat noise parameters) cycle when there are more batches
than entries.
"""

NOISE_KEYS = (
    "library_mean",
    "library_scale",
    "dropout_shape",
    "dropout_percentile",
    "outlier_prob",
    "outlier_mean",
    "outlier_scale",
)


def resolve_params(table: dict[str, Any], where: str = "<card>") -> dict[str, Any]:
    """Defaults overridden by ``table``; unknown keys and bad values are input errors."""
    unknown = sorted(set(table) - set(DEFAULTS) - {"n_jobs"})
    if unknown:
        raise InputError(
            f"{where}: [simulation] has unknown key(s) {', '.join(unknown)}; valid keys: "
            f"{', '.join(sorted(DEFAULTS))}"
        )
    params = {k: table.get(k, v) for k, v in DEFAULTS.items()}
    if params["design"] not in DESIGNS:
        raise InputError(f"{where}: simulation.design={params['design']!r}; use one of {', '.join(DESIGNS)}")
    for key in NOISE_KEYS:
        value = params[key]
        params[key] = [float(v) for v in (value if isinstance(value, list) else [value])]
    for key in (
        "n_genes",
        "n_cell_types",
        "n_batches",
        "cells_per_type",
        "n_replicates",
        "cells_per_replicate",
    ):
        if int(params[key]) < 1:
            raise InputError(f"{where}: simulation.{key}={params[key]!r} must be a positive integer")
    if int(params["n_genes"]) < 10:
        raise InputError(f"{where}: simulation.n_genes={params['n_genes']} is too small; use at least 10")
    return params


def batch_noise(params: dict[str, Any], batch: int) -> dict[str, float]:
    """SERGIO noise parameters of one batch."""
    return {k: params[k][batch % len(params[k])] for k in NOISE_KEYS}


@dataclass
class _Job:
    truth: GroundTruthGRN
    cells_per_type: list[int]
    seed: int
    ko_genes: tuple[str, ...]
    noise_s: float


def _run_job(job: _Job) -> list[np.ndarray]:
    return simulate_clean(job.truth, job.cells_per_type, job.seed, job.ko_genes, job.noise_s)


def _chunks(job: _Job, cells_per_trajectory: int) -> list[_Job]:
    """Split a job into independent SERGIO trajectories of at most ``cells_per_trajectory`` cells."""
    n_chunks = max(1, -(-max(job.cells_per_type) // cells_per_trajectory))
    out = []
    for j in range(n_chunks):
        sizes = [min(cells_per_trajectory, max(0, n - j * cells_per_trajectory)) for n in job.cells_per_type]
        out.append(_Job(job.truth, sizes, _child_seed(job.seed, 100 + j), job.ko_genes, job.noise_s))
    return out


def _run_all(jobs: Sequence[_Job], n_jobs: int, cells_per_trajectory: int) -> list[list[np.ndarray]]:
    """Run every job (split into trajectories, in ``n_jobs`` processes); per job, one array per type."""
    pieces = [_chunks(j, cells_per_trajectory) for j in jobs]
    flat = [c for p in pieces for c in p]
    results: list[list[np.ndarray]] = []
    with progress_task("SERGIO simulation (trajectories)", len(flat)) as shown:
        if n_jobs <= 1 or len(flat) <= 1:
            for j in flat:
                results.append(_run_job(j))
                shown.update(len(results))
        else:
            with ProcessPoolExecutor(max_workers=n_jobs) as pool:
                for r in pool.map(_run_job, flat):  # in order
                    results.append(r)
                    shown.update(len(results))
    out, i = [], 0
    for p in pieces:
        parts = results[i : i + len(p)]
        i += len(p)
        out.append([np.hstack([part[t] for part in parts]) for t in range(len(parts[0]))])
    return out


def _child_seed(seed: int, *keys: int) -> int:
    return int(np.random.SeedSequence([seed, *keys]).generate_state(1)[0])


def choose_ko_genes(
    truth: GroundTruthGRN, n: int, min_descendants: int, rng: np.random.Generator
) -> list[str]:
    """``n`` regulators (seeded) with at least ``min_descendants`` downstream genes."""
    reach = truth.n_descendants()
    pool = sorted(g for g in truth.regulators if reach[g] >= min_descendants)
    if len(pool) < n:
        raise InputError(
            f"only {len(pool)} regulators have >= {min_descendants} downstream genes but {n} knockouts "
            "were asked for; lower n_single/n_ko or min_ko_descendants, or raise n_genes"
        )
    return sorted(rng.choice(pool, size=n, replace=False).tolist())


def _grn_uns(truth: GroundTruthGRN) -> dict[str, Any]:
    e = truth.edges
    return {
        "source": truth.source,
        "reg": e["reg"].to_numpy(str),
        "tar": e["tar"].to_numpy(str),
        "k": e["k"].to_numpy(float),
        "n": e["n"].to_numpy(float),
        "h": e["h"].to_numpy(float),
        "master_regulators": np.asarray(truth.master_regulators, dtype=str),
    }


def _var(truth: GroundTruthGRN) -> pd.DataFrame:
    reach = truth.n_descendants()
    regs, mrs = set(truth.regulators), set(truth.master_regulators)
    return pd.DataFrame(
        {
            "is_regulator": [g in regs for g in truth.genes],
            "is_master_regulator": [g in mrs for g in truth.genes],
            "n_downstream": [int(reach[g]) for g in truth.genes],
        },
        index=pd.Index(truth.genes, name="gene_symbol"),
    )


def _noisy_counts(clean: np.ndarray, batches: np.ndarray, params: dict[str, Any], seed: int) -> np.ndarray:
    """Cells × genes counts; each batch's cells get that batch's noise (genes × cells inside SERGIO)."""
    counts = np.zeros_like(clean)
    for b in np.unique(batches):
        m = batches == b
        counts[m] = technical_noise(clean[m].T, batch_noise(params, int(b)), _child_seed(seed, 7, int(b))).T
    return counts


def _assemble(
    clean: np.ndarray, obs: pd.DataFrame, truth: GroundTruthGRN, params: dict[str, Any], batches: np.ndarray
) -> ad.AnnData:
    counts = _noisy_counts(clean, batches, params, int(params["seed"]))
    adata = ad.AnnData(
        X=sp.csr_matrix(counts.astype(np.float32)),
        obs=obs,
        var=_var(truth),
        layers={"clean": clean.astype(np.float32)},
    )
    adata.uns["grn"] = _grn_uns(truth)
    return adata


def simulate_batches(truth: GroundTruthGRN, params: dict[str, Any], n_jobs: int) -> ad.AnnData:
    """The ``batches`` design (see the module docstring)."""
    n_types, per_type = int(params["n_cell_types"]), int(params["cells_per_type"])
    seed = int(params["seed"])
    (clean_by_type,) = _run_all(
        [_Job(truth, [per_type] * n_types, _child_seed(seed, 1), (), params["noise_s"])],
        n_jobs,
        int(params["cells_per_trajectory"]),
    )
    clean = np.hstack(clean_by_type).T
    cell_type = np.repeat([f"type_{i}" for i in range(n_types)], per_type)
    rng = np.random.default_rng(_child_seed(seed, 2))
    n_b = int(params["n_batches"])
    batches = np.concatenate([rng.permutation(np.arange(per_type) % n_b) for _ in range(n_types)])
    obs = pd.DataFrame(
        {
            "cell_type": pd.Categorical(cell_type),
            "batch": pd.Categorical([f"batch_{b}" for b in batches]),
            "condition": "ctrl",
        },
        index=[f"cell_{i}" for i in range(len(cell_type))],
    )
    return _assemble(clean, obs, truth, params, batches)


def simulate_perturb(truth: GroundTruthGRN, params: dict[str, Any], n_jobs: int) -> ad.AnnData:
    """The ``perturb`` design (see the module docstring)."""
    seed = int(params["seed"])
    rng = np.random.default_rng(_child_seed(seed, 3))
    singles = choose_ko_genes(truth, int(params["n_single"]), int(params["min_ko_descendants"]), rng)
    all_pairs = [(a, b) for i, a in enumerate(singles) for b in singles[i + 1 :]]
    n_combo = min(int(params["n_combo"]), len(all_pairs))
    picked = rng.choice(len(all_pairs), size=n_combo, replace=False) if n_combo else []
    combos = sorted(all_pairs[i] for i in picked)
    conditions: list[tuple[str, tuple[str, ...], int]] = [("ctrl", (), int(params["n_ctrl_cells"]))]
    conditions += [(f"{g}+ctrl", (g,), int(params["cells_per_condition"])) for g in singles]
    conditions += [(f"{a}+{b}", (a, b), int(params["cells_per_condition"])) for a, b in combos]
    jobs = [
        _Job(truth, [n], _child_seed(seed, 4, i), kos, params["noise_s"])
        for i, (_, kos, n) in enumerate(conditions)
    ]
    results = _run_all(jobs, n_jobs, int(params["cells_per_trajectory"]))
    clean = np.hstack([r[0] for r in results]).T
    labels = np.concatenate([[name] * n for name, _, n in conditions])
    obs = pd.DataFrame(
        {
            "condition": pd.Categorical(labels, categories=[c[0] for c in conditions]),
            "cell_type": "type_0",
            "batch": "batch_0",
            "control": (labels == "ctrl").astype(int),
        },
        index=[f"cell_{i}" for i in range(len(labels))],
    )
    return _assemble(clean, obs, truth, params, np.zeros(len(labels), dtype=int))


def simulate_bulk_ko(truth: GroundTruthGRN, params: dict[str, Any], n_jobs: int) -> ad.AnnData:
    """The ``bulk_ko`` design (see the module docstring)."""
    seed = int(params["seed"])
    rng = np.random.default_rng(_child_seed(seed, 5))
    kos = choose_ko_genes(truth, int(params["n_ko"]), int(params["min_ko_descendants"]), rng)
    n_types, n_rep, per_rep = (
        int(params["n_cell_types"]),
        int(params["n_replicates"]),
        int(params["cells_per_replicate"]),
    )
    conditions = ["ctrl", *kos]
    jobs = [
        _Job(
            truth,
            [n_rep * per_rep] * n_types,
            _child_seed(seed, 6, i),
            () if c == "ctrl" else (c,),
            params["noise_s"],
        )
        for i, c in enumerate(conditions)
    ]
    results = _run_all(jobs, n_jobs, int(params["cells_per_trajectory"]))
    clean_cells, sample_of_cell, rows = [], [], []
    for cond, by_type in zip(conditions, results, strict=True):
        for t, block in enumerate(by_type):
            clean_cells.append(block.T)
            for r in range(n_rep):
                sample_of_cell += [len(rows)] * per_rep
                rows.append(
                    {
                        "sample": f"type_{t}|{cond}|rep{r + 1}",
                        "cell_type": f"type_{t}",
                        "replicate": f"rep{r + 1}",
                        "condition": cond,
                        "ko_gene": "" if cond == "ctrl" else cond,
                    }
                )
    clean = np.vstack(clean_cells)
    counts = _noisy_counts(clean, np.zeros(len(clean), dtype=int), params, seed)
    owner = np.asarray(sample_of_cell)
    n_samples = len(rows)
    agg = sp.csr_matrix((np.ones(len(owner)), (owner, np.arange(len(owner)))), shape=(n_samples, len(owner)))
    bulk_counts = np.asarray(agg @ counts)
    bulk_clean = np.asarray(agg @ clean)
    obs = pd.DataFrame(rows).set_index("sample")
    obs.index.name = None
    adata = ad.AnnData(
        X=sp.csr_matrix(bulk_counts.astype(np.float32)),
        obs=obs,
        var=_var(truth),
        layers={"clean": bulk_clean.astype(np.float32)},
    )
    adata.uns["grn"] = _grn_uns(truth)
    return adata


def simulate(params: dict[str, Any], n_jobs: int | None = None) -> ad.AnnData:
    """Simulate one design from resolved parameters (see :func:`resolve_params`)."""
    if n_jobs is None:
        n_jobs = int(params.get("n_jobs") or min(2, os.cpu_count() or 1))
    seed = int(params["seed"])
    truth = build_grn(
        params["grn_source"],
        int(params["n_genes"]),
        1 if params["design"] == "perturb" else int(params["n_cell_types"]),
        _child_seed(seed, 0),
        int(params["max_regulators"]),
    )
    fit_half_response(truth)
    design = params["design"]
    if design == "batches":
        adata = simulate_batches(truth, params, n_jobs)
    elif design == "perturb":
        adata = simulate_perturb(truth, params, n_jobs)
    else:
        adata = simulate_bulk_ko(truth, params, n_jobs)
    adata.uns["simulation"] = {k: v for k, v in params.items() if k != "n_jobs"}
    return adata
