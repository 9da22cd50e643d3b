"""Fixtures of the cgc tests: the shared data mirror and small priors/corpora built from it."""

from __future__ import annotations

from pathlib import Path

import anndata as ad
import numpy as np
import pytest

from cgc import CGCConfig, GenePriors, build_corpus
from cgc.priors import HashingTextEncoder, PriorSources


@pytest.fixture(scope="session")
def pbmc_small(shared_data: Path) -> ad.AnnData:
    """PBMC 3k raw counts, 1,200 cells, genes detected in >= 30 of them."""
    a = ad.read_h5ad(shared_data / "scrna" / "pbmc3k_raw.h5ad")
    a = a[:1200].copy()
    detected = np.asarray((a.X > 0).sum(0)).ravel()
    a = a[:, detected >= 30].copy()
    a.var_names_make_unique()
    return a


@pytest.fixture(scope="session")
def sources(shared_data: Path) -> PriorSources:
    return PriorSources.from_dir(shared_data)


@pytest.fixture(scope="session")
def priors(pbmc_small: ad.AnnData, sources: PriorSources, tmp_path_factory) -> GenePriors:
    p = GenePriors.build(corpus=[pbmc_small], text_encoder=HashingTextEncoder(32),
                         text_cache_dir=tmp_path_factory.mktemp("textcache"),
                         **sources.as_kwargs())
    return p


@pytest.fixture(scope="session")
def corpus_dir(pbmc_small: ad.AnnData, priors: GenePriors, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("corpus") / "pbmc"
    return build_corpus([pbmc_small], out, priors, shard_size=300, seed=0, val_fraction=0.05,
                        min_genes=100)


@pytest.fixture()
def small_config() -> CGCConfig:
    return CGCConfig.small(d_model=32, n_heads=4, d_ff=64, max_genes=128,
                           n_transformer_layers=2, n_gnn_layers=2)
