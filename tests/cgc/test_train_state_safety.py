"""``load_train_state`` never runs code from a checkpoint directory (issue 15)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from cgc.errors import CheckpointError
from cgc.train.checkpoint import MANIFEST, load_train_state
from cgc.utils import sha256_file


class _Payload:
    """Pickles to a call of ``exec``: what a crafted ``train_state.pt`` would hold."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (exec, (f"open({str(self.marker)!r}, 'w').write('pwned')",))


def _checkpoint_dir(root: Path, state: object) -> Path:
    root.mkdir()
    torch.save(state, root / "train_state.pt")
    (root / MANIFEST).write_text(f"{sha256_file(root / 'train_state.pt')}  train_state.pt\n")
    return root


def _real_state() -> dict:
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(torch.randn(4, 3)).sum().backward()
    opt.step()
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    scaler = torch.amp.GradScaler("cuda", enabled=False)
    return {"optimizer": opt.state_dict(), "scheduler": sched.state_dict(), "scaler": scaler.state_dict(),
            "step": 7, "rng": [{"torch": torch.get_rng_state()}], "seed": 0}


def test_crafted_train_state_does_not_run_code(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    ck = _checkpoint_dir(tmp_path / "ck", {"step": 1, "rng": _Payload(marker)})
    with pytest.raises(CheckpointError, match="refused to load the training state"):
        load_train_state(ck)
    assert not marker.exists(), "the crafted train_state.pt executed code on load"


def test_real_train_state_round_trips(tmp_path: Path) -> None:
    state = _real_state()
    ck = _checkpoint_dir(tmp_path / "ck", state)
    back = load_train_state(ck)
    assert back["step"] == 7
    assert torch.equal(back["rng"][0]["torch"], state["rng"][0]["torch"])
    opt = torch.optim.AdamW(torch.nn.Linear(3, 2).parameters(), lr=1e-3)
    opt.load_state_dict(back["optimizer"])  # the optimiser state survives the restricted load


def test_unknown_keys_and_tampering_are_refused(tmp_path: Path) -> None:
    ck = _checkpoint_dir(tmp_path / "ck", {"step": 1, "surprise": 2})
    with pytest.raises(CheckpointError, match="unexpected: surprise"):
        load_train_state(ck)
    ck2 = _checkpoint_dir(tmp_path / "ck2", _real_state())
    data = bytearray((ck2 / "train_state.pt").read_bytes())
    data[-10] ^= 0xFF
    (ck2 / "train_state.pt").write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="corrupted"):
        load_train_state(ck2)
