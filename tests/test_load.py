"""Input validation: every kind of bad input stops with a message naming file, field and fix."""

from __future__ import annotations

from pathlib import Path

import anndata as ad
import numpy as np
import pytest
import scipy.sparse as sp

from benchmarks.data.load import UserKeys, load_dataset
from benchmarks.errors import InputError, UnknownNameError


def _write(adata: ad.AnnData, path: Path) -> str:
    adata.write_h5ad(path)
    return str(path)


def test_user_file_loads_with_detected_kind(pbmc_user_file):
    card, adata = load_dataset(str(pbmc_user_file), UserKeys(label_key="cell_type"))
    assert card.name == "my_pbmc"
    assert adata.uns["cgcbench"]["dataset"]["expression_kind"] == "log1p_normalized"
    assert adata.uns["cgcbench"]["dataset"]["gene_id_type"] == "symbol"
    assert len(adata.uns["cgcbench"]["dataset"]["sha256"]["my_pbmc.h5ad"]) == 64
    assert sp.issparse(adata.X) and adata.X.dtype == np.float32
    assert (adata.var["gene_symbol"] == adata.var_names).all()


def test_missing_file(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        load_dataset(str(tmp_path / "nope.h5ad"))


def test_not_h5ad(tmp_path):
    path = tmp_path / "table.csv"
    path.write_text("a,b\n1,2\n")
    with pytest.raises(InputError, match=r"not an \.h5ad file"):
        load_dataset(str(path))


def test_corrupt_h5ad(tmp_path):
    path = tmp_path / "broken.h5ad"
    path.write_bytes(b"this is not hdf5")
    with pytest.raises(InputError, match="cannot be read as h5ad"):
        load_dataset(str(path))


def test_missing_label_key_lists_columns(pbmc_user_file):
    with pytest.raises(
        InputError, match=r"obs has no column 'celltype' \(label key\).*cell_type.*--label-key"
    ):
        load_dataset(str(pbmc_user_file), UserKeys(label_key="celltype"))


def test_missing_batch_key(pbmc_user_file):
    with pytest.raises(InputError, match="--batch-key"):
        load_dataset(str(pbmc_user_file), UserKeys(label_key="cell_type", batch_key="donor"))


def test_nan_values(tmp_path, pbmc68k_raw):
    a = pbmc68k_raw[:50].copy()
    X = a.X.toarray() if sp.issparse(a.X) else np.array(a.X)
    X[0, 0] = np.nan
    a.X = X
    with pytest.raises(InputError, match="1 NaN values"):
        load_dataset(_write(a, tmp_path / "nan.h5ad"), UserKeys(label_key="bulk_labels"))


def test_negative_values(tmp_path, pbmc68k_raw):
    a = pbmc68k_raw[:50].copy()
    X = a.X.toarray() if sp.issparse(a.X) else np.array(a.X)
    X[1, 2] = -1.5
    a.X = X
    with pytest.raises(InputError, match="negative values"):
        load_dataset(_write(a, tmp_path / "neg.h5ad"), UserKeys(label_key="bulk_labels"))


def test_non_integer_counts(tmp_path, pbmc68k_raw):
    a = pbmc68k_raw[:50].copy()
    with pytest.raises(InputError, match="declared 'counts' but holds non-integer"):
        load_dataset(
            _write(a, tmp_path / "c.h5ad"),
            UserKeys(label_key="bulk_labels", expression_kind="counts"),
        )


def test_duplicate_gene_names(tmp_path, pbmc68k_raw):
    a = pbmc68k_raw[:50].copy()
    names = a.var_names.tolist()
    names[1] = names[0]
    a.var_names = names
    with pytest.raises(InputError, match="duplicated gene names"):
        load_dataset(_write(a, tmp_path / "dup.h5ad"), UserKeys(label_key="bulk_labels"))


def test_empty(tmp_path, pbmc68k_raw):
    a = pbmc68k_raw[:0].copy()
    with pytest.raises(InputError, match="empty"):
        load_dataset(_write(a, tmp_path / "empty.h5ad"), UserKeys(label_key="bulk_labels"))


def test_unknown_card_lists_valid_names():
    with pytest.raises(UnknownNameError, match="unknown dataset 'no_such_set'; valid datasets:"):
        load_dataset("no_such_set")
