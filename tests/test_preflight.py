"""Pre-flight: gene ids, organisms and installed packages decide NOT_APPLICABLE before any work."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import anndata as ad
import pytest

from benchmarks.data.load import UserKeys, load_dataset
from benchmarks.data.preflight import gene_coverage, package_gap, preflight
from benchmarks.errors import InputError
from benchmarks.interface import TaskData
from benchmarks.registry import build_model, model_class
from benchmarks.runner import MatrixRunner, RunRequest
from benchmarks.suites.clustering import ClusteringSuite

REPO = Path(__file__).resolve().parents[1]


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "benchmarks.cli", *args],
        cwd=cwd,
        env=dict(os.environ, COLUMNS="250"),
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("--expression-kind", "tmp", "--expression-kind 'tmp' is not an expression kind; use one of counts"),
        ("--organism", "martian", "--organism 'martian' is not a known organism; use one of human"),
    ],
)
def test_invalid_value_exits_2_before_any_work(tmp_path, pbmc_user_file, flag, value, message):
    results = tmp_path / "results"
    proc = _cli(
        "run", "annotation", "--models", "pca-logreg", "--datasets", str(pbmc_user_file),
        "--label-key", "cell_type", flag, value, "--results-dir", str(results), cwd=tmp_path,
    )
    assert proc.returncode == 2, proc.stderr
    assert message in " ".join(proc.stderr.split())
    assert not results.exists()


def test_symbols_from_a_var_column_raise_coverage(tmp_path, shared_data):
    """Versioned Ensembl ids beside a symbol column: --gene-symbols-key lifts scGPT's coverage."""
    src = ad.read_h5ad(shared_data / "scrna" / "pbmc3k_raw.h5ad")[:100].copy()
    src.var["hgnc_name"] = src.var["gene_symbols"].astype(str)
    src.var_names = [f"{g}.7" for g in src.var["gene_ids"]]
    src.var = src.var[["hgnc_name"]]
    path = tmp_path / "versioned.h5ad"
    src.write_h5ad(path)
    vocab = build_model("scgpt", seed=0).gene_vocabulary()
    _, plain = load_dataset(str(path))
    _, named = load_dataset(str(path), UserKeys(gene_symbols_key="hgnc_name"))
    before, after = gene_coverage(plain, vocab)[0], gene_coverage(named, vocab)[0]
    assert after >= before + 0.1, (before, after)
    assert named.uns["cgcbench"]["dataset"]["gene_symbols_key"] == "hgnc_name"
    with pytest.raises(InputError, match=r"no column 'symbol' \(--gene-symbols-key\); var columns: hgnc"):
        load_dataset(str(path), UserKeys(gene_symbols_key="symbol"))
    # a well-known column name (scanpy/10x/Monocle conventions) is found without the flag
    src.var = src.var.rename(columns={"hgnc_name": "gene_short_name"})
    src.write_h5ad(path)
    notes: list[str] = []
    _, found = load_dataset(str(path), report=notes.append)
    assert gene_coverage(found, vocab)[0] == pytest.approx(after)
    assert any("var['gene_short_name']" in n for n in notes)


def test_mouse_file_is_recorded_as_mouse_and_human_models_refuse_it(shared_data):
    notes: list[str] = []
    card, adata = load_dataset(str(shared_data / "scrna" / "mouse_10x_10k_subset.h5ad"), report=notes.append)
    ds = adata.uns["cgcbench"]["dataset"]
    assert (ds["organism"], ds["organism_source"]) == ("mouse", "detected")
    assert "MGI-style" in ds["organism_rule"] and any("organism mouse" in n for n in notes)
    adata.obs["label"], adata.obs["batch"] = "x", "b"
    task = TaskData(dataset=ds, payload={"adata": adata, "label_key": "label", "batch_key": "batch"})
    check = preflight(ClusteringSuite(), build_model("scgpt", seed=0), task)
    assert check.reason is not None and "organism is mouse" in check.reason and "human" in check.reason
    assert preflight(ClusteringSuite(), build_model("pca", seed=0), task).reason is None
    path = str(shared_data / "scrna" / "mouse_10x_10k_subset.h5ad")
    _, given = load_dataset(path, UserKeys(organism="human"))
    assert given.uns["cgcbench"]["dataset"]["organism_source"] == "user"


def _forbid(monkeypatch: pytest.MonkeyPatch, cls: type, methods: tuple[str, ...]) -> None:
    def boom(*_a, **_k):
        raise AssertionError(f"{cls.__name__} started building or pre-training a model")

    for name in methods:
        if hasattr(cls, name):
            monkeypatch.setattr(cls, name, boom)


