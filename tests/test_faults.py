"""Fault injection: kills, timeouts, concurrent writers, corrupt caches, malformed inputs.

Each test injects one fault into a real ``cgcbench run`` (subprocess, real data) and checks
that nothing is lost, nothing claims success that did not succeed, and ``--resume`` finishes
the matrix.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import anndata as ad
import numpy as np
import pytest
import scipy.sparse as sp

from benchmarks.data.cards import get_card
from benchmarks.data.fetch import data_dir, sha256_file
from benchmarks.data.load import load_dataset

CMD = [sys.executable, "-m", "benchmarks.cli"]


def _run(*args: str, cwd: Path, **kw) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CMD, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=900,
        env=dict(os.environ, COLUMNS="200"),
        **kw,
    )


def _records(results: Path) -> list[dict]:
    return [
        json.loads(p.read_text())
        for p in sorted((results / "records").rglob("*.json"))
        if not p.name.startswith(".")
    ]


def _live_runs(results: Path) -> list:
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{results}/mlflow.db")
    exp = client.get_experiment_by_name("cgcbench/annotation")
    cells_only = "tags.`cgcbench.record_id` != ''"  # not the invocations' parent runs
    return client.search_runs([exp.experiment_id], filter_string=cells_only) if exp else []


def _matrix(user_file: Path, results: Path, seeds: str = "0,1,2") -> list[str]:
    return [
        "run",
        "annotation",
        "--models",
        "majority,pca-logreg",
        "--datasets",
        str(user_file),
        "--label-key",
        "cell_type",
        "--seeds",
        seeds,
        "--results-dir",
        str(results),
    ]


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_kill_mid_run_then_resume(tmp_path, pbmc_user_file, sig):
    results = tmp_path / "results"
    proc = subprocess.Popen(
        [*CMD, *_matrix(pbmc_user_file, results)],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 300
    while time.time() < deadline and len(list((results / "records").rglob("*.json"))) < 2:
        time.sleep(0.2)
    proc.send_signal(sig)
    proc.wait(timeout=120)
    assert proc.returncode != 0
    partial = _records(results)
    assert 2 <= len(partial) < 6
    for rec in partial:  # whatever was written is complete and true
        assert rec["status"] == "FINISHED"
        assert all((results / a).is_file() for a in rec["artifacts"])
    if sig == signal.SIGTERM:  # SIGTERM unwinds: the staging directory is cleaned up at once
        assert not list(results.glob(".staging-*"))
    resumed = _run(*_matrix(pbmc_user_file, results), "--resume", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    final = _records(results)
    assert len(final) == 6 and {r["status"] for r in final} == {"FINISHED"}
    assert not list(results.glob(".staging-*"))
    assert not list((results / "artifacts").rglob("*.incoming-*"))
    runs = _live_runs(results)
    assert sorted(r.data.tags["cgcbench.record_id"] for r in runs) == sorted(r["record_id"] for r in final)
    # cells finished before the kill were not re-run
    kept = {r["record_id"]: r["provenance"]["started_at_ms"] for r in partial}
    assert all(
        r["provenance"]["started_at_ms"] == kept[r["record_id"]] for r in final if r["record_id"] in kept
    )


def test_timeout_per_run_fails_only_that_cell(tmp_path, pbmc_user_file):
    results = tmp_path / "results"
    proc = _run(*_matrix(pbmc_user_file, results, seeds="0"), "--timeout-per-run", "0.5", cwd=tmp_path)
    assert proc.returncode == 1
    recs = _records(results)
    assert len(recs) == 2
    for rec in recs:
        assert rec["status"] == "FAILED" and rec["error"]["type"] == "CellTimeout"
        assert "timed out after 0.5 s" in rec["error"]["message"]
        assert rec["artifacts"] == [] and rec["metrics"] == {}


def test_isolated_cells_give_the_same_numbers(tmp_path, pbmc_user_file):
    a, b = tmp_path / "inproc", tmp_path / "isolated"
    assert _run(*_matrix(pbmc_user_file, a, seeds="0"), cwd=tmp_path).returncode == 0
    assert _run(*_matrix(pbmc_user_file, b, seeds="0"), "--isolate", cwd=tmp_path).returncode == 0
    ma = {r["model"]["name"]: r["metrics"] for r in _records(a)}
    mb = {r["model"]["name"]: r["metrics"] for r in _records(b)}
    assert ma == mb
    assert all(r["provenance"]["isolated"] for r in _records(b))
    assert all(r["provenance"]["resources"]["peak_rss_mb"] > 50 for r in _records(b))


def test_concurrent_runs_share_one_store(tmp_path, pbmc_user_file):
    results = tmp_path / "results"
    procs = [
        subprocess.Popen(
            [*CMD, *_matrix(pbmc_user_file, results, seeds=s)],
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for s in ("0,1", "2,3")
    ]
    for p in procs:
        _, err = p.communicate(timeout=900)
        assert p.returncode == 0, err
    recs = _records(results)
    assert len(recs) == 8 and {r["status"] for r in recs} == {"FINISHED"}
    assert len(_live_runs(results)) == 8


def test_offline_then_sync(tmp_path, pbmc_user_file):
    results = tmp_path / "results"
    proc = _run(*_matrix(pbmc_user_file, results, seeds="0"), "--offline", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert not (results / "mlflow.db").exists()
    assert all(r["mlflow"] == {"offline": True} for r in _records(results))
    synced = _run("sync", "--results-dir", str(results), cwd=tmp_path)
    assert synced.returncode == 0, synced.stderr
    assert "logged 2 record(s)" in synced.stdout
    recs = _records(results)
    assert all(r["mlflow"].get("run_id") for r in recs)
    assert len(_live_runs(results)) == 2
    again = _run("sync", "--results-dir", str(results), cwd=tmp_path)
    assert "logged 0 record(s) to MLflow; 2 already there" in again.stdout


def test_corrupt_cached_dataset_is_replaced_not_used(shared_data):
    card = get_card("pbmc68k_reduced")
    cached = data_dir() / card.name / card.primary_file.name
    cached.parent.mkdir(parents=True, exist_ok=True)
    cached.write_bytes((shared_data / "scrna" / "pbmc68k_reduced.h5ad").read_bytes()[:5000])  # truncated
    _, adata = load_dataset("pbmc68k_reduced")
    assert adata.n_obs == 700
    assert not cached.exists()  # the corrupt copy was removed; the verified mirror was used
    assert sha256_file(Path(adata.uns["cgcbench"]["dataset"]["path"])) == card.primary_file.sha256


def _malformed(kind: str, src: ad.AnnData, path: Path) -> list[str]:
    a = src[:80].copy()
    a.obs = a.obs.rename(columns={"bulk_labels": "cell_type"})
    X = a.X.toarray() if sp.issparse(a.X) else np.array(a.X)
    extra: list[str] = []
    if kind == "missing obs key":
        a.obs = a.obs.drop(columns=["cell_type"])
    elif kind == "non-integer counts":
        extra = ["--expression-kind", "counts"]
    elif kind == "NaN":
        X[3, 3] = np.nan
    elif kind == "empty":
        a = a[:0].copy()
        X = X[:0]
    elif kind == "duplicated var names":
        a.var_names = [a.var_names[0]] + list(a.var_names[:-1])
    a.X = X
    a.write_h5ad(path)
    return extra


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("missing obs key", "obs has no column 'cell_type'"),
        ("non-integer counts", "declared 'counts' but holds non-integer values"),
        ("NaN", "1 NaN values"),
        ("empty", "the data set is empty"),
        ("duplicated var names", "duplicated gene names"),
    ],
)
def test_malformed_h5ad_is_rejected_before_any_work(tmp_path, pbmc68k_raw, kind, message):
    path = tmp_path / "bad.h5ad"
    extra = _malformed(kind, pbmc68k_raw, path)
    results = tmp_path / "results"
    proc = _run(
        "run",
        "annotation",
        "--models",
        "majority",
        "--datasets",
        str(path),
        "--label-key",
        "cell_type",
        "--results-dir",
        str(results),
        *extra,
        cwd=tmp_path,
    )
    assert proc.returncode == 2
    assert message in " ".join(proc.stderr.split()) and str(path) in " ".join(proc.stderr.split())
    assert not (results / "records").exists()


def test_mismatched_gene_ids_against_the_card(tmp_path, pbmc68k_raw, monkeypatch):
    """A card that says 'symbol' over a file of Ensembl ids is stopped with the fix named."""
    mirror = tmp_path / "mirror" / "scrna"
    mirror.mkdir(parents=True)
    a = pbmc68k_raw.copy()
    a.var_names = [f"ENSG{i:011d}" for i in range(a.n_vars)]
    a.write_h5ad(mirror / "pbmc68k_reduced.h5ad")
    cards = tmp_path / "cards"
    cards.mkdir()
    text = (Path(get_card("pbmc68k_reduced").path)).read_text()
    text = text.replace(
        get_card("pbmc68k_reduced").primary_file.sha256, sha256_file(mirror / "pbmc68k_reduced.h5ad")
    )
    text = text.replace('expression = "raw.X"', 'expression = "X"')
    (cards / "pbmc68k_reduced.toml").write_text(text)
    monkeypatch.setenv("CGCBENCH_CARDS", str(cards))
    monkeypatch.setenv("CGCBENCH_MIRRORS", str(mirror.parent))
    from benchmarks.errors import InputError

    with pytest.raises(InputError, match="declares gene symbols but 100% of var_names are Ensembl ids"):
        load_dataset("pbmc68k_reduced")
    shutil.rmtree(cards)
