"""The Python API (``import cgcbench``) and bring-your-own embeddings, against the CLI.

Real data: scanpy's labelled 68k-PBMC subset (700 cells) and Geneformer's dosage-sensitivity
gene labels, from the shared mirror.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest

import cgcbench as cb

METRICS = ("accuracy", "precision_macro", "recall_macro", "f1_macro")


def _records(results: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((results / "records").rglob("*.json"))]


def _by_model(records: list[dict]) -> dict[str, dict]:
    return {r["model"]["label"]: r for r in records}


@pytest.fixture()
def pbmc_with_embedding(tmp_path: Path, pbmc68k_raw: ad.AnnData) -> Path:
    """The PBMC user file carrying a precomputed embedding (scanpy's PCA of its matrix)."""
    import scanpy as sc

    adata = pbmc68k_raw.copy()
    adata.obs = adata.obs.rename(columns={"bulk_labels": "cell_type"})
    tmp = adata.copy()
    sc.pp.pca(tmp, n_comps=20, random_state=0)
    adata.obsm["X_mine"] = tmp.obsm["X_pca"]
    path = tmp_path / "my_pbmc.h5ad"
    adata.write_h5ad(path)
    return path


def test_api_on_in_memory_anndata_equals_cli(tmp_path, pbmc_with_embedding):
    """Same file, same seeds: `cgcbench run` (a real subprocess) and cb.run(adata=...) agree."""
    cli_dir, api_dir = tmp_path / "cli", tmp_path / "api"
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.cli", "run", "annotation", "--models", "majority,pca-logreg",
         "--embedding-key", "X_mine", "--datasets", str(pbmc_with_embedding), "--label-key", "cell_type",
         "--seeds", "1", "--offline", "--results-dir", str(cli_dir)],
        env=dict(os.environ, COLUMNS="200"), capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "obsm:X_mine" in proc.stdout
    cli = _records(cli_dir)
    df = cb.run(
        "annotation",
        ["majority", "pca-logreg"],
        adata=ad.read_h5ad(pbmc_with_embedding),
        dataset_name="my_pbmc",
        embedding_key="X_mine",
        seeds=(1,),
        label_key="cell_type",
        offline=True,
        results_dir=api_dir,
    )
    assert isinstance(df, pd.DataFrame)
    assert sorted(df["model"].unique()) == ["majority", "obsm:X_mine", "pca-logreg"]
    assert (df["status"] == "FINISHED").all() and len(df) == 3 == len(cli)
    assert set(df["dataset"]) == {"my_pbmc"}
    for rec in cli:
        row = df[(df["model"] == rec["model"]["label"]) & (df["seed"] == rec["seed"])].iloc[0]
        for m in METRICS:
            assert row[m] == pytest.approx(rec["metrics"][m], abs=1e-12), (rec["model"]["label"], m)
    # the records are written as the CLI writes them, with the in-memory data's file and sha256
    api_recs = _records(api_dir)
    assert len(api_recs) == 3
    ds = api_recs[0]["dataset"]
    assert ds["name"] == "my_pbmc" and Path(ds["path"]).is_file() and ds["sha256"]
    # the user's own embedding is a real model here: it beats the majority control by far
    mine = df[df["model"] == "obsm:X_mine"]["accuracy"].mean()
    majority = df[df["model"] == "majority"]["accuracy"].mean()
    assert mine > majority + 0.2, (mine, majority)


def test_evaluate_embedding_of_pca_equals_the_pca_control(tmp_path, pbmc68k_raw):
    """PCA coordinates computed exactly as the `pca` control does score exactly as that control."""
    from baselines.pca import PCAAdapter
    from benchmarks.data.load import UserKeys, load_dataset

    path = tmp_path / "pbmc.h5ad"
    pbmc68k_raw.write_h5ad(path)
    _, loaded = load_dataset(str(path), UserKeys(label_key="bulk_labels", batch_key="phase"))
    adata = pbmc68k_raw.copy()
    adata.obsm["X_pca_mine"] = PCAAdapter(seed=0).embed_cells(loaded)
    df = cb.evaluate_embedding(
        adata, "X_pca_mine", suite="clustering", label_key="bulk_labels", batch_key="phase",
        results_dir=tmp_path / "res", offline=True,
    )
    assert list(df["model"]) == ["obsm:X_pca_mine", "pca", "shuffled"]
    assert (df["status"] == "FINISHED").all(), df["reason"].tolist()
    mine, pca, shuffled = (df.iloc[i] for i in range(3))
    for m in ("nmi", "ari", "asw_label", "asw_batch", "graph_connectivity", "overall"):
        assert mine[m] == pytest.approx(pca[m], abs=1e-9), m
    assert mine["nmi"] > shuffled["nmi"] + 0.2
    assert mine["init"] == "pretrained" and pca["is_control"]


def _run_cli(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    from benchmarks import cli

    monkeypatch.setattr(sys, "argv", ["cgcbench", *args])
    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        with pytest.raises(SystemExit) as exc:
            cli.main()
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)
    out = capsys.readouterr()
    return int(exc.value.code or 0), out.out, out.err


