"""GEARS through cell-gears: offline GO graph, training, prediction, checkpoint round trip."""

from __future__ import annotations

from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from baselines.gears_model import (
    GEARSAdapter,
    SeriesIndexableCSR,
    gears_condition,
    go_jaccard_edges,
)
from benchmarks.data.fetch import sha256_file
from benchmarks.interface import TaskKind

pytestmark = pytest.mark.filterwarnings("ignore")


def test_gears_declares_perturbation_only() -> None:
    caps = GEARSAdapter.capabilities
    assert caps.task_kinds == frozenset({TaskKind.PERTURBATION})
    assert not caps.supports(TaskKind.ANNOTATION)


def test_condition_names_and_scipy_workaround() -> None:
    assert gears_condition("KLF1") == "KLF1+ctrl"
    assert gears_condition("ctrl+KLF1") == "KLF1+ctrl"
    assert gears_condition("A+B") == "A+B" and gears_condition("ctrl") == "ctrl"
    X = SeriesIndexableCSR(sp.csr_matrix(np.eye(3, dtype=np.float32)))
    rows = X[pd.Series([True, False, True])]
    assert rows.shape == (2, 3)


def test_go_graph_is_gears_jaccard() -> None:
    gene2go = {"A": {"g1", "g2"}, "B": {"g1", "g2", "g3"}, "C": {"g9"}, "D": {"g1"}}
    edges = go_jaccard_edges(gene2go, ["A", "B", "C", "D"], k=2)
    a = edges[edges.target == "A"].set_index("source")["importance"]
    # Jaccard(A, A) = 1, Jaccard(A, B) = 2/3 (then D = 1/2 is cut by k = 2)
    assert a.to_dict() == pytest.approx({"A": 1.0, "B": 2 / 3})
    assert set(edges[edges.target == "C"].source) == {"C"}


@pytest.fixture(scope="module")
def train_data(norman) -> ad.AnnData:
    """Training cells of the Norman subset, each cell plus a jittered copy.

    The fixture has one cell per condition; GEARS's DE step needs two.
    """
    train = norman[norman.obs["split"] != "test"].copy()
    rng = np.random.default_rng(0)
    twin = train.copy()
    X = twin.X.toarray()
    twin.X = sp.csr_matrix(np.clip(X + 0.1 * rng.normal(size=X.shape) * (X > 0), 0, None),
                           dtype=np.float32)
    twin.obs_names = [f"{n}-b" for n in twin.obs_names]
    out = ad.concat([train, twin])
    out.var = train.var.copy()
    out.uns = train.uns
    return out


@pytest.fixture(scope="module")
def fitted(train_data) -> GEARSAdapter:
    model = GEARSAdapter(seed=0, quick=True, pert_universe="data", epochs=1)
    model.fit_perturbation(train_data, condition_key="condition")
    return model


def test_gears_predicts_mean_profiles(fitted, norman) -> None:
    assert fitted.init == "scratch" and fitted.params["go_source"] in {"gene2go_hs",
                                                                      "gears_gene2go"}
    control = norman[norman.obs["condition"] == "ctrl"]
    conds = ["MEIS1+ctrl", "KLF1", "ctrl", "FOXL2+HOXB9", "NOTAGENE+ctrl"]
    pred = fitted.predict_perturbation(control, conds)
    assert list(pred.index) == conds and list(pred.columns) == list(norman.var_names)
    assert np.isfinite(pred.to_numpy()).all()
    # not in GEARS's GO graph: not predictable -> no change, recorded
    np.testing.assert_allclose(pred.loc["NOTAGENE+ctrl"], pred.loc["ctrl"])
    assert "NOTAGENE+ctrl" in fitted.params["unpredictable_conditions"]
    assert 0 < fitted.extra_metrics()["condition_coverage"] < 1


def test_gears_checkpoint_round_trip(fitted, train_data, norman, tmp_path: Path) -> None:
    ckpt = tmp_path / "gears_model"
    fitted.gears_.save_model(str(ckpt))  # the published layout: config.pkl + model.pt
    assert (ckpt / "config.pkl").is_file()
    loaded = GEARSAdapter(seed=0, quick=True, pert_universe="data", checkpoint=str(ckpt))
    loaded.fit_perturbation(train_data)
    assert loaded.init == "pretrained"
    assert loaded.checkpoint_sha256 == sha256_file(ckpt / "model.pt")
    control = norman[norman.obs["condition"] == "ctrl"]
    conds = ["MEIS1+ctrl", "KLF1+ctrl"]
    fitted.gears_.saved_pred.clear()
    np.testing.assert_allclose(loaded.predict_perturbation(control, conds).to_numpy(),
                               fitted.predict_perturbation(control, conds).to_numpy(),
                               rtol=1e-5, atol=1e-6)


def test_gears_checkpoint_is_read_without_unpickling_code(fitted, train_data, tmp_path: Path) -> None:
    import pickle

    from benchmarks.errors import InputError

    ckpt = tmp_path / "gears_hostile"
    fitted.gears_.save_model(str(ckpt))

    class Hostile:
        def __reduce__(self):  # pragma: no cover - never executed by the loader
            return (print, ("pwned",))

    config = {**fitted.gears_.config, "hook": Hostile()}
    (ckpt / "config.pkl").write_bytes(pickle.dumps(config))
    loaded = GEARSAdapter(seed=0, quick=True, pert_universe="data", checkpoint=str(ckpt))
    with pytest.raises(InputError, match="config.pkl.*refused to unpickle builtins.print"):
        loaded.fit_perturbation(train_data)
