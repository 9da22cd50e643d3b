"""Dataset cards under ``datasets/``: they parse, they cover the shared data mirror exactly, and
their checksums and URLs are sound."""

from __future__ import annotations

import hashlib
import os
import re
from collections import defaultdict
from pathlib import Path

import pytest

from benchmarks.data.cards import DatasetCard, load_card

REPO = Path(__file__).resolve().parents[1]
CARD_DIR = REPO / "datasets"
CARD_PATHS = sorted(CARD_DIR.glob("*.toml"))
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]*$")


def _mirror_dir() -> Path:
    env = [p for p in os.environ.get("CGCBENCH_MIRRORS", "").split(os.pathsep) if p]
    if env:
        return Path(env[0]).expanduser()
    return Path(__file__).resolve().parents[1].parent / "shared" / "data"


MIRROR = _mirror_dir()
needs_mirror = pytest.mark.skipif(
    not (MIRROR / "MANIFEST.md").is_file(),
    reason=f"shared data mirror not found at {MIRROR} (set CGCBENCH_MIRRORS to the directory "
    "holding MANIFEST.md to run the coverage checks)",
)


def _cards() -> list[DatasetCard]:
    return [load_card(p) for p in CARD_PATHS]


def _manifest_sha() -> dict[str, str]:
    out = {}
    for line in (MIRROR / "MANIFEST.md").read_text().splitlines():
        m = re.match(r"^\s+([0-9a-f]{64})\s+\./(\S+)\s*$", line)
        if m:
            out[m.group(2)] = m.group(1)
    return out


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def test_there_are_cards():
    assert CARD_PATHS, f"no *.toml cards in {CARD_DIR}"


@pytest.mark.parametrize("path", CARD_PATHS, ids=[p.stem for p in CARD_PATHS])
def test_card_parses_and_is_named_after_its_file(path):
    card = load_card(path)  # raises InputError on any schema problem
    assert card.name == path.stem
    assert NAME_RE.match(card.name), f"{path.name}: use lowercase letters, digits, '_' or '-'"
    assert card.files, f"{path.name}: no files"
    assert card.description.strip(), f"{path.name}: empty description"
    assert card.citation and card.source, f"{path.name}: citation and source are required here"
    file_names = [f.name for f in card.files]
    assert len(file_names) == len(set(file_names)), f"{path.name}: duplicate file names"


def _url_values(card: DatasetCard) -> list[str]:
    urls = [u for f in card.files for u in f.urls]
    urls += [u for f in card.files if f.recipe for u in f.recipe.urls]
    urls += [v for v in card.extra.values() if isinstance(v, str) and "://" in v]
    if card.citation.startswith(("http:", "https:")):
        urls.append(card.citation)
    return urls


@pytest.mark.parametrize("path", CARD_PATHS, ids=[p.stem for p in CARD_PATHS])
def test_every_url_is_https(path):
    card = load_card(path)
    bad = [u for u in _url_values(card) if not u.startswith("https://") or any(c.isspace() for c in u)]
    assert not bad, f"{path.name}: non-https or malformed URL(s): {bad}"


def test_mirror_paths_are_unique_across_cards():
    owners = defaultdict(list)
    for card in _cards():
        for f in card.files:
            if f.mirror_path:
                owners[f.mirror_path].append(card.name)
    dup = {p: c for p, c in owners.items() if len(c) > 1}
    assert not dup, f"mirror_path claimed by several cards: {dup}"


@needs_mirror
def test_every_mirror_file_is_covered_by_exactly_one_card_with_its_manifest_sha256():
    manifest = _manifest_sha()
    on_disk = sorted(
        p.relative_to(MIRROR).as_posix()
        for p in MIRROR.rglob("*")
        if p.is_file() and p.name != "MANIFEST.md"
    )
    covered: dict[str, list[tuple[str, str | None]]] = defaultdict(list)
    for card in _cards():
        for f in card.files:
            if f.mirror_path:
                covered[f.mirror_path].append((card.name, f.sha256))
    problems = []
    for rel in on_disk:
        owners = covered.get(rel, [])
        if len(owners) != 1:
            problems.append(f"{rel}: covered by {len(owners)} cards {[o[0] for o in owners]}")
            continue
        name, sha = owners[0]
        if rel not in manifest:
            problems.append(f"{rel}: not listed in MANIFEST.md")
        elif sha != manifest[rel]:
            problems.append(f"{rel}: card {name} has sha256 {sha}, MANIFEST.md {manifest[rel]}")
    assert not problems, "\n".join(problems)


@needs_mirror
def test_card_sha256_matches_the_mirrored_bytes():
    bad = []
    for card in _cards():
        for f in card.files:
            path = MIRROR / f.mirror_path if f.mirror_path else None
            if path is not None and path.is_file():
                assert f.sha256, f"{card.name}/{f.name}: mirrored file without sha256"
                if _sha256(path) != f.sha256:
                    bad.append(f"{card.name}/{f.name}")
    assert not bad, f"sha256 differs from the mirrored file: {bad}"
