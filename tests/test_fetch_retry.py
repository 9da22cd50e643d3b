"""Downloads go through pooch: a transient server error is retried, a wrong file is not kept."""

from __future__ import annotations

import http.server
from pathlib import Path

import pytest

from benchmarks.data.cards import DatasetCard, FileSpec
from benchmarks.data.fetch import data_dir, resolve_file, sha256_file

TRRUST = "priors/trrust_rawdata.human.tsv"


@pytest.fixture()
def flaky_server(shared_data: Path, loopback) -> tuple[str, list[int]]:
    """Loopback HTTP: the first request gets a 503, later ones the real TRRUST file."""
    body = (shared_data / TRRUST).read_bytes()
    seen: list[int] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            seen.append(len(seen))
            if len(seen) == 1:
                self.send_error(503, "try again")
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    return f"{loopback.serve(Handler)}/trrust.tsv", seen


def test_transient_server_error_is_retried(flaky_server, shared_data, monkeypatch):
    url, seen = flaky_server
    monkeypatch.setenv("CGCBENCH_MIRRORS", "")
    sha = sha256_file(shared_data / TRRUST)
    spec = FileSpec(name="trrust.tsv", sha256=sha, urls=(url,))
    card = DatasetCard(name="trrust_retry", version="2", title="t", organism="human", gene_id_type="symbol",
                       license="academic", kind="priors", files=(spec,))
    path = resolve_file(card, spec)
    assert len(seen) == 2  # one 503, then the file
    assert path == data_dir() / "trrust_retry" / "trrust.tsv" and sha256_file(path) == sha
    assert [p.name for p in path.parent.iterdir()] == ["trrust.tsv"]  # no temporary file left
