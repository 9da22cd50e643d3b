"""Checkpoints: weights, configuration, priors bundle, training state and a sha256 manifest.

A checkpoint is a directory::

    model.pt          model state dict
    config.json       CGCConfig
    meta.json         step, priors hash, training config, versions, user metadata
    train_state.pt    optimiser / scheduler / scaler / RNG states (training checkpoints)
    priors/           the GenePriors bundle (hard-linked from a sibling when identical)
    MANIFEST.sha256   sha256 of every file above

It is written to a temporary directory and renamed, so a killed writer never leaves a
half-written checkpoint under the final name; a truncated or edited file is detected by
the manifest on load.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cgc.config import CGCConfig
from cgc.errors import CheckpointError, PriorsMismatchError
from cgc.priors.bundle import GenePriors

if TYPE_CHECKING:
    import torch

    from cgc.model import CGCModel
from cgc.utils import sha256_file

MANIFEST = "MANIFEST.sha256"
LATEST = "LATEST"


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and p.name != MANIFEST)


def _link_or_save_priors(priors: GenePriors, dest: Path) -> None:
    for sib in sorted(dest.parent.parent.glob("*/priors/priors.json")):
        try:
            if json.loads(sib.read_text()).get("content_hash") == priors.content_hash:
                dest.mkdir()
                for f in sib.parent.iterdir():
                    os.link(f, dest / f.name)
                return
        except (OSError, json.JSONDecodeError):
            shutil.rmtree(dest, ignore_errors=True)
    priors.save(dest)


def save_checkpoint(path: str | Path, model: CGCModel, priors: GenePriors | None = None, *,
                    step: int = 0, train_state: dict[str, Any] | None = None,
                    meta: dict[str, Any] | None = None) -> Path:
    """Write a checkpoint directory atomically.

    Parameters
    ----------
    path
        Target directory (replaced if it exists).
    model
        The model (unwrapped from DDP).
    priors
        Priors bundle; defaults to ``model.priors``.
    step
        Optimiser step recorded in ``meta.json``.
    train_state
        Optional optimiser/scheduler/RNG state, saved to ``train_state.pt``.
    meta
        Extra JSON-serialisable metadata.

    Returns
    -------
    pathlib.Path
        The checkpoint directory.

    """
    import torch

    priors = model.priors if priors is None else priors
    if priors.content_hash != model.priors_hash:
        raise PriorsMismatchError("save_checkpoint: priors differ from the model's priors")
    out = Path(path)
    tmp = out.with_name(f".{out.name}.tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    torch.save(model.state_dict(), tmp / "model.pt")
    (tmp / "config.json").write_text(json.dumps(model.config.to_dict(), indent=2))
    info = {
        "step": step,
        "priors_hash": priors.content_hash,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "torch": torch.__version__,
        "n_parameters": model.num_parameters(),
        **(meta or {}),
    }
    (tmp / "meta.json").write_text(json.dumps(info, indent=2, default=str))
    if train_state is not None:
        torch.save(train_state, tmp / "train_state.pt")
    _link_or_save_priors(priors, tmp / "priors")
    lines = [f"{sha256_file(f)}  {f.relative_to(tmp).as_posix()}" for f in _files(tmp)]
    (tmp / MANIFEST).write_text("\n".join(lines) + "\n")
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)
    return out


def mark_latest(run_checkpoints: str | Path, name: str) -> None:
    """Point ``<dir>/LATEST`` at checkpoint ``name`` (atomic)."""
    d = Path(run_checkpoints)
    tmp = d / f".{LATEST}.tmp"
    tmp.write_text(name)
    os.replace(tmp, d / LATEST)


def resolve_checkpoint(path: str | Path) -> Path:
    """Resolve a checkpoint dir, a ``checkpoints/`` dir or a run dir to a checkpoint dir."""
    p = Path(path)
    for d in (p, p / "checkpoints"):
        if (d / MANIFEST).is_file():
            return d
        if (d / LATEST).is_file():
            return d / (d / LATEST).read_text().strip()
    if p.is_dir() and (p / "model.pt").exists():
        raise CheckpointError(f"checkpoint {p} has no {MANIFEST}: it is truncated or corrupted")
    raise CheckpointError(
        f"{p} is not a checkpoint (no {MANIFEST}) nor a run directory (no {LATEST})"
    )


def verify_checkpoint(path: str | Path) -> None:
    """Check every file of a checkpoint against its sha256 manifest.

    Raises
    ------
    CheckpointError
        A file is missing, extra, truncated or modified.

    """
    root = Path(path)
    man = root / MANIFEST
    if not man.is_file():
        raise CheckpointError(f"checkpoint {root}: {MANIFEST} missing (truncated checkpoint)")
    expected = {}
    for line in man.read_text().splitlines():
        if line.strip():
            digest, _, rel = line.partition("  ")
            expected[rel] = digest
    for rel, digest in expected.items():
        f = root / rel
        if not f.is_file():
            raise CheckpointError(f"checkpoint {root}: file {rel} is missing (truncated)")
        if sha256_file(f) != digest:
            raise CheckpointError(
                f"checkpoint {root}: file {rel} is corrupted (sha256 mismatch); "
                "use an earlier checkpoint or re-run training"
            )


def load_checkpoint(path: str | Path, priors: GenePriors | None = None,
                    map_location: str | torch.device = "cpu", verify: bool = True
                    ) -> tuple[CGCModel, GenePriors, dict[str, Any]]:
    """Load a model, its priors bundle and its metadata.

    Parameters
    ----------
    path
        Checkpoint directory, or a run directory (its latest checkpoint is used).
    priors
        If given, must be the bundle the checkpoint was trained with.
    map_location
        Device for the weights.
    verify
        Check the sha256 manifest first.

    Returns
    -------
    model : CGCModel
        In eval mode.
    priors : GenePriors
        The checkpoint's bundle.
    meta : dict
        Contents of ``meta.json`` plus ``"path"``.

    Raises
    ------
    CheckpointError
        Missing, truncated or corrupted files.
    PriorsMismatchError
        ``priors`` differs from the checkpoint's bundle.

    """
    import torch

    from cgc.model import CGCModel

    root = resolve_checkpoint(path)
    if verify:
        verify_checkpoint(root)
    try:
        meta = json.loads((root / "meta.json").read_text())
        config = CGCConfig.from_dict(json.loads((root / "config.json").read_text()))
        ck_priors = GenePriors.load(root / "priors")
        state = torch.load(root / "model.pt", map_location=map_location, weights_only=True)
    except (OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"checkpoint {root} cannot be read ({exc})") from exc
    if ck_priors.content_hash != meta.get("priors_hash"):
        raise CheckpointError(f"checkpoint {root}: priors bundle does not match meta.json")
    if priors is not None and priors.content_hash != ck_priors.content_hash:
        raise PriorsMismatchError(
            f"checkpoint {root} was trained with priors {ck_priors.content_hash[:12]}, "
            f"not the given bundle {priors.content_hash[:12]}; load without priors= or use "
            "the checkpoint's priors/ directory"
        )
    model = CGCModel(config, ck_priors)
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise CheckpointError(f"checkpoint {root}: weights do not fit the config ({exc})") from exc
    model.eval()
    meta["path"] = str(root)
    return model.to(map_location), ck_priors, meta


TRAIN_STATE_KEYS = frozenset({"optimizer", "scheduler", "scaler", "step", "rng", "seed"})
"""The top-level keys ``train_state.pt`` may hold (see :func:`load_train_state`)."""


def load_train_state(path: str | Path) -> dict[str, Any]:
    """Load ``train_state.pt`` of a checkpoint without running any code from the file.

    The file is read with ``torch.load(weights_only=True)``: PyTorch's restricted unpickler
    rebuilds only tensors, ``dict``/``list``/``tuple``/``OrderedDict``, strings, numbers,
    booleans and ``None`` — all that an optimiser, LR-scheduler and grad-scaler state dict and
    the RNG states (byte tensors) consist of. Any other object (a class, a function, a
    ``__reduce__`` payload) is refused, so a crafted checkpoint directory cannot execute code
    on resume. The sha256 manifest is checked first, and the top-level keys must be among
    :data:`TRAIN_STATE_KEYS`.

    Raises
    ------
    CheckpointError
        The state is missing, corrupted, holds objects outside the allow-list or unknown keys.

    """
    import torch

    root = resolve_checkpoint(path)
    f = root / "train_state.pt"
    if not f.is_file():
        raise CheckpointError(f"{root} has no training state; it cannot be resumed")
    verify_checkpoint(root)
    try:
        state = torch.load(f, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle.UnpicklingError for a disallowed global, RuntimeError, …
        first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(
            f"{f}: refused to load the training state ({first}); it holds objects other than "
            "tensors, containers and numbers — only load checkpoints you trust, or resume from "
            "an earlier checkpoint written by cgc"
        ) from exc
    if not isinstance(state, dict) or not set(state) <= TRAIN_STATE_KEYS:
        extra = sorted(map(str, set(state) - TRAIN_STATE_KEYS)) if isinstance(state, dict) else []
        raise CheckpointError(
            f"{f}: not a cgc training state (expected a dict with keys "
            f"{', '.join(sorted(TRAIN_STATE_KEYS))}; unexpected: {', '.join(extra) or type(state).__name__})"
        )
    return state