def test_gene_table_through_cli_equals_the_same_vectors_through_an_adapter(
    tmp_path, monkeypatch, capsys, shared_data
):
    """The `random` control's vectors written to a parquet table score exactly as `random` does."""
    from baselines.random_embedding import RandomEmbeddingAdapter
    from benchmarks.data.cards import get_card
    from benchmarks.data.fetch import resolve
    from benchmarks.suites.gene_classification import read_label_set

    _, classes = read_label_set(next(iter(resolve(get_card("dosage_sensitivity_tfs")).values())))
    genes = sorted(set(classes[0]) | set(classes[1]))
    table = RandomEmbeddingAdapter(seed=0).embed_genes(genes, id_type="ensembl")
    table.columns = [f"d{i}" for i in range(table.shape[1])]
    path = tmp_path / "my_genes.parquet"
    table.to_parquet(path)
    results = tmp_path / "res"
    rc, out, err = _run_cli(
        monkeypatch, capsys, "run", "gene-classification", "--gene-embeddings", str(path),
        "--datasets", "dosage_sensitivity_tfs", "--quick", "--offline", "--results-dir", str(results),
    )
    assert rc == 0, err
    recs = _by_model(_records(results))
    assert set(recs) == {"genes:my_genes", "random"}  # the suite's control runs beside the table
    mine, control = recs["genes:my_genes"], recs["random"]
    assert mine["status"] == control["status"] == "FINISHED"
    assert mine["metrics"]["roc_auc"] == control["metrics"]["roc_auc"]
    assert mine["metrics"]["coverage"] == control["metrics"]["coverage"] == 1.0
    assert mine["model"]["checkpoint_sha256"] and mine["model"]["init"] == "pretrained"


def test_bad_embedding_inputs_stop_before_any_work(tmp_path, monkeypatch, capsys, pbmc_with_embedding):
    results = tmp_path / "res"
    rc, _, err = _run_cli(
        monkeypatch, capsys, "run", "annotation", "--embedding-key", "X_nope", "--datasets",
        str(pbmc_with_embedding), "--label-key", "cell_type", "--offline", "--results-dir", str(results),
    )
    assert rc == 2 and "obsm has no key 'X_nope'" in err and "X_mine" in err
    assert not results.exists()
    bad = tmp_path / "bad.csv"
    pd.DataFrame({"gene": ["TP53", "TP53", "GATA1"], "d0": [1.0, 2.0, 3.0]}).to_csv(bad, index=False)
    rc, _, err = _run_cli(
        monkeypatch, capsys, "run", "gene-classification", "--gene-embeddings", str(bad), "--offline",
        "--results-dir", str(results),
    )
    assert rc == 2 and "duplicated gene ids" in err and "TP53" in err
    rc, _, err = _run_cli(
        monkeypatch, capsys, "run", "grn", "--embedding-key", "X_mine", "--offline",
        "--results-dir", str(results),
    )
    assert rc == 2 and "--embedding-key scores cell embeddings" in err
    assert not results.exists()


def test_embed_writes_obsm_and_varm(pbmc68k_raw):
    adata = pbmc68k_raw.copy()
    out = cb.embed(adata, model="random", key="X_rand")
    assert out is adata
    assert adata.obsm["X_rand"].shape == (adata.n_obs, 50)
    assert adata.varm["random_genes"].shape == (adata.n_vars, 200)
    assert np.isfinite(adata.varm["random_genes"]).all()
    assert adata.uns["cgcbench_embed"]["X_rand"]["model"] == "random"
    pca = cb.embed(adata, model="pca", key="X_p").obsm["X_p"]
    assert pca.shape[0] == adata.n_obs and "pca_genes" not in adata.varm


def test_non_tty_run_logs_one_line_per_cell_and_quiet_silences_them(
    tmp_path, monkeypatch, capsys, shared_data
):
    """Into a log file, each cell's start and finish is one plain line; --quiet drops them."""
    from baselines.random_embedding import RandomEmbeddingAdapter

    table = RandomEmbeddingAdapter(seed=3).embed_genes(["TP53", "GATA1", "SPI1", "MYC"], id_type="symbol")
    table.columns = [f"d{i}" for i in range(table.shape[1])]
    path = tmp_path / "few_genes.csv"
    table.to_csv(path)
    args = ["run", "gene-classification", "--gene-embeddings", str(path), "--models", "random",
            "--datasets", "dosage_sensitivity_tfs", "--quick", "--offline"]
    rc, out, err = _run_cli(monkeypatch, capsys, *args, "--results-dir", str(tmp_path / "a"))
    # four genes cannot fill 5 folds: the table's cell fails, and its line says why in one line
    assert rc == 1
    lines = [ln for ln in err.splitlines() if " cell " in f" {ln}"]
    assert sum(" start: " in ln for ln in lines) == 2, err
    assert any("finished in" in ln and "random" in ln for ln in lines), err
    failed = [ln for ln in lines if "failed in" in ln]
    assert len(failed) == 1 and "genes:few_genes" in failed[0] and "5-fold CV needs" in failed[0]
    assert "None" not in out
    rc, out, err = _run_cli(monkeypatch, capsys, *args, "--quiet", "--results-dir", str(tmp_path / "b"))
    assert rc == 1 and " start: " not in err and "genes:few_genes" in out  # the table still prints
