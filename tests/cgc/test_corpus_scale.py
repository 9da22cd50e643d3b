"""Corpus building from TileDB-SOMA and in parallel gives the corpus of a serial h5ad build.

A local SOMA experiment is written from real PBMC 3k counts with ``tiledbsoma.io.from_h5ad``;
the corpus built from it (chunks processed on a 2-process Dask ``LocalCluster``) must hold the
same cells, genes, values, split and per-input statistics as the serial build from the h5ad.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import anndata as ad
import numpy as np
import pytest

from cgc import GenePriors, build_corpus

tiledbsoma_io = pytest.importorskip("tiledbsoma.io")
pytest.importorskip("distributed")

from cgc.errors import InputFileError  # noqa: E402
from cgc.train.sources import SomaInput  # noqa: E402

SETTINGS = {"shard_size": 250, "seed": 3, "val_fraction": 0.1, "min_genes": 100, "chunk_size": 128,
            "n_hvg": 1500}


def _arrays(root: Path) -> dict[str, np.ndarray]:
    return {f"{d.name}/{f.name}": np.load(f) for d in sorted(root.iterdir())
            if d.is_dir() and d.name != "priors" for f in sorted(d.glob("*.npy"))}


def _same_corpus(a: Path, b: Path) -> None:
    ma, mb = (json.loads((p / "corpus.json").read_text()) for p in (a, b))
    assert {k: v for k, v in ma.items() if k != "sources"} == {k: v for k, v in mb.items() if k != "sources"}
    for sa, sb in zip(ma["sources"], mb["sources"], strict=True):
        sa, sb = dict(sa), dict(sb)
        sa.pop("source"), sb.pop("source")
        assert sa == sb
    xa, xb = _arrays(a), _arrays(b)
    assert sorted(xa) == sorted(xb) and len(xa) > 8
    for name, arr in xa.items():
        assert arr.dtype == xb[name].dtype and np.array_equal(arr, xb[name]), name


@pytest.fixture(scope="module")
def pbmc_files(pbmc_small: ad.AnnData, tmp_path_factory) -> tuple[Path, str]:
    root = tmp_path_factory.mktemp("soma")
    adata = pbmc_small.copy()
    adata.obs["n_counts"] = np.asarray(adata.X.sum(1)).ravel().astype(np.float64)
    h5ad = root / "pbmc.h5ad"
    adata.write_h5ad(h5ad)
    uri = str(root / "pbmc_soma")
    tiledbsoma_io.from_h5ad(uri, str(h5ad), measurement_name="RNA")
    return h5ad, uri


def test_soma_on_dask_equals_serial_h5ad(pbmc_files, priors: GenePriors, tmp_path):
    from cgc.train.parallel import executor_map

    h5ad, uri = pbmc_files
    serial = build_corpus([h5ad], tmp_path / "h5ad", priors, **SETTINGS)
    with executor_map("dask", workers=2) as map_fn:
        assert map_fn is not None
        soma = build_corpus([SomaInput(uri)], tmp_path / "soma", priors, map_fn=map_fn, window=3,
                            **SETTINGS)
        both = build_corpus([h5ad, SomaInput(uri)], tmp_path / "both", priors, map_fn=map_fn,
                            **SETTINGS)
    _same_corpus(serial, soma)
    assert json.loads((soma / "corpus.json").read_text())["sources"][0]["source"] == uri
    # two inputs: same split stream and per-input statistics as a serial build of the two files
    _same_corpus(build_corpus([h5ad, h5ad], tmp_path / "two", priors, **SETTINGS), both)


def test_soma_obs_filter_selects_the_same_cells(pbmc_files, priors: GenePriors, tmp_path):
    h5ad, uri = pbmc_files
    adata = ad.read_h5ad(h5ad)
    cut = float(np.median(adata.obs["n_counts"]))
    subset = tmp_path / "subset.h5ad"
    adata[adata.obs["n_counts"].to_numpy() > cut].copy().write_h5ad(subset)
    a = build_corpus([subset], tmp_path / "a", priors, **SETTINGS)
    b = build_corpus([SomaInput(uri, f"n_counts > {cut}")], tmp_path / "b", priors, **SETTINGS)
    _same_corpus(a, b)
    assert json.loads((b / "corpus.json").read_text())["sources"][0]["n_cells"] == int(
        (adata.obs["n_counts"] > cut).sum())


@pytest.mark.parametrize(
    ("obs_filter", "message"),
    [("n_counts < 0", "matches no cell"), ("no_such_column == 1", "is invalid")],
)
def test_bad_obs_filter_is_refused_before_any_write(pbmc_files, priors: GenePriors, tmp_path, obs_filter,
                                                    message):
    _h5ad, uri = pbmc_files
    with pytest.raises(InputFileError, match=message) as info:
        build_corpus([SomaInput(uri, obs_filter)], tmp_path / "corpus", priors)
    assert "\n" not in str(info.value)
    assert not (tmp_path / "corpus").exists() and not (tmp_path / "corpus.building").exists()


def test_missing_soma_uri_is_one_line_exit_2(priors: GenePriors, tmp_path):
    bundle = tmp_path / "priors"
    priors.save(bundle)
    out = tmp_path / "corpus"
    cmd = [sys.executable, "-m", "benchmarks.cli", "corpus", "build", "--out", str(out), "--soma",
           str(tmp_path / "nowhere"), "--obs-filter", "cell_type == 'B'", "--priors", str(bundle)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, COLUMNS="80"))
    assert proc.returncode == 2, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "no SOMA experiment there" in lines[0], proc.stderr
    assert not out.exists() and not out.with_name("corpus.building").exists()
