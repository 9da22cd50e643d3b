"""Fixtures for the baseline adapter tests: tiny real data and the shared reference tables.

Data files are reached through the dataset cards in ``datasets/`` with ``CGCBENCH_MIRRORS``
pointing at the shared data folder (``../shared/data`` next to the repository unless set).
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import anndata as ad
import numpy as np
import pytest
import scipy.sparse as sp

REPO = Path(__file__).resolve().parents[2]
MIRROR = Path(os.environ.get("CGCBENCH_MIRRORS", "").split(os.pathsep)[0] or REPO.parent / "shared" / "data")


@pytest.fixture(scope="session", autouse=True)
def _data_env(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Point the card resolver at the shared mirror (the real cards under ``datasets/``)."""
    if not MIRROR.is_dir():
        pytest.skip(f"shared data folder {MIRROR} not found")
    os.environ.setdefault("CGCBENCH_MIRRORS", str(MIRROR))
    os.environ.setdefault("CGCBENCH_DATA_DIR", str(tmp_path_factory.mktemp("cache")))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def _read(rel: str) -> ad.AnnData:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return ad.read_h5ad(MIRROR / rel)


def _standardise(adata: ad.AnnData, kind: str, name: str) -> ad.AnnData:
    X = adata.X if sp.issparse(adata.X) else sp.csr_matrix(adata.X)
    out = ad.AnnData(X=sp.csr_matrix(X, dtype=np.float32), obs=adata.obs.copy(), var=adata.var.copy())
    out.uns["cgcbench"] = {"dataset": {"name": name, "expression_kind": kind}}
    return out


@pytest.fixture(scope="session")
def kang_small() -> ad.AnnData:
    """240 Kang PBMC cells (2 batches: ctrl/stim) × 600 genes, raw counts, symbols."""
    full = _read("scrna/kang_pbmc_ctrl_stim.h5ad")
    rng = np.random.default_rng(0)
    cells = np.sort(
        np.concatenate(
            [rng.choice(np.flatnonzero(full.obs["batch"] == b), 120, replace=False) for b in ("ctrl", "stim")]
        )
    )
    sub = full[cells]
    counts = np.asarray(sub.X.sum(0)).ravel()
    genes = np.sort(np.argsort(-counts)[:600])
    out = _standardise(sub[:, genes].copy(), "counts", "kang_small")
    out.var["gene_symbol"] = out.var_names.astype(str)
    return out


@pytest.fixture(scope="session")
def pbmc_labelled() -> ad.AnnData:
    """pbmc68k_reduced (700 cells, 10 labels): counts-like integers rebuilt from ``.raw``.

    scanpy ships this set log-normalised; rounding ``expm1`` of it recovers an integer matrix
    shaped like counts, enough for the scVI/scANVI likelihoods in a test.
    """
    full = _read("scrna/pbmc68k_reduced.h5ad")
    raw = full.raw.to_adata()
    X = raw.X.toarray() if sp.issparse(raw.X) else np.asarray(raw.X)
    counts = np.rint(np.expm1(X)).astype(np.float32)
    out = _standardise(
        ad.AnnData(counts, obs=full.obs[["bulk_labels", "phase"]].copy(), var=raw.var[[]].copy()),
        "counts",
        "pbmc68k",
    )
    out.obs["bulk_labels"] = out.obs["bulk_labels"].astype(str)
    out.var["gene_symbol"] = out.var_names.astype(str)
    return out


@pytest.fixture(scope="session")
def norman() -> ad.AnnData:
    """The 50-cell Norman 2019 Perturb-seq subset (Ensembl var_names, symbols in var)."""
    raw = _read("perturb/norman_subset.h5ad")
    out = _standardise(raw, "log1p_normalized", "norman_subset")
    out.var["gene_symbol"] = raw.var["feature_name"].astype(str).values
    out.var["ensembl_id"] = out.var_names.astype(str)
    return out


@pytest.fixture(scope="session")
def mirror() -> Path:
    """The shared data folder."""
    return MIRROR
