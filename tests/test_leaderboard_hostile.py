"""Hostile records cannot exfiltrate files, plant scripts or inject HTML into the leaderboard (issue 15)."""

from __future__ import annotations

import copy
import json
import os
import re
from pathlib import Path

import pytest
from PIL import Image

from benchmarks.leaderboard import build
from benchmarks.leaderboard.load import UnsafeArtifactPath, confined_path
from benchmarks.leaderboard.markdown import esc

REPO = Path(__file__).resolve().parents[1]
PUBLISHED = REPO / "leaderboard" / "results" / "records" / "annotation" / "pbmc68k_reduced" / "majority"
HOSTILE_NAME = "<img src=x onerror=alert(1)><script>alert(2)</script>"


def _png(path: Path, colour: tuple[int, int, int]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), colour).save(path)
    return path


def _write(results: Path, rec: dict) -> None:
    path = results / "records" / f"{rec['record_id']}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(rec))


@pytest.fixture()
def hostile_results(tmp_path: Path) -> tuple[Path, Path]:
    base = json.loads(sorted(PUBLISHED.glob("*.json"))[0].read_text())
    secret = _png(tmp_path / "outside" / "secret_umap.png", (255, 0, 0))
    results = tmp_path / "results"
    good = copy.deepcopy(base)
    good["record_id"] = "annotation/pbmc68k_reduced/good/seed0-aaaa"
    good["model"] = {**good["model"], "label": "good", "name": "good", "is_control": False}
    _png(results / "artifacts" / "good" / "confusion_matrix.png", (0, 0, 255))
    good["artifacts"] = ["artifacts/good/confusion_matrix.png"]
    _write(results, good)

    evil = copy.deepcopy(base)
    evil["record_id"] = "annotation/pbmc68k_reduced/evil/seed0-bbbb"
    evil["model"] = {**evil["model"], "label": HOSTILE_NAME, "name": HOSTILE_NAME, "is_control": False}
    evil["dataset"] = {**evil["dataset"], "version": "[x](javascript:alert(3))"}
    link = results / "artifacts" / "evil" / "linked_umap.png"
    link.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(secret, link)
    (results / "artifacts" / "evil" / "plot.svg").write_text(
        '<svg xmlns="http://www.w3.org/2000/svg"><script>alert(4)</script></svg>'
    )
    (results / "artifacts" / "evil" / "fake.png").write_text("<html><script>alert(5)</script></html>")
    evil["artifacts"] = [
        str(secret),  # absolute
        "../outside/secret_umap.png",  # parent traversal
        "artifacts/../../outside/secret_umap.png",
        "artifacts/evil/linked_umap.png",  # a symlink out of the results dir
        "artifacts/evil/plot.svg",  # a script-carrying SVG
        "artifacts/evil/fake.png",  # not an image at all
    ]
    _write(results, evil)
    return results, secret


def test_confined_path_refuses_escapes(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    assert confined_path(tmp_path, "a/b.png") == (tmp_path / "a" / "b.png").resolve()
    for bad in ("/etc/passwd", "../x.png", "a/../../x.png", "~/x.png", "a\\..\\x.png", ""):
        with pytest.raises(UnsafeArtifactPath):
            confined_path(tmp_path, bad)


def test_hostile_record_cannot_exfiltrate_or_inject(hostile_results, tmp_path: Path) -> None:
    results, secret = hostile_results
    out = tmp_path / "site"
    res = build(out, [results])
    copied = [p for p in (out / "assets").rglob("*") if p.is_file()]
    secret_bytes = secret.read_bytes()
    assert all(p.read_bytes() != secret_bytes for p in copied), "a file outside the results dir was copied"
    assert [p.name for p in copied] == ["confusion_matrix.png"], copied  # only the good record's plot
    assert not list((out / "assets").rglob("*.svg"))  # no record's SVG; summary.svg is drawn by the builder
    summary = (out / "summary.svg").read_text()
    assert "<script" not in summary
    refused = [s for s in res.skipped_images if "refused" in s]
    assert len(refused) == 6, res.skipped_images
    md = (out / "README.md").read_text()
    assert "<img" not in md and "<script" not in md
    assert not re.search(r"(?<!\\)\]\(javascript:", md), "an unescaped Markdown link survived"
    assert esc(HOSTILE_NAME) in md
    for page in out.glob("*.html"):
        text = page.read_text()
        assert "<img src=x onerror" not in text and "<script>alert(2)" not in text
    assert json.loads((out / "results.json").read_text())["skipped_images"] == res.skipped_images
