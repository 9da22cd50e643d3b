from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from cgc import (
    CGCConfig,
    CGCModel,
    CheckpointError,
    GenePriors,
    PriorsMismatchError,
    load_checkpoint,
    save_checkpoint,
)
from cgc.embed import embed_cells


@pytest.fixture()
def ckpt(priors: GenePriors, small_config: CGCConfig, tmp_path: Path) -> Path:
    torch.manual_seed(0)
    model = CGCModel(small_config, priors)
    return save_checkpoint(tmp_path / "ck", model, step=3, meta={"note": "x"})


def test_roundtrip(ckpt: Path, priors: GenePriors, pbmc_small) -> None:
    model, p2, meta = load_checkpoint(ckpt)
    assert meta["step"] == 3 and meta["note"] == "x"
    assert p2.content_hash == priors.content_hash == meta["priors_hash"]
    torch.manual_seed(0)
    ref = CGCModel(model.config, priors).eval()
    a = pbmc_small[:5]
    np.testing.assert_allclose(embed_cells(model, a), embed_cells(ref, a), atol=1e-6)
    # the priors bundle is hard-linked by a sibling checkpoint with the same bundle
    second = save_checkpoint(ckpt.parent / "ck2", model)
    assert (second / "priors" / "indices.npy").stat().st_nlink >= 2


def test_corrupted_file(ckpt: Path) -> None:
    f = ckpt / "model.pt"
    raw = bytearray(f.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    f.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match="model.pt is corrupted"):
        load_checkpoint(ckpt)


def test_truncated_file(ckpt: Path) -> None:
    f = ckpt / "model.pt"
    f.write_bytes(f.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="corrupted"):
        load_checkpoint(ckpt)


def test_missing_manifest_and_files(ckpt: Path) -> None:
    (ckpt / "priors" / "flags.npy").unlink()
    with pytest.raises(CheckpointError, match="missing"):
        load_checkpoint(ckpt)
    (ckpt / "MANIFEST.sha256").unlink()
    with pytest.raises(CheckpointError, match="truncated or corrupted"):
        load_checkpoint(ckpt)


def test_different_priors_rejected(ckpt: Path, priors: GenePriors) -> None:
    other = GenePriors(priors.vocab, {**priors.arrays, "corr": priors.arrays["corr"] * 0.5},
                       priors.meta)
    with pytest.raises(PriorsMismatchError, match="trained with priors"):
        load_checkpoint(ckpt, priors=other)
    load_checkpoint(ckpt, priors=priors)
