"""Card file names stay in the cache; every cached file is checked against a sha256 (issue 15)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import anndata as ad
import numpy as np
import pytest

import benchmarks.simulate as simulate_mod
from benchmarks.data.cards import get_card, parse_card
from benchmarks.data.fetch import data_dir, resolve_file, sidecar
from benchmarks.errors import CgcbenchError, ChecksumError, InputError

CARD = """\
name = "{name}"
version = "1"
title = "hostile"
organism = "human"
gene_id_type = "symbol"
license = "CC0"
kind = "grn"

[[files]]
name = "{file}"
urls = ["{url}"]
"""


def _card(tmp_path: Path, name: str, file: str, url: str) -> Path:
    cards = tmp_path / "cards"
    cards.mkdir(exist_ok=True)
    (cards / f"{name}.toml").write_text(CARD.format(name=name, file=file, url=url))
    return cards


@pytest.mark.parametrize("bad", ["../../escaped.txt", "/tmp/abs.txt", "sub/dir.txt", "..", "~x"])
def test_card_file_name_must_be_a_plain_name(bad: str) -> None:
    data = {"name": "c", "version": "1", "title": "t", "organism": "human", "gene_id_type": "symbol",
            "license": "CC0", "kind": "grn", "files": [{"name": bad, "urls": ["file:///x"]}]}
    with pytest.raises(InputError, match="not a plain file name"):
        parse_card(data)


def test_card_mirror_path_must_stay_relative() -> None:
    data = {"name": "c", "version": "1", "title": "t", "organism": "human", "gene_id_type": "symbol",
            "license": "CC0", "kind": "grn", "files": [{"name": "x.txt", "mirror_path": "../../etc/passwd"}]}
    with pytest.raises(InputError, match="relative path without"):
        parse_card(data)


def test_datasets_fetch_cannot_write_outside_the_cache(tmp_path: Path) -> None:
    payload = tmp_path / "payload.txt"
    payload.write_text("planted")
    cards = _card(tmp_path, "evil", "../../escaped.txt", payload.as_uri())
    cache = tmp_path / "deep" / "cache"
    env = dict(os.environ, CGCBENCH_CARDS=str(cards), CGCBENCH_DATA_DIR=str(cache))
    proc = subprocess.run([sys.executable, "-m", "benchmarks.cli", "datasets", "fetch", "evil"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "not a plain file name" in proc.stderr and "Traceback" not in proc.stderr
    assert not list(tmp_path.rglob("escaped.txt")), "a card wrote outside the cache"


def test_download_without_card_sha_is_verified_on_every_load(tmp_path: Path, monkeypatch) -> None:
    payload = tmp_path / "payload.txt"
    payload.write_text("gene\tTF\nA\tB\n")
    monkeypatch.setenv("CGCBENCH_CARDS", str(_card(tmp_path, "nosha", "net.tsv", payload.as_uri())))
    card = get_card("nosha")
    path = resolve_file(card, card.files[0])
    assert path.parent.parent == data_dir() and sidecar(path).is_file()
    assert resolve_file(card, card.files[0], allow_download=False) == path
    data = bytearray(path.read_bytes())
    data[3] ^= 0x01  # one flipped bit
    path.write_bytes(bytes(data))
    with pytest.raises(CgcbenchError, match="not in the cache"):  # the corrupted copy is never used
        resolve_file(card, card.files[0], allow_download=False)
    assert resolve_file(card, card.files[0]).read_text() == payload.read_text()  # fetched again


def _tiny_simulation(params, n_jobs=None) -> ad.AnnData:
    rng = np.random.default_rng(0)
    out = ad.AnnData(X=rng.poisson(1.0, (20, 5)).astype(np.float32))
    out.uns["simulation"] = {}
    return out


def test_simulated_file_gets_a_sha_and_a_flipped_byte_is_an_error(monkeypatch) -> None:
    monkeypatch.setattr(simulate_mod, "simulate", _tiny_simulation)
    card = get_card("sergio_batches")
    path = simulate_mod.materialize(card)
    assert sidecar(path).is_file()
    assert simulate_mod.materialize(card) == path  # verified, reused
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ChecksumError, match="corrupted; delete"):
        simulate_mod.materialize(card)
