"""Expression kinds: each is detected from real-derived data, recorded, and converted soundly.

The files are built here from scanpy's labelled PBMC subset: its log-normalised ``.raw`` is
turned back into the UMI counts it came from (each cell's values are integer multiples of its
smallest one after ``expm1``), and from those counts come a log1p file (the reference), a
TPM-like file (reads per kilobase of the real hg38 gene lengths, scaled to 1e6), a log2 file
and a z-scored file.
"""

from __future__ import annotations

import json
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scanpy as sc
import scipy.sparse as sp

from benchmarks.data.expression import convert, detect_expression_kind, normalize_kind
from benchmarks.data.load import UserKeys, load_dataset
from benchmarks.errors import InputError


def _counts(pbmc: ad.AnnData) -> ad.AnnData:
    X = sp.csr_matrix(pbmc.X, dtype=np.float64)
    X.data = np.expm1(X.data)
    for r in range(X.shape[0]):
        lo, hi = X.indptr[r], X.indptr[r + 1]
        X.data[lo:hi] = np.round(X.data[lo:hi] / X.data[lo:hi].min())
    out = ad.AnnData(sp.csr_matrix(X, dtype=np.float32), obs=pbmc.obs[["bulk_labels"]].copy())
    out.var_names = pbmc.var_names
    return out


def _gene_lengths_kb(names: pd.Index, shared: Path) -> np.ndarray:
    pos = pd.read_parquet(shared / "priors" / "gene_positions_hg38.parquet")
    pos = pos.dropna(subset=["hgnc_symbol"]).drop_duplicates("hgnc_symbol").set_index("hgnc_symbol")
    length = (pos["end_position"] - pos["start_position"] + 1).reindex(names)
    return (length.fillna(length.median()).to_numpy(dtype=np.float64)) / 1e3


def _derived(kind: str, counts: ad.AnnData, shared: Path) -> ad.AnnData:
    out = counts.copy()
    if kind == "counts":
        return out
    if kind == "linear_normalized":  # TPM: counts per kb of gene length, scaled to 1e6 per cell
        rpk = sp.csr_matrix(out.X, dtype=np.float64) @ sp.diags(1.0 / _gene_lengths_kb(out.var_names, shared))
        out.X = sp.csr_matrix(sp.diags(1e6 / np.asarray(rpk.sum(1)).ravel()) @ rpk, dtype=np.float32)
        return out
    sc.pp.normalize_total(out, target_sum=1e4)
    if kind == "log2_normalized":
        out.X = sp.csr_matrix(out.X, dtype=np.float64).log1p() / np.log(2.0)
        out.X = sp.csr_matrix(out.X, dtype=np.float32)
        return out
    sc.pp.log1p(out)
    if kind == "scaled":
        out.X = out.X.toarray()
        sc.pp.scale(out, max_value=10)
    return out


@pytest.fixture(scope="module")
def pbmc_counts(pbmc68k_raw: ad.AnnData) -> ad.AnnData:
    return _counts(pbmc68k_raw)


KINDS = ["counts", "log1p_normalized", "log2_normalized", "linear_normalized", "scaled"]


@pytest.mark.parametrize("kind", KINDS)
def test_detected_from_real_derived_data(kind, pbmc_counts, shared_data):
    detected = detect_expression_kind(_derived(kind, pbmc_counts, shared_data).X)
    assert detected.kind == kind, detected.rule
    assert detected.rule


def test_microarray_style_log2_is_log2(shared_data):
    """The FOXA2 bulk set (log2 values ~6-19, no count structure) is detected as log2."""
    raw = ad.read_h5ad(shared_data / "bulk" / "foxa2_ko_panc1.h5ad")
    X = np.nan_to_num(np.asarray(raw.X, dtype=np.float64))
    assert detect_expression_kind(X).kind == "log2_normalized"


def test_a_few_negative_values_are_an_error_not_scaled(pbmc_counts, shared_data):
    a = _derived("log1p_normalized", pbmc_counts, shared_data)
    X = a.X.toarray()
    X[0, :3] = -1.0
    with pytest.raises(InputError, match="negative values"):
        detect_expression_kind(X, "f.h5ad")


def test_log2_converts_to_the_same_log1p_values(pbmc_counts, shared_data):
    log1p = _derived("log1p_normalized", pbmc_counts, shared_data)
    log2 = _derived("log2_normalized", pbmc_counts, shared_data)
    back = convert(log2, "log2_normalized", "log1p_normalized")
    np.testing.assert_allclose(back.X.toarray(), log1p.X.toarray(), rtol=1e-5, atol=1e-5)


