from __future__ import annotations

import anndata as ad
import numpy as np
import pytest
import scipy.sparse as sp

from cgc import preprocess as pp


def test_normalize_log1p_matches_manual() -> None:
    x = sp.csr_matrix(np.array([[1.0, 0, 3], [0, 0, 0], [2, 2, 0]]))
    got = pp.normalize_log1p(x, target_sum=10).toarray()
    want = np.log1p(np.array([[2.5, 0, 7.5], [0, 0, 0], [5, 5, 0]]))
    np.testing.assert_allclose(got, want, rtol=1e-6)


def test_qc_filter() -> None:
    x = sp.csr_matrix(np.array([[1, 1, 1, 0], [1, 0, 0, 0], [1, 1, 0, 0]], dtype=float))
    a = ad.AnnData(x)
    out = pp.qc_filter(a, min_genes=2, min_cells=2)
    assert out.shape == (2, 2)
    with pytest.raises(pp.CGCError):
        pp.qc_filter(a, min_genes=10)


@pytest.mark.parametrize("mode", ["weighted", "top", "uniform"])
def test_sample_genes_seeded(mode: str) -> None:
    v = np.random.default_rng(0).random(3000)
    v[::3] = 0
    a = pp.sample_genes(v, 1200, seed=1, mode=mode)
    b = pp.sample_genes(v, 1200, seed=1, mode=mode)
    assert len(a) == 1200 and (v[a] > 0).all() and len(set(a)) == 1200
    np.testing.assert_array_equal(a, b)
    if mode != "top":
        assert not np.array_equal(a, pp.sample_genes(v, 1200, seed=2, mode=mode))
    few = np.array([0.0, 2.0, 1.0])
    np.testing.assert_array_equal(pp.sample_genes(few, 1200, seed=0), [1, 2])


def test_weighted_sampling_prefers_high_values() -> None:
    v = np.concatenate([np.full(1000, 0.1), np.full(1000, 10.0)])
    pick = pp.sample_genes(v, 500, seed=0)
    assert (pick >= 1000).mean() > 0.9


def test_bin_values() -> None:
    v = np.array([0.0, 0.1, 0.5, 0.5, 2.0, 7.0, 0.0])
    b = pp.bin_values(v, n_bins=51)
    assert b[0] == 0 and b[-1] == 0
    assert b[1:6].min() >= 1 and b[1:6].max() == 50
    assert (np.diff(b[1:6]) >= 0).all() and b[2] == b[3]
    big = np.random.default_rng(0).random(1000) + 0.01
    bb = pp.bin_values(big, 51)
    assert set(np.unique(bb)) <= set(range(1, 51)) and len(np.unique(bb)) >= 45


def test_mask_values() -> None:
    binned = np.arange(1, 101)
    m1, mask1 = pp.mask_values(binned, 0.4, seed=3)
    m2, mask2 = pp.mask_values(binned, 0.4, seed=3)
    assert mask1.sum() == 40
    np.testing.assert_array_equal(mask1, mask2)
    assert (m1[mask1] == -1).all() and (m1[~mask1] == binned[~mask1]).all()
    _, mask3 = pp.mask_values(binned, 0.4, seed=4)
    assert not np.array_equal(mask1, mask3)


def test_prepare_cell_deterministic() -> None:
    rng = np.random.default_rng(0)
    genes = np.arange(10, 2010)
    vals = rng.random(2000) * (rng.random(2000) > 0.3)
    a = pp.prepare_cell(genes, vals, 1200, seed=9)
    b = pp.prepare_cell(genes, vals, 1200, seed=9)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    assert len(a["genes"]) == 1200 and a["mask"].sum() == 480
