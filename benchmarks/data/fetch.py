"""Resolve a card's files to local paths: cache → mirrors → bundled package file → download.

* **cache** — ``$CGCBENCH_DATA_DIR/<card>/<file>`` (default: the user cache dir). A cached file
  whose sha256 no longer matches is deleted and fetched again, never used.
* **mirrors** — ``$CGCBENCH_MIRRORS``, an ``os.pathsep``-separated list of directories laid out
  like ``../shared/data``; a mirrored file is used in place after its sha256 is checked.
* **package file** — a file shipped inside an installed package (``scanpy:datasets/x.h5ad``).
* **download** — streamed to a temporary file next to its cache path while hashing, then
  renamed atomically; a checksum mismatch deletes the temporary file and raises.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import shutil
import tempfile
import urllib.request
from collections.abc import Callable
from pathlib import Path

from platformdirs import user_cache_dir

from benchmarks.data.cards import DatasetCard, FileSpec
from benchmarks.errors import CgcbenchError, ChecksumError

log = logging.getLogger(__name__)
CHUNK = 1 << 20


def data_dir() -> Path:
    """The download cache directory."""
    env = os.environ.get("CGCBENCH_DATA_DIR")
    return Path(env) if env else Path(user_cache_dir("cgcbench")) / "data"


def mirror_dirs() -> list[Path]:
    """Mirror directories: ``CGCBENCH_MIRRORS`` when set, else ``../shared/data`` beside a checkout.

    Setting ``CGCBENCH_MIRRORS`` to an empty string disables mirrors altogether.
    """
    raw = os.environ.get("CGCBENCH_MIRRORS")
    if raw is None:
        beside_checkout = Path(__file__).resolve().parents[3] / "shared" / "data"
        return [beside_checkout] if beside_checkout.is_dir() else []
    return [Path(p).expanduser() for p in raw.split(os.pathsep) if p]


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, streamed."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def _matches(path: Path, spec: FileSpec) -> bool:
    return spec.sha256 is None or sha256_file(path) == spec.sha256


def _package_path(ref: str) -> Path | None:
    package, _, rel = ref.partition(":")
    found = importlib.util.find_spec(package)
    if found is None or not found.submodule_search_locations:
        return None
    base = Path(next(iter(found.submodule_search_locations)))
    path = base / rel
    return path if path.is_file() else None


def download(url: str, dest: Path, expected_sha256: str | None, timeout: float = 60.0) -> str:
    """Stream ``url`` to ``dest`` atomically, verifying the sha256; return the sha256 seen.

    Raises
    ------
    ChecksumError
        If the downloaded bytes do not hash to ``expected_sha256`` (nothing is left on disk).

    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    tmp = Path(tmp_name)
    h = hashlib.sha256()
    try:
        req = urllib.request.Request(url, headers={"User-Agent": "cgcbench"})
        with urllib.request.urlopen(req, timeout=timeout) as resp, os.fdopen(fd, "wb") as out:
            for block in iter(lambda: resp.read(CHUNK), b""):
                h.update(block)
                out.write(block)
        seen = h.hexdigest()
        if expected_sha256 is not None and seen != expected_sha256:
            raise ChecksumError(
                f"{url}: sha256 {seen} does not match the card's {expected_sha256}; the file was "
                "removed — check the URL or update the card's sha256 if upstream changed"
            )
        os.replace(tmp, dest)
        return seen
    finally:
        tmp.unlink(missing_ok=True)


def resolve_file(
    card: DatasetCard,
    spec: FileSpec,
    *,
    allow_download: bool = True,
    on_event: Callable[[str], None] | None = None,
) -> Path:
    """Return a local, checksum-verified path for one file of ``card``."""
    note = on_event or log.info
    cached = data_dir() / card.name / spec.name
    if cached.exists():
        if _matches(cached, spec):
            return cached
        note(f"{cached}: sha256 mismatch, removing the corrupt cached copy and fetching again")
        cached.unlink()
    for mirror in mirror_dirs():
        for rel in filter(None, (spec.mirror_path, spec.name)):
            candidate = mirror / rel
            if candidate.is_file():
                if _matches(candidate, spec):
                    return candidate
                note(f"{candidate}: sha256 does not match card {card.name}; mirror copy ignored")
    if spec.package_file:
        bundled = _package_path(spec.package_file)
        if bundled is not None and _matches(bundled, spec):
            return bundled
    if not allow_download or not spec.urls:
        where = ", ".join(str(m) for m in mirror_dirs()) or "(CGCBENCH_MIRRORS unset)"
        raise CgcbenchError(
            f"dataset {card.name}: file {spec.name} is not in the cache ({cached.parent}) or the "
            f"mirrors ({where})"
            + ("" if spec.urls else " and the card lists no download URL")
            + "; set CGCBENCH_MIRRORS to a directory holding it or run `cgcbench datasets fetch "
            f"{card.name}` on a machine with internet"
        )
    errors = []
    for url in spec.urls:
        try:
            note(f"downloading {url}")
            seen = download(url, cached, spec.sha256)
            if spec.sha256 is None:
                cached.with_name(cached.name + ".sha256").write_text(seen + "\n")
                note(f"{card.name}/{spec.name}: no sha256 in the card; recorded {seen}")
            return cached
        except ChecksumError:
            raise
        except OSError as exc:  # URLError, HTTPError, timeouts
            errors.append(f"{url}: {exc}")
    raise CgcbenchError(
        f"dataset {card.name}: could not download {spec.name} ({'; '.join(errors)}); set "
        "CGCBENCH_MIRRORS to a directory that holds it"
    )


def resolve(card: DatasetCard, *, allow_download: bool = True) -> dict[str, Path]:
    """Local paths of all of a card's files, by file name."""
    return {f.name: resolve_file(card, f, allow_download=allow_download) for f in card.files}


def verify(card: DatasetCard) -> list[tuple[str, str, str]]:
    """Check every file of ``card`` wherever it is found: ``(file, status, where)`` rows."""
    rows = []
    for spec in card.files:
        try:
            path = resolve_file(card, spec, allow_download=False)
            rows.append((spec.name, "ok" if spec.sha256 else "ok (no sha256 declared)", str(path)))
        except CgcbenchError as exc:
            rows.append((spec.name, "missing", str(exc)))
    return rows


def copy_into_cache(path: Path, card: DatasetCard, spec: FileSpec) -> Path:
    """Copy a verified file into the cache (used by ``cgcbench datasets fetch --copy``)."""
    dest = data_dir() / card.name / spec.name
    if dest.resolve() == path.resolve():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.part")
    shutil.copyfile(path, tmp)
    os.replace(tmp, dest)
    return dest
