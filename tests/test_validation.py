"""One validation layer: bad options and bad data sets exit 2 with one line and write nothing (issue 15)."""

from __future__ import annotations

import sys
from pathlib import Path

import anndata as ad
import numpy as np
import pytest
import scipy.sparse as sp

from benchmarks import cli
from benchmarks.errors import InputError
from benchmarks.options import SUITE_OPTIONS, check_model_params, check_suite_options
from benchmarks.registry import model_class, suite_names


def _main(args: list[str], monkeypatch: pytest.MonkeyPatch) -> int:
    monkeypatch.setattr(sys, "argv", ["cgcbench", *args])
    with pytest.raises(SystemExit) as exc:
        cli.main()
    return int(exc.value.code or 0)


def _run(tmp_path: Path, user: Path, extra: list[str], models: str = "majority") -> list[str]:
    return [
        "run",
        "annotation",
        "--models",
        models,
        "--datasets",
        str(user),
        "--label-key",
        "cell_type",
        "--results-dir",
        str(tmp_path / "results"),
        *extra,
    ]


@pytest.mark.parametrize(
    ("extra", "models", "message"),
    [
        (["--seeds", "-1"], "majority", "--seeds -1: a seed must be between 0 and 4294967295"),
        (["--seeds", "0,0"], "majority", "seed 0 is repeated"),
        (
            ["--set", "unknown_key=5"],
            "majority",
            "annotation has no option 'unknown_key'; valid: min_genes",
        ),
        (["--set", "query_fraction=2"], "majority", "--set query_fraction=2: expected a float in (0, 1)"),
        (
            ["--model-set", "pca-logreg.n_pcs=abc"],
            "pca-logreg",
            "pca-logreg.n_pcs='abc': expected int",
        ),
        (["--model-set", "pca-logreg.n_pc=3"], "pca-logreg", "model pca-logreg has no parameter 'n_pc'"),
        (
            ["--model-set", "majority.k=3"],
            "majority",
            "no parameter 'k'; valid: (it takes none)",
        ),
        (["--model-set", "scvi.n_latent=3"], "majority", "scvi is not among --models"),
        # values only the adapter can judge: refused up front, not as a failed row per cell
        (
            ["--model-set", "cgc.checkpoint=/nonexistent/ckpt.pt"],
            "cgc",
            "--model-set cgc.checkpoint: checkpoint= names /nonexistent/ckpt.pt, which does not exist",
        ),
        (
            ["--model-set", "cgc.official_graphs=/nonexistent/bioFeature_embs"],
            "cgc",
            "--model-set cgc.official_graphs:",
        ),
        (["--model-set", "cgc.edge_types=tftg,bogus"], "cgc", "--model-set cgc.edge_types:"),
        (["--timeout-per-run", "0"], "majority", "--timeout-per-run 0.0: must be a positive number"),
        (["--timeout-per-run", "-5"], "majority", "must be a positive number of seconds"),
        (["--tracking-uri", "file:///tmp/mlruns"], "majority", "MLflow ≥ 3.17 no longer accepts file stores"),
        (["--tracking-uri", "/tmp/mlruns"], "majority", "no longer accepts file stores"),
        (["--tracking-uri", "sqlit:///x.db"], "majority", "unknown scheme 'sqlit'"),
        (["--tracking-uri", "http://127.0.0.1:9"], "majority", "server http://127.0.0.1:9 is unreachable"),
    ],
)
def test_bad_option_exits_2_before_any_write(
    tmp_path, pbmc_user_file, monkeypatch, capsys, extra, models, message
):
    rc = _main(_run(tmp_path, pbmc_user_file, extra, models), monkeypatch)
    err = " ".join(capsys.readouterr().err.split())
    assert rc == 2, err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "results").exists(), "bad input created the results directory"


def test_file_tracking_uri_from_the_environment(tmp_path, pbmc_user_file, monkeypatch, capsys):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"file://{tmp_path}/mlruns")
    assert _main(_run(tmp_path, pbmc_user_file, []), monkeypatch) == 2
    assert "MLFLOW_TRACKING_URI file://" in capsys.readouterr().err
    assert not (tmp_path / "results").exists() and not (tmp_path / "mlruns").exists()


def _variant(src: ad.AnnData, kind: str) -> ad.AnnData:
    out = src.copy()
    out.obs = out.obs.rename(columns={"bulk_labels": "cell_type"})
    dense = out.X.toarray() if sp.issparse(out.X) else np.asarray(out.X)
    if kind == "one_cell":
        return out[:1].copy()
    if kind == "one_class":
        out.obs["cell_type"] = "T cell"
    elif kind == "complex":
        out.X = dense.astype(np.complex64)
    elif kind == "object":
        out.X = dense.astype(str).astype(object)
    elif kind == "huge":
        counts = np.round(np.expm1(dense))
        counts[0, 0] = 1e30
        out.X = counts
    return out


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("one_cell", "1 cell(s); suite annotation needs at least 10 cells"),
        ("one_class", "obs['cell_type'] has 1 class(es) (T cell); suite annotation needs at least 2"),
        ("complex", "the expression matrix is complex (complex64)"),
        ("object", "the expression matrix holds object values, not numbers"),
        ("huge", "expression value 1e+30 is implausible for counts"),
    ],
)
def test_bad_dataset_exits_2_before_any_write(tmp_path, pbmc68k_raw, monkeypatch, capsys, kind, message):
    path = tmp_path / f"{kind}.h5ad"
    _variant(pbmc68k_raw, kind).write_h5ad(path)
    rc = _main(_run(tmp_path, path, ["--offline"]), monkeypatch)
    err = " ".join(capsys.readouterr().err.split())
    assert rc == 2, err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "results").exists()


def test_declared_options_cover_every_suite_and_convert_strings():
    assert set(SUITE_OPTIONS) == set(suite_names())
    assert check_suite_options("annotation", {"query_fraction": "0.25", "min_genes": "3"}) == {
        "query_fraction": 0.25,
        "min_genes": 3,
    }
    params = check_model_params("pca-logreg", model_class("pca-logreg"), {"n_pcs": "30", "C": 1})
    assert params == {"n_pcs": 30, "C": 1}
    with pytest.raises(InputError, match="an integer ≥ 1"):
        check_model_params("pca-logreg", model_class("pca-logreg"), {"n_pcs": 0})


def test_offline_run_does_not_print_an_mlflow_uri(tmp_path, pbmc_user_file, monkeypatch, capsys):
    rc = _main(_run(tmp_path, pbmc_user_file, ["--offline", "--quick"]), monkeypatch)
    out = " ".join(capsys.readouterr().out.split())
    assert rc == 0
    assert "MLflow: not used (--offline" in out and "sqlite:///" not in out
    assert not (tmp_path / "results" / "mlflow.db").exists()