def _cgc_has_vocabulary_hook() -> bool:
    try:
        cls = model_class("cgc")
    except ImportError:
        return False
    from benchmarks.interface import ModelAdapter

    return cls.gene_vocabulary is not ModelAdapter.gene_vocabulary


@pytest.mark.parametrize(
    "model",
    [
        "geneformer",
        "scgpt",
        pytest.param(
            "cgc",
            marks=pytest.mark.xfail(
                not _cgc_has_vocabulary_hook(),
                reason="CGCAdapter must implement gene_vocabulary() (baselines/cgc_model.py)",
                strict=True,
            ),
        ),
    ],
)
def test_gene_token_model_on_unnamed_genes_is_not_applicable_without_pretraining(
    tmp_path, monkeypatch, shared_data, model
):
    """cbmc_citeseq_rna500's genes are gene0..gene499: no vocabulary maps them."""
    from benchmarks.data.fetch import data_dir

    cls = model_class(model)
    _forbid(monkeypatch, cls, ("pretrain", "_ensure_model", "base", "new_base", "_ensure_loaded"))
    before = sorted(p for p in data_dir().rglob("*")) if data_dir().exists() else []
    request = RunRequest(
        suite="annotation",
        models=[model],
        datasets=["cbmc_citeseq_rna500"],
        results_dir=tmp_path / "res",
        offline=True,
        quick=True,
    )
    (rec,) = MatrixRunner(request).run()
    assert rec["status"] == "NOT_APPLICABLE", rec.get("error") or rec
    assert "vocabulary" in rec["reason"] and "gene0" in rec["reason"]
    assert rec["params"]["preflight_gene_coverage"] == 0.0
    after = sorted(p for p in data_dir().rglob("*")) if data_dir().exists() else []
    assert not [p for p in after if p not in before and "checkpoint" in str(p)]


def test_missing_package_is_unavailable_in_list_models_and_not_applicable(
    monkeypatch, tmp_path, pbmc_user_file
):
    from typer.testing import CliRunner

    from benchmarks.cli import app

    monkeypatch.setitem(sys.modules, "scgpt", None)  # as if scgpt were not installed
    cls = model_class("scgpt")
    assert "scgpt is not installed" in (package_gap(cls) or "")
    out = CliRunner().invoke(app, ["list", "models"], env={"COLUMNS": "250"})
    assert out.exit_code == 0, out.output
    row = next(line for line in out.output.splitlines() if line.strip("│ ").startswith("scgpt"))
    assert "unavailable: package scgpt is not" in row
    flat = "".join(c for c in out.output if c.isalnum() or c in "-=.")
    assert "pipinstall--no-depsscgpt==0.2.4" in flat
    pca_row = next(line for line in out.output.splitlines() if line.strip("│ ").startswith("pca-logreg"))
    assert "unavailable" not in pca_row
    request = RunRequest(
        suite="annotation",
        models=["scgpt"],
        datasets=[str(pbmc_user_file)],
        keys=UserKeys(label_key="cell_type"),
        results_dir=tmp_path / "res",
        offline=True,
    )
    (rec,) = MatrixRunner(request).run()
    assert rec["status"] == "NOT_APPLICABLE" and "scgpt is not installed" in rec["reason"]


def test_bulk_profiles_are_labelled_and_a_transposed_matrix_is_refused(tmp_path, shared_data):
    notes: list[str] = []
    _, bulk = load_dataset(str(shared_data / "bulk" / "pasilla_rnai_knockdown.h5ad"), report=notes.append)
    ds = bulk.uns["cgcbench"]["dataset"]
    assert ds["data_type"] == "bulk" and "7 samples" in ds["data_type_rule"]
    assert ds["organism"] == "drosophila" and any("bulk profiles" in n for n in notes)
    _, cells = load_dataset("cbmc_citeseq_rna500")
    assert cells.uns["cgcbench"]["dataset"]["data_type"] == "single-cell"
    genes_as_rows = ad.read_h5ad(shared_data / "scrna" / "pbmc3k_raw.h5ad")[:50, :400].copy()
    genes_as_rows.var_names = genes_as_rows.var["gene_ids"].astype(str)
    transposed = ad.AnnData(genes_as_rows.X.T.tocsr(), obs=genes_as_rows.var[[]].copy())
    path = tmp_path / "transposed.h5ad"
    transposed.write_h5ad(path)
    with pytest.raises(InputError, match=r"obs_names look like gene or probe ids .* write adata\.T"):
        load_dataset(str(path))
