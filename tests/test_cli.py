"""End-to-end runs of the ``cgcbench`` command on a user h5ad the suite has never seen."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest


def cgcbench(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, COLUMNS="200")
    return subprocess.run(
        [sys.executable, "-m", "benchmarks.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def _records(results: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((results / "records").rglob("*.json"))]


def test_run_user_file_end_to_end(tmp_path, pbmc_user_file):
    results = tmp_path / "results"
    proc = cgcbench(
        "run",
        "annotation",
        "--models",
        "majority,pca-logreg",
        "--datasets",
        str(pbmc_user_file),
        "--label-key",
        "cell_type",
        "--seeds",
        "0,1",
        "--results-dir",
        str(results),
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert "pca-logreg" in proc.stdout and "majority" in proc.stdout and "±" in proc.stdout
    recs = _records(results)
    assert len(recs) == 4 and {r["status"] for r in recs} == {"FINISHED"}
    by_model = {(r["model"]["name"], r["seed"]): r for r in recs}
    assert by_model[("pca-logreg", 0)]["metrics"]["accuracy"] > 0.75
    assert by_model[("majority", 0)]["model"]["init"] == "none"
    rec = by_model[("pca-logreg", 1)]
    assert rec["dataset"]["name"] == "my_pbmc" and len(rec["dataset"]["sha256"]["my_pbmc.h5ad"]) == 64
    assert rec["provenance"]["packages"]["scanpy"]
    assert rec["provenance"]["resources"]["peak_rss_mb"] > 0
    for rel in rec["artifacts"]:
        assert (results / rel).is_file()

    import mlflow

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{results}/mlflow.db")
    exp = client.get_experiment_by_name("cgcbench/annotation")
    cells_only = "tags.`cgcbench.record_id` != ''"  # not the invocation's parent run
    runs = client.search_runs([exp.experiment_id], filter_string=cells_only)
    assert len(runs) == 4
    run = next(r for r in runs if r.info.run_id == rec["mlflow"]["run_id"])
    assert run.info.status == "FINISHED"
    assert run.data.tags["init"] == "scratch" and run.data.tags["seed"] == "1"
    assert run.data.tags["dataset"] == "my_pbmc" and "provenance.git.commit" in run.data.tags
    assert run.data.metrics["accuracy"] == pytest.approx(rec["metrics"]["accuracy"])
    assert run.data.params["model.n_pcs"] == "50"
    names = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"confusion_matrix.png", "record.json"} <= names

    again = cgcbench(
        "run",
        "annotation",
        "--models",
        "majority,pca-logreg",
        "--datasets",
        str(pbmc_user_file),
        "--label-key",
        "cell_type",
        "--seeds",
        "0,1",
        "--results-dir",
        str(results),
        "--resume",
        cwd=tmp_path,
    )
    assert again.returncode == 0, again.stderr
    cells = client.search_runs([exp.experiment_id], filter_string="tags.`cgcbench.record_id` != ''")
    assert len(cells) == 4  # all four cells were skipped


def test_failing_cell_does_not_stop_the_matrix(tmp_path, pbmc_user_file):
    results = tmp_path / "results"
    proc = cgcbench(
        "run",
        "annotation",
        "--models",
        "pca-logreg,majority",
        "--datasets",
        str(pbmc_user_file),
        "--label-key",
        "cell_type",
        "--model-set",
        "pca-logreg.C=0",  # passes the up-front type check, fails inside the cell (sklearn needs C > 0)
        "--results-dir",
        str(results),
        cwd=tmp_path,
    )
    assert proc.returncode == 1
    status = {r["model"]["name"]: r for r in _records(results)}
    assert status["majority"]["status"] == "FINISHED"
    failed = status["pca-logreg"]
    assert failed["status"] == "FAILED" and failed["metrics"] == {} and failed["artifacts"] == []
    assert "Traceback" in failed["error"]["traceback"]
    assert not (results / "artifacts" / "annotation" / "my_pbmc" / "pca-logreg").exists()

    import mlflow

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{results}/mlflow.db")
    run = client.get_run(failed["mlflow"]["run_id"])
    assert run.info.status == "FAILED" and "cgcbench.error" in run.data.tags


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--models", "nope"], "unknown model 'nope'; valid models:"),
        (["--models", "pca-logreg:fast"], "unknown variant of pca-logreg 'fast'"),
        (["--models", "majority", "--datasets", "missing.h5ad"], "missing.h5ad: no such file"),
        (
            ["--models", "majority", "--datasets", "USER", "--label-key", "celltype"],
            "obs has no column 'celltype'",
        ),
        (
            [
                "--models",
                "majority",
                "--datasets",
                "USER",
                "--label-key",
                "cell_type",
                "--tracking-uri",
                "http://127.0.0.1:9",
            ],
            "unreachable",
        ),
    ],
)
def test_bad_input_exits_2_and_writes_nothing(tmp_path, pbmc_user_file, args, message):
    args = [str(pbmc_user_file) if a == "USER" else a for a in args]
    results = tmp_path / "results"
    proc = cgcbench("run", "annotation", *args, "--results-dir", str(results), cwd=tmp_path)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert message in " ".join(proc.stderr.split()), proc.stderr
    assert not (results / "records").exists()


def test_unknown_suite(tmp_path):
    proc = cgcbench("run", "no-such-suite", "--models", "majority", cwd=tmp_path)
    assert proc.returncode == 2
    assert "unknown suite 'no-such-suite'; valid suites:" in " ".join(proc.stderr.split())


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["no-such-command"], "No such command 'no-such-command'"),
        (["run", "annotation", "--modls", "majority"], "No such option: --modls"),
        (["run"], "Missing argument 'suite'"),
    ],
)
def test_usage_errors_exit_2_with_a_message_not_a_traceback(tmp_path, args, message):
    # typer >= 0.2x raises its vendored click's exceptions; main() must still turn them into
    # click's usage message and exit status 2
    proc = cgcbench(*args, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr


def test_no_plots_writes_no_plot_and_leaves_the_metrics_unchanged(tmp_path):
    """``--no-plots`` skips every picture (and the UMAP work behind it), nothing else."""
    runs = {}
    for flag in ("--no-plots", None):
        results = tmp_path / (flag or "plots").strip("-")
        args = ["run", "annotation", "--models", "pca-logreg", "--datasets", "pbmc68k_reduced",
                "--quick", "--offline", "--results-dir", str(results)]
        proc = cgcbench(*args, *([flag] if flag else []), cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr[-2000:]
        (rec,) = [r for r in _records(results) if r["model"]["name"] == "pca-logreg"]
        runs[flag] = (rec, sorted(p.name for p in results.rglob("*.png")))
    (bare, bare_pngs), (full, full_pngs) = runs["--no-plots"], runs[None]
    assert bare_pngs == [] and {"confusion_matrix.png", "umap_query.png"} <= set(full_pngs)
    assert not [a for a in bare["artifacts"] if str(a).endswith(".png")] and bare["artifacts"]
    assert bare["metrics"] == full["metrics"]
