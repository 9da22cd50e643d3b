"""Fixtures of the cgc adapter tests: tiny priors (hashing text encoder) and a tiny checkpoint."""

from __future__ import annotations

from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from cgc import CGCConfig, CGCModel, GenePriors, save_checkpoint
from cgc.priors import HashingTextEncoder


@pytest.fixture(scope="session")
def prior_files() -> dict[str, Path]:
    from baselines.gene_ids import resource_path
    from benchmarks.errors import CgcbenchError

    try:
        return {
            "vocab_path": resource_path("cgc_vocab"),
            "trrust_path": resource_path("trrust_human"),
            "positions_path": resource_path("gene_positions_hg38"),
            "gene_info_path": resource_path("gene_info_hs"),
        }
    except (CgcbenchError, OSError) as exc:  # pragma: no cover - data mirror missing
        pytest.skip(f"prior files not available ({exc})")


@pytest.fixture(scope="session")
def pbmc_tiny() -> ad.AnnData:
    """300 PBMC 3k cells (raw counts), genes detected in >= 30 of them."""
    from benchmarks.data.load import load_dataset
    from benchmarks.errors import CgcbenchError

    try:
        _, a = load_dataset("pbmc3k_raw")
    except CgcbenchError as exc:  # neither mirrored nor downloadable here: say so, do not error
        pytest.skip(f"pbmc3k_raw is not available ({str(exc).splitlines()[0][:300]})")
    a = a[:300].copy()
    a.var_names_make_unique()
    detected = np.asarray((a.X > 0).sum(0)).ravel()
    a = a[:, detected >= 30].copy()
    a.X = sp.csr_matrix(a.X, dtype=np.float32)
    return a


@pytest.fixture(scope="session")
def tiny_priors(pbmc_tiny: ad.AnnData, prior_files: dict[str, Path], tmp_path_factory) -> GenePriors:
    return GenePriors.build(corpus=[pbmc_tiny], text_encoder=HashingTextEncoder(16),
                            text_cache_dir=tmp_path_factory.mktemp("text"), extend_vocab=False,
                            **prior_files)


@pytest.fixture(scope="session")
def tiny_config() -> CGCConfig:
    return CGCConfig.small(d_model=32, n_heads=4, d_ff=64, max_genes=64, n_transformer_layers=1,
                           n_gnn_layers=2)


@pytest.fixture(scope="session")
def tiny_checkpoint(tiny_priors: GenePriors, tiny_config: CGCConfig, tmp_path_factory) -> Path:
    import torch

    torch.manual_seed(123)
    model = CGCModel(tiny_config, tiny_priors)
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny", model, tiny_priors, step=0)


@pytest.fixture()
def small_adapter_kwargs(tiny_checkpoint: Path) -> dict:
    return {"checkpoint": str(tiny_checkpoint), "finetune_epochs": 1, "max_steps": 12, "max_cells": 64,
            "batch_size": 8, "grad_accum": 1, "lr": 3e-3, "n_control_cells": 4}


@pytest.fixture(scope="session")
def labelled(pbmc68k_raw: ad.AnnData) -> ad.AnnData:
    """120 PBMCs of the three commonest real cell types of pbmc68k_reduced (log-normalised .raw).

    Labels are the data set's bulk-sorted cell types (never a function of library size);
    cells are shuffled (seeded) so any prefix holds every type.
    """
    a = pbmc68k_raw.copy()
    labels = a.obs["bulk_labels"].astype(str)
    top = labels.value_counts().index[:3]
    rng = np.random.default_rng(0)
    rows = np.concatenate([rng.choice(np.flatnonzero(labels == t), 40, replace=False) for t in top])
    a = a[rng.permutation(rows)].copy()
    a.obs["cell_type"] = a.obs["bulk_labels"].astype(str)
    a.var["gene_symbol"] = a.var_names.astype(str)
    a.X = sp.csr_matrix(a.X, dtype=np.float32)
    return a


@pytest.fixture(scope="session")
def kang_batches() -> ad.AnnData:
    """120 Kang PBMCs (raw counts) with their real ctrl/stim batch (IFN-β stimulation)."""
    from benchmarks.data.load import load_dataset

    _, a = load_dataset("kang_pbmc_ctrl_stim")
    rng = np.random.default_rng(0)
    b = a.obs["batch"].astype(str).to_numpy()
    rows = np.concatenate([rng.choice(np.flatnonzero(b == v), 60, replace=False) for v in sorted(set(b))])
    a = a[np.sort(rows)].copy()
    a.X = sp.csr_matrix(a.X, dtype=np.float32)
    return a


@pytest.fixture(scope="session")
def perturb_data(pbmc_tiny: ad.AnnData) -> ad.AnnData:
    """Log-normalised cells with synthetic perturbations of real genes: 'A+ctrl' lowers gene A."""
    import scanpy as sc

    a = pbmc_tiny[:160].copy()
    sc.pp.normalize_total(a, target_sum=1e4)
    sc.pp.log1p(a)
    X = a.X.toarray()
    top = list(a.var_names[np.argsort(-X.mean(0))[:4]])
    names = ["ctrl", f"{top[0]}+ctrl", f"{top[1]}+ctrl", f"{top[0]}+{top[1]}"]
    conds = np.repeat(names, 40)
    for k, c in enumerate(conds):
        for g in c.split("+"):
            if g != "ctrl":
                X[k, a.var_names.get_loc(g)] = 0.0
    out = ad.AnnData(X.astype(np.float32), obs=pd.DataFrame({"condition": conds}, index=a.obs_names),
                     var=pd.DataFrame(index=a.var_names))
    return out
