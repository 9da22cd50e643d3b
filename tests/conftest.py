"""Shared fixtures: real data from ../shared/data, an isolated cache and results directory."""

from __future__ import annotations

import functools
import http.server
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import anndata as ad
import pytest

REPO = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path:
    """The read-only real-data mirror (CGCBENCH_MIRRORS' first entry, or ../shared/data)."""
    first = os.environ.get("CGCBENCH_MIRRORS", "").split(os.pathsep)[0]
    return Path(first) if first else REPO.parent / "shared" / "data"


@pytest.fixture(scope="session", autouse=True)
def _isolated_session_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Session-scoped fixtures (built before any per-test fixture) get a cache of their own too.

    Without this a session fixture that loads a card would read and write the user's real cache
    (``~/.cache/cgcbench``) and miss the shared mirror.
    """
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CGCBENCH_DATA_DIR", str(tmp_path_factory.mktemp("session-cache")))
        mp.setenv("CGCBENCH_MIRRORS", str(shared_data_dir()))
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        yield


@pytest.fixture(autouse=True)
def _isolated_env(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test gets its own download cache; mirrors point at the shared real data."""
    monkeypatch.setenv("CGCBENCH_DATA_DIR", str(tmp_path_factory.mktemp("cache")))
    monkeypatch.setenv("CGCBENCH_MIRRORS", str(shared_data_dir()))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("CGCBENCH_CARDS", raising=False)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    path = shared_data_dir()
    if not path.is_dir():
        pytest.skip(f"real data mirror {path} is absent")
    return path


@pytest.fixture(scope="session")
def pbmc68k_raw(shared_data: Path) -> ad.AnnData:
    """scanpy's labelled PBMC subset with its log-normalised .raw as X (700 cells × 765 genes)."""
    src = ad.read_h5ad(shared_data / "scrna" / "pbmc68k_reduced.h5ad")
    out = src.raw.to_adata()
    out.obs = src.obs[["bulk_labels", "phase"]].copy()
    return out


@pytest.fixture()
def pbmc_user_file(tmp_path: Path, pbmc68k_raw: ad.AnnData) -> Path:
    """The PBMC set written as a plain user h5ad (obs 'cell_type'), a file no card describes."""
    adata = pbmc68k_raw.copy()
    adata.obs = adata.obs.rename(columns={"bulk_labels": "cell_type"})
    path = tmp_path / "my_pbmc.h5ad"
    adata.write_h5ad(path)
    return path


@pytest.fixture()
def determinism_probe() -> Iterator[list[bool]]:
    """Install a progress sink that records, at every update of a training loop, whether
    PyTorch's deterministic kernels were on (``cgc.determinism``); yields that list and checks
    afterwards that the global setting was restored."""
    import torch

    from cgc.progress import RecordingSink, reporting_to

    flags: list[bool] = []

    class Probe(RecordingSink):
        def update(self, completed: int, status: str = "") -> None:
            flags.append(torch.are_deterministic_algorithms_enabled())
            super().update(completed, status)

    with reporting_to(Probe()):
        yield flags
    assert not torch.are_deterministic_algorithms_enabled()


class Loopback:
    """Loopback HTTP servers for one test (the ``loopback`` fixture); shut down after it."""

    def __init__(self) -> None:
        self.servers: list[http.server.ThreadingHTTPServer] = []

    def serve(self, handler: Callable[..., http.server.BaseHTTPRequestHandler]) -> str:
        """Serve requests with ``handler`` on 127.0.0.1; return the base URL."""
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        self.servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    def serve_directory(self, root: Path) -> str:
        """Serve the files of ``root`` (quietly); return the base URL."""
        handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
        handler.log_message = lambda *a, **k: None  # type: ignore[attr-defined]
        return self.serve(handler)

    def close(self) -> None:
        """Stop every server."""
        for server in self.servers:
            server.shutdown()
            server.server_close()


@pytest.fixture()
def loopback() -> Iterator[Loopback]:
    """Start loopback HTTP servers for a test (downloads are tested against these, never the net)."""
    servers = Loopback()
    try:
        yield servers
    finally:
        servers.close()
