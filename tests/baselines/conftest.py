"""Fixtures for the baseline adapter tests: tiny real data and the shared reference tables.

Data files are reached through dataset cards with ``CGCBENCH_MIRRORS`` pointing at the
shared data folder (``../shared/data`` next to the repository unless set). While a card the
adapters need is not (yet) in ``datasets/``, a minimal stand-in card is written to a temporary
``CGCBENCH_CARDS`` directory; real cards always win.
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
MIRROR = Path(os.environ.get("CGCBENCH_TEST_MIRROR", REPO.parent / "shared" / "data"))

# name -> [(file name, mirror path, sha256)] (from MANIFEST.md of the shared data folder)
FALLBACK_CARDS: dict[str, tuple[str, list[tuple[str, str, str]]]] = {
    "gene_info_hs": ("priors", [(
        "gene_info_hs.tsv.gz", "priors/gene_info_hs.tsv.gz",
        "921d2a709bb0e3c547343c7b13db93472e1a9696f2f8afb40115a908fbc4c890",
    )]),
    "gene2go_hs": ("priors", [(
        "gene2go_hs.tsv.gz", "priors/gene2go_hs.tsv.gz",
        "bcf4d5f7ff196698f5e84af8d13f0717de9f641c596a08a3497edd972248d02f",
    )]),
    "go_terms": ("priors", [(
        "go_terms.tsv.gz", "priors/go_terms.tsv.gz",
        "813a57f756a3343aa155f6d9f23fc3aa671dc29bd993d81eb0a340703b0c1f28",
    )]),
    "geneformer_vocab": ("vocab", [
        ("geneformer_token_dictionary.pkl", "vocab/geneformer/geneformer_token_dictionary.pkl",
         "ab9dc40973fa5224d77b793e2fd114cacf3d08423ed9c4c49caf0ba9c7f218f1"),
        ("geneformer_gene_median_dictionary.pkl",
         "vocab/geneformer/geneformer_gene_median_dictionary.pkl",
         "b3b589bb5ec75040d05fc44dd6bf0184cf87f3c362cf158d196a6ed3b7fe5f39"),
        ("geneformer_gene_name_id_dict.pkl", "vocab/geneformer/geneformer_gene_name_id_dict.pkl",
         "55e67962e79c0039a6c32d43c5c99f38e51964bbcfa32f736150ee1e285c438c"),
        ("config.json", "vocab/geneformer/config.json",
         "9cf69ca3bdb0215c4188b54c451b6f02adfe68b8f66011a57d0f32845133fd4b"),
    ]),
    "scgpt_vocab": ("vocab", [
        ("default_census_vocab.json", "vocab/scgpt/default_census_vocab.json",
         "9fe73cf29929b5c66a5fffcfb2bcbdd3e38a3a086848cd12f8f918bcf458d75f"),
        ("finetuned_model_args.json", "vocab/scgpt/finetuned_model_args.json",
         "c18e075e018140cb8b2d9029387b9de26607a5ce6a8ccabd6ead70cd76b95d60"),
        ("finetuned_model_vocab.json", "vocab/scgpt/finetuned_model_vocab.json",
         "acca93d114ca62c3f0f50debbd23e8c87f0714f4737764454f6b2b13f2e8580f"),
    ]),
}


def _card_toml(name: str, kind: str, files: list[tuple[str, str, str]]) -> str:
    lines = [
        f'name = "{name}"', 'version = "test"', f'title = "{name} (test stand-in)"',
        'organism = "human"', 'gene_id_type = "symbol"', 'license = "see MANIFEST"',
        f'kind = "{kind}"',
    ]
    for fname, mirror, sha in files:
        lines += ["", "[[files]]", f'name = "{fname}"', f'mirror_path = "{mirror}"',
                  f'sha256 = "{sha}"']
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="session", autouse=True)
def _data_env(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Point the card resolver at the shared mirror; add stand-in cards that are missing."""
    if not MIRROR.is_dir():
        pytest.skip(f"shared data folder {MIRROR} not found")
    os.environ.setdefault("CGCBENCH_MIRRORS", str(MIRROR))
    os.environ.setdefault("CGCBENCH_DATA_DIR", str(tmp_path_factory.mktemp("cache")))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from benchmarks.data.cards import all_cards

    have = set(all_cards())
    extra = tmp_path_factory.mktemp("cards")
    for name, (kind, files) in FALLBACK_CARDS.items():
        if name not in have:
            (extra / f"{name}.toml").write_text(_card_toml(name, kind, files))
    old = os.environ.get("CGCBENCH_CARDS", "")
    os.environ["CGCBENCH_CARDS"] = os.pathsep.join(p for p in (old, str(extra)) if p)


def _read(rel: str) -> ad.AnnData:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return ad.read_h5ad(MIRROR / rel)


def _standardise(adata: ad.AnnData, kind: str, name: str) -> ad.AnnData:
    X = adata.X if sp.issparse(adata.X) else sp.csr_matrix(adata.X)
    out = ad.AnnData(X=sp.csr_matrix(X, dtype=np.float32), obs=adata.obs.copy(),
                     var=adata.var.copy())
    out.uns["cgcbench"] = {"dataset": {"name": name, "expression_kind": kind}}
    return out


@pytest.fixture(scope="session")
def kang_small() -> ad.AnnData:
    """240 Kang PBMC cells (2 batches: ctrl/stim) × 600 genes, raw counts, symbols."""
    full = _read("scrna/kang_pbmc_ctrl_stim.h5ad")
    rng = np.random.default_rng(0)
    cells = np.sort(np.concatenate([
        rng.choice(np.flatnonzero(full.obs["batch"] == b), 120, replace=False)
        for b in ("ctrl", "stim")
    ]))
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
    out = _standardise(ad.AnnData(counts, obs=full.obs[["bulk_labels", "phase"]].copy(),
                                  var=raw.var[[]].copy()), "counts", "pbmc68k")
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