def test_aliases_and_invalid_kind():
    assert normalize_kind("TPM") == "linear_normalized"
    assert normalize_kind("log2") == "log2_normalized"
    with pytest.raises(InputError, match="--expression-kind 'tmp' is not an expression kind; use one of"):
        normalize_kind("tmp")


def test_declared_counts_on_tpm_suggests_the_right_kind(tmp_path, pbmc_counts, shared_data):
    path = tmp_path / "tpm.h5ad"
    _derived("linear_normalized", pbmc_counts, shared_data).write_h5ad(path)
    with pytest.raises(InputError, match="--expression-kind linear_normalized"):
        load_dataset(str(path), UserKeys(label_key="bulk_labels", expression_kind="counts"))


def test_layer_and_raw_are_selectable(tmp_path, pbmc_counts, shared_data):
    a = _derived("scaled", pbmc_counts, shared_data)
    a.layers["counts"] = pbmc_counts.X.copy()
    a.raw = _derived("log1p_normalized", pbmc_counts, shared_data)
    path = tmp_path / "layered.h5ad"
    a.write_h5ad(path)
    for layer, kind in [(None, "scaled"), ("counts", "counts"), ("raw", "log1p_normalized")]:
        _, adata = load_dataset(str(path), UserKeys(label_key="bulk_labels", layer=layer))
        ds = adata.uns["cgcbench"]["dataset"]
        assert ds["expression_kind"] == kind and ds["expression_kind_source"] == "detected"
    with pytest.raises(InputError, match=r"no layer 'spliced'.*--layer"):
        load_dataset(str(path), UserKeys(label_key="bulk_labels", layer="spliced"))


def _accuracy(path: Path, results: Path) -> tuple[dict, list[str]]:
    from benchmarks.runner import MatrixRunner, RunRequest

    notices: list[str] = []
    request = RunRequest(
        suite="annotation",
        models=["pca-logreg"],
        datasets=[str(path)],
        seeds=[0],
        keys=UserKeys(label_key="bulk_labels"),
        results_dir=results,
        offline=True,
        model_params={"pca-logreg": {"n_pcs": 30}},
    )
    (record,) = MatrixRunner(request, on_notice=notices.append).run()
    return record, notices


@pytest.mark.parametrize(
    ("kind", "words"),
    [
        ("linear_normalized", "detected: TPM-like linear values"),
        ("log2_normalized", "detected: log2 values"),
        ("scaled", "detected: scaled / z-scored values"),
    ],
)
def test_pca_logreg_scores_every_kind_like_log1p(kind, words, tmp_path, pbmc_counts, shared_data):
    """pca-logreg on TPM-like, log2 and z-scored files matches the log1p file within 0.02."""
    ref_path, path = tmp_path / "log1p.h5ad", tmp_path / f"{kind}.h5ad"
    _derived("log1p_normalized", pbmc_counts, shared_data).write_h5ad(ref_path)
    _derived(kind, pbmc_counts, shared_data).write_h5ad(path)
    reference, _ = _accuracy(ref_path, tmp_path / "ref")
    record, notices = _accuracy(path, tmp_path / "res")
    assert record["status"] == "FINISHED", record.get("error")
    assert abs(record["metrics"]["accuracy"] - reference["metrics"]["accuracy"]) <= 0.02
    ds = record["dataset"]
    assert ds["expression_kind_source"] == "detected" and ds["expression_kind_rule"]
    assert any(words in n for n in notices), notices
    if kind == "scaled":
        assert ds["expression_kind"] == "scaled" and "expression_converted" not in record["params"]
    else:
        assert ds["expression_kind"] == kind  # the data set as it is; the conversion is per model
        assert record["params"]["expression_converted"].startswith(f"{kind} -> log1p_normalized")
    on_disk = json.loads(next((tmp_path / "res" / "records").rglob("*.json")).read_text())
    assert on_disk["dataset"]["expression_kind_rule"] == ds["expression_kind_rule"]


def test_counts_only_model_is_not_applicable_on_tpm(tmp_path, pbmc_counts, shared_data):
    """scVI needs counts: on TPM-like data it is NOT_APPLICABLE with the true reason, not FAILED."""
    from benchmarks.runner import MatrixRunner, RunRequest

    path = tmp_path / "tpm.h5ad"
    _derived("linear_normalized", pbmc_counts, shared_data).write_h5ad(path)
    request = RunRequest(
        suite="annotation",
        models=["scanvi"],
        datasets=[str(path)],
        keys=UserKeys(label_key="bulk_labels"),
        results_dir=tmp_path / "res",
        offline=True,
    )
    (record,) = MatrixRunner(request).run()
    assert record["status"] == "NOT_APPLICABLE"
    assert "TPM-like linear values" in record["reason"]
    assert "raw counts cannot be recovered" in record["reason"]
