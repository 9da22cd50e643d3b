"""Provenance of adapters that load a user-supplied checkpoint or train from scratch."""

from __future__ import annotations

from pathlib import Path

from benchmarks.data.fetch import sha256_file
from benchmarks.interface import Init


class UserCheckpointMixin:
    """``init`` and ``checkpoint_sha256`` for an adapter with a ``checkpoint_path`` attribute.

    ``init`` is ``pretrained`` when the user named a checkpoint and ``scratch`` otherwise;
    ``checkpoint_sha256`` is the sha256 of the weight file :meth:`checkpoint_weights` names.
    List it before :class:`~benchmarks.interface.ModelAdapter` among the bases.
    """

    checkpoint_path: Path | None

    def checkpoint_weights(self) -> Path:
        """The file whose sha256 identifies the loaded checkpoint."""
        raise NotImplementedError

    @property
    def init(self) -> Init:
        """``pretrained`` with a user's checkpoint, else ``scratch``."""
        return "pretrained" if self.checkpoint_path is not None else "scratch"

    @property
    def checkpoint_sha256(self) -> str | None:
        """sha256 of the checkpoint's weight file (``None`` when trained from scratch)."""
        return None if self.checkpoint_path is None else sha256_file(self.checkpoint_weights())
