"""Dataset resolution: cache, mirrors, bundled package files and checksummed downloads."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from benchmarks.data.cards import DatasetCard, FileSpec, parse_card
from benchmarks.data.fetch import data_dir, resolve_file, sha256_file
from benchmarks.errors import CgcbenchError, ChecksumError, InputError

TRRUST = "priors/trrust_rawdata.human.tsv"


@pytest.fixture()
def http_root(tmp_path: Path, shared_data: Path, loopback) -> tuple[str, Path]:
    """A loopback HTTP server serving a copy of a real TRRUST file."""
    root = tmp_path / "www"
    root.mkdir()
    (root / "trrust.tsv").write_bytes((shared_data / TRRUST).read_bytes())
    return loopback.serve_directory(root), root


def _card(spec: FileSpec) -> DatasetCard:
    return DatasetCard(
        name="trrust_test",
        version="2",
        title="t",
        organism="human",
        gene_id_type="symbol",
        license="academic",
        kind="priors",
        files=(spec,),
    )


def test_download_verifies_and_caches(http_root, monkeypatch):
    url, root = http_root
    sha = sha256_file(root / "trrust.tsv")
    monkeypatch.setenv("CGCBENCH_MIRRORS", "")
    spec = FileSpec(name="trrust.tsv", sha256=sha, urls=(f"{url}/trrust.tsv",))
    path = resolve_file(_card(spec), spec)
    assert path == data_dir() / "trrust_test" / "trrust.tsv"
    assert sha256_file(path) == sha
    assert not list(path.parent.glob(".*part"))  # no temporary file left behind
    (root / "trrust.tsv").unlink()  # the server no longer has it: the cache must serve it
    assert resolve_file(_card(spec), spec) == path


def test_checksum_mismatch_removes_the_download(http_root, monkeypatch):
    url, _ = http_root
    monkeypatch.setenv("CGCBENCH_MIRRORS", "")
    spec = FileSpec(name="trrust.tsv", sha256="0" * 64, urls=(f"{url}/trrust.tsv",))
    with pytest.raises(ChecksumError, match="does not match"):
        resolve_file(_card(spec), spec)
    target = data_dir() / "trrust_test"
    assert not target.exists() or not any(target.iterdir())


def test_tampered_cache_is_refetched(http_root, monkeypatch):
    url, root = http_root
    monkeypatch.setenv("CGCBENCH_MIRRORS", "")
    sha = sha256_file(root / "trrust.tsv")
    spec = FileSpec(name="trrust.tsv", sha256=sha, urls=(f"{url}/trrust.tsv",))
    path = resolve_file(_card(spec), spec)
    path.write_bytes(path.read_bytes()[:100])  # truncate the cached copy
    events: list[str] = []
    again = resolve_file(_card(spec), spec, on_event=events.append)
    assert sha256_file(again) == sha
    assert any("mismatch" in e for e in events)


def test_unknown_sha_is_recorded_after_download(http_root, monkeypatch):
    url, root = http_root
    monkeypatch.setenv("CGCBENCH_MIRRORS", "")
    spec = FileSpec(name="trrust.tsv", urls=(f"{url}/trrust.tsv",))
    path = resolve_file(_card(spec), spec)
    recorded = path.with_name("trrust.tsv.sha256").read_text().strip()
    assert recorded == hashlib.sha256((root / "trrust.tsv").read_bytes()).hexdigest()


def test_mirror_is_used_in_place(shared_data):
    sha = sha256_file(shared_data / TRRUST)
    spec = FileSpec(name="trrust_rawdata.human.tsv", sha256=sha, mirror_path=TRRUST)
    assert resolve_file(_card(spec), spec) == shared_data / TRRUST


def test_mirror_with_wrong_sha_is_not_used(shared_data):
    spec = FileSpec(name="trrust_rawdata.human.tsv", sha256="1" * 64, mirror_path=TRRUST)
    with pytest.raises(CgcbenchError, match="CGCBENCH_MIRRORS"):
        resolve_file(_card(spec), spec)


def test_bundled_package_file(monkeypatch):
    monkeypatch.setenv("CGCBENCH_MIRRORS", "")
    import scanpy

    bundled = Path(scanpy.__file__).parent / "datasets" / "10x_pbmc68k_reduced.h5ad"
    spec = FileSpec(
        name="pbmc.h5ad",
        sha256=sha256_file(bundled),
        package_file="scanpy:datasets/10x_pbmc68k_reduced.h5ad",
    )
    assert resolve_file(_card(spec), spec) == bundled


def test_unreachable_download_names_the_fix(monkeypatch):
    monkeypatch.setenv("CGCBENCH_MIRRORS", "")
    spec = FileSpec(name="x.tsv", urls=("http://127.0.0.1:9/x.tsv",))
    with pytest.raises(CgcbenchError, match="could not download x.tsv"):
        resolve_file(_card(spec), spec)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"name": "x"}, "missing required field"),
        (
            {
                "name": "x",
                "version": "1",
                "title": "t",
                "organism": "human",
                "gene_id_type": "symbol",
                "license": "MIT",
                "kind": "weird",
                "files": [],
            },
            "kind='weird'",
        ),
        (
            {
                "name": "x",
                "version": "1",
                "title": "t",
                "organism": "human",
                "gene_id_type": "symbol",
                "license": "MIT",
                "kind": "scrna",
                "files": [{"name": "a", "sha256": "xyz", "urls": ["https://a"]}],
            },
            "64 lowercase hex",
        ),
        (
            {
                "name": "x",
                "version": "1",
                "title": "t",
                "organism": "human",
                "gene_id_type": "symbol",
                "license": "MIT",
                "kind": "scrna",
                "files": [{"name": "a"}],
            },
            "no urls, mirror_path",
        ),
    ],
)
def test_bad_cards_are_rejected(data, message):
    with pytest.raises(InputError, match=message):
        parse_card(data)
