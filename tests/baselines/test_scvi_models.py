"""scvi-tools adapters: real (tiny) training, scArches label transfer, checkpoint round trips."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from baselines.scvi_models import SCANVIAdapter, SCVIAdapter
from benchmarks.data.fetch import sha256_file
from benchmarks.interface import Capabilities, TaskKind

FAST = {"n_hvg": 200, "max_epochs": 2, "n_hidden": 32, "n_latent": 5, "query_epochs": 0}


def test_scvi_declares_counts_only() -> None:
    caps: Capabilities = SCVIAdapter.capabilities
    assert caps.expression_kinds == frozenset({"counts"})
    assert caps.task_kinds == frozenset({TaskKind.CELL_EMBEDDING})
    assert SCANVIAdapter.capabilities.supports(TaskKind.ANNOTATION)


def test_scvi_embeds_with_batches_and_checkpoint_round_trip(kang_small, tmp_path: Path) -> None:
    model = SCVIAdapter(seed=0, quick=True, **FAST)
    model.fit(kang_small, batch_key="batch")
    z = model.embed_cells(kang_small)
    assert z.shape == (kang_small.n_obs, 5) and np.isfinite(z).all()
    assert model.init == "scratch" and model.checkpoint_sha256 is None
    batches = model.model_.adata_manager.get_state_registry("batch")
    assert batches.original_key == "batch" and list(batches.categorical_mapping) == ["ctrl", "stim"]
    assert "final_elbo_train" in model.extra_metrics()

    # the published scvi-tools layout: model.save() -> <dir>/model.pt
    ckpt = tmp_path / "scvi_ref"
    model.model_.save(str(ckpt))
    loaded = SCVIAdapter(seed=0, quick=True, checkpoint=str(ckpt), **FAST)
    assert loaded.init == "pretrained"
    assert loaded.checkpoint_sha256 == sha256_file(ckpt / "model.pt")
    loaded.fit(kang_small, batch_key="batch")
    np.testing.assert_allclose(loaded.embed_cells(kang_small), z, rtol=1e-4, atol=1e-5)


@pytest.fixture(scope="module")
def ref_query(pbmc_labelled):
    rng = np.random.default_rng(0)
    is_query = rng.random(pbmc_labelled.n_obs) < 0.3
    ref, query = pbmc_labelled[~is_query].copy(), pbmc_labelled[is_query].copy()
    return ref, query


def test_scanvi_label_transfer_and_checkpoint(ref_query, tmp_path: Path) -> None:
    ref, query = ref_query
    model = SCANVIAdapter(seed=0, quick=True, scanvi_epochs=2, **FAST)
    model.fit_classifier(ref, "bulk_labels")
    pred = model.predict_labels(query)
    assert pred.shape == (query.n_obs,)
    assert set(pred) <= set(ref.obs["bulk_labels"])
    z = model.embed_cells(query)
    assert z.shape == (query.n_obs, 5)

    ckpt = tmp_path / "scanvi_ref"
    model.reference_.save(str(ckpt))
    loaded = SCANVIAdapter(seed=0, quick=True, checkpoint=str(ckpt), **FAST)
    loaded.fit_classifier(ref, "bulk_labels")
    assert loaded.init == "pretrained" and loaded.checkpoint_sha256 == sha256_file(
        ckpt / "model.pt")
    np.testing.assert_array_equal(loaded.predict_labels(query), pred)
    np.testing.assert_allclose(loaded.embed_cells(query), z, rtol=1e-4, atol=1e-5)


def test_scanvi_query_training_runs(ref_query) -> None:
    ref, query = ref_query
    model = SCANVIAdapter(seed=1, quick=True, scanvi_epochs=1, **{**FAST, "query_epochs": 1})
    model.fit_classifier(ref, "bulk_labels")
    pred = model.predict_labels(query)
    acc = float(np.mean(pred == query.obs["bulk_labels"].to_numpy()))
    assert 0.0 <= acc <= 1.0 and len(pred) == query.n_obs


def test_scvi_checkpoint_with_code_in_its_pickle_is_refused(kang_small, tmp_path: Path) -> None:
    import torch

    from benchmarks.errors import InputError

    class Hostile:
        def __reduce__(self):  # pragma: no cover - never executed by the loader
            return (print, ("pwned",))

    ckpt = tmp_path / "scvi_hostile"
    ckpt.mkdir()
    torch.save({"model_state_dict": {}, "attr_dict": {"registry_": Hostile()}}, ckpt / "model.pt")
    with pytest.raises(InputError, match="model.pt: refused to load scvi-tools model.pt.*builtins.print"):
        SCVIAdapter(seed=0, quick=True, checkpoint=str(ckpt)).fit(kang_small)
