"""Resolve a card's files to local paths: cache → mirrors → bundled package file → download.

* **cache** — ``$CGCBENCH_DATA_DIR/<card>/<file>`` (default: the user cache dir). A cached file
  whose sha256 no longer matches is deleted and fetched again, never used. A file whose card
  declares no sha256 gets its own, recorded at download time in ``<file>.sha256`` beside it
  and checked on every load (:func:`write_sidecar`, :func:`verify_sidecar`; simulated data sets
  use the same pair). File names are confined to the cache (:func:`cache_path`).
* **mirrors** — ``$CGCBENCH_MIRRORS``, an ``os.pathsep``-separated list of directories laid out
  like ``../shared/data``; a mirrored file is used in place after its sha256 is checked.
* **package file** — a file shipped inside an installed package (``scanpy:datasets/x.h5ad``).
* **download** — with pooch (:func:`download`): streamed to a temporary file next to its
  cache path, checksum-verified, retried on failure, then moved into place; a checksum
  mismatch deletes the temporary file and raises.
* **archive member** — a card file with ``member`` is one file inside a downloaded archive
  (zip/wheel or tar, compressed or not; :func:`download_member`): pooch downloads the archive
  into a temporary folder beside the cache path and checks ``archive_sha256``, pooch's
  ``Unzip``/``Untar`` extract only that member, which is checked against the file's sha256 and
  moved into place; the temporary folder (archive included) is always removed, so a failure
  leaves nothing in the cache.

* **recipe** — a file converted from an upstream release (no upstream file has its bytes)
  declares ``[files.recipe]`` (:mod:`benchmarks.data.recipes`; :func:`build_from_recipe`):
  the upstream file (e.g. a Debian ``.deb``) is downloaded with pooch into a temporary folder
  beside the cache path and checked against the recipe's sha256, the member is extracted, the
  registered converter writes the file, whose content is checked against ``content_sha256``
  and whose bytes against the card's sha256/``accept_sha256``; only then is it moved into
  place. Another zlib may compress the same content to other bytes: such a build is kept when
  its content matches, with its byte digest recorded in ``<file>.sha256`` (a cached recipe file
  is accepted by that record). The temporary folder is always removed.

A card may list ``accept_sha256``: other encodings of the same content (e.g. the mirror holds
the upstream matrix re-written by a newer anndata); a file matching any of them is used.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import logging
import os
import shutil
import sys
from collections.abc import Callable, Collection, Iterator
from pathlib import Path
from typing import Any

from platformdirs import user_cache_dir

from benchmarks.data.cards import DatasetCard, FileSpec
from benchmarks.errors import CgcbenchError, ChecksumError, InputError

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


SIDECAR_SUFFIX = ".sha256"
"""A file's own sha256, stored beside it when no card declares one (simulations, downloads)."""


def sidecar(path: Path) -> Path:
    """Where the sha256 of ``path`` is stored: ``<path>.sha256``."""
    return path.with_name(path.name + SIDECAR_SUFFIX)


def write_sidecar(path: Path, digest: str | None = None) -> str:
    """Record the sha256 of ``path`` beside it (atomically); return it."""
    digest = digest or sha256_file(path)
    tmp = path.with_name(f".{path.name}{SIDECAR_SUFFIX}.tmp")
    tmp.write_text(digest + "\n")
    os.replace(tmp, sidecar(path))
    return digest


def verify_sidecar(path: Path, fix: str) -> str:
    """Check ``path`` against the sha256 recorded beside it at creation; return the digest.

    Raises
    ------
    ChecksumError
        If the recorded sha256 is missing or does not match (``fix`` tells the user what to do).

    """
    side = sidecar(path)
    if not side.is_file():
        raise ChecksumError(f"{path}: no recorded sha256 ({side.name} is missing); {fix}")
    expected = side.read_text().strip()
    seen = sha256_file(path)
    if seen != expected:
        raise ChecksumError(
            f"{path}: sha256 {seen[:12]}… does not match the {expected[:12]}… recorded when it was "
            f"written: the file is corrupted; {fix}"
        )
    return seen


def cache_path(card: DatasetCard, spec: FileSpec) -> Path:
    """``<cache>/<card name>/<file name>``, refusing names that would leave the cache.

    Raises
    ------
    InputError
        If the card's name or file name reaches outside the cache directory.

    """
    root = data_dir().resolve()
    path = (root / card.name / spec.name).resolve()
    if not path.is_relative_to(root / card.name) or path == (root / card.name):
        where = card.path or card.name
        raise InputError(
            f"{where}: file name {spec.name!r} of card {card.name!r} leaves the cache {root}; "
            "use a plain file name"
        )
    return data_dir() / card.name / spec.name


def _matches(path: Path, spec: FileSpec) -> bool:
    if spec.sha256 is not None:
        seen = sha256_file(path)
        if seen in spec.digests:
            return True
        # a recipe build whose content was verified but whose bytes another zlib wrote
        side = sidecar(path)
        return (spec.recipe is not None and spec.recipe.content_sha256 is not None and side.is_file()
                and side.read_text().strip() == seen)
    side = sidecar(path)
    return not side.is_file() or sha256_file(path) == side.read_text().strip()


def _package_path(ref: str) -> Path | None:
    package, _, rel = ref.partition(":")
    found = importlib.util.find_spec(package)
    if found is None or not found.submodule_search_locations:
        return None
    base = Path(next(iter(found.submodule_search_locations)))
    path = base / rel
    return path if path.is_file() else None


DOWNLOAD_RETRIES = 2
"""Extra attempts after a failed download (connection error, HTTP error or checksum mismatch)."""


def download(
    url: str,
    dest: Path,
    expected_sha256: str | None,
    timeout: float = 60.0,
    retries: int = DOWNLOAD_RETRIES,
    progressbar: bool | None = None,
) -> str:
    """Download ``url`` to ``dest`` with pooch; return the sha256 of the file.

    pooch streams to a temporary file beside ``dest``, checks the sha256, retries
    ``retries`` times (with back-off) on connection errors and mismatches, and moves the file
    into place only when it is whole and verified. ``progressbar`` (default: when stderr is a
    terminal and ``CGCBENCH_QUIET`` is unset) shows pooch's progress bar.

    Raises
    ------
    ChecksumError
        If the downloaded bytes do not hash to ``expected_sha256`` (nothing is left on disk).
    OSError
        If the server cannot be reached or answers with an error, after the retries.

    """
    _pooch_fetch(url, dest, expected_sha256, timeout, retries, progressbar)
    return sha256_file(dest)


def _pooch_fetch(
    url: str,
    dest: Path,
    expected_sha256: str | None,
    timeout: float,
    retries: int,
    progressbar: bool | None,
    processor: Callable[..., Any] | None = None,
) -> Any:
    """Fetch ``url`` into ``dest`` with pooch (hash check, retries, atomic move, ``processor``)."""
    import pooch
    import requests

    dest.parent.mkdir(parents=True, exist_ok=True)
    if progressbar is None:
        progressbar = sys.stderr.isatty() and not os.environ.get("CGCBENCH_QUIET")
    fetcher = pooch.create(
        path=dest.parent,
        base_url="",
        registry={dest.name: f"sha256:{expected_sha256}" if expected_sha256 else None},
        urls={dest.name: url},
        retry_if_failed=retries,
    )
    downloader = (
        _copy_local_file
        if url.startswith("file:")
        else pooch.HTTPDownloader(
            progressbar=progressbar, timeout=timeout, headers={"User-Agent": "cgcbench"}
        )
    )
    try:
        return fetcher.fetch(dest.name, downloader=downloader, processor=processor)
    except ValueError as exc:  # pooch: the hash does not match (its temporary file is removed)
        what = "archive_sha256" if processor is not None else "sha256"
        raise ChecksumError(
            f"{url}: the download does not match the card's {what} {expected_sha256} "
            f"({str(exc).splitlines()[0][:200]}); the file was removed — check the URL or update "
            "the card's sha256 if upstream changed"
        ) from exc
    except requests.exceptions.RequestException as exc:
        raise OSError(f"{type(exc).__name__}: {exc}") from exc


@contextlib.contextmanager
def _scratch_beside(dest: Path, tag: str) -> Iterator[Path]:
    """Yield an empty folder ``.<dest name>.<tag>-<pid>`` beside ``dest``, removed whatever happens.

    Beside ``dest`` means on the same file system, so the finished file moves into place in one step.
    """
    tmp = dest.parent / f".{dest.name}.{tag}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _archive_name(url: str) -> str:
    """A plain file name for a downloaded archive (the URL's last path component)."""
    from urllib.parse import unquote, urlparse

    name = Path(unquote(urlparse(url).path)).name
    return name if name and name not in (".", "..") else "archive"


def download_member(
    url: str,
    dest: Path,
    member: str,
    *,
    archive_format: str,
    archive_sha256: str | None,
    expected: Collection[str] = (),
    timeout: float = 60.0,
    retries: int = DOWNLOAD_RETRIES,
    progressbar: bool | None = None,
) -> str:
    """Download the archive at ``url``, extract ``member`` to ``dest``; return the member's sha256.

    The archive goes to a temporary folder beside ``dest`` (pooch: checked against
    ``archive_sha256``, retried); pooch's ``Unzip`` (``archive_format="zip"``, wheels too) or
    ``Untar`` (``"tar"``, also ``.tar.gz``/``.bz2``/``.xz``) extracts only ``member``; it must be
    a regular file whose sha256 is one of ``expected`` (any, when empty) and is then moved to
    ``dest`` in one step. The temporary folder is removed whatever happens.

    Raises
    ------
    ChecksumError
        If the archive does not match ``archive_sha256`` or the member matches none of
        ``expected`` (nothing is left on disk).
    CgcbenchError
        If the archive holds no regular file ``member``.
    OSError
        If the server cannot be reached or answers with an error, after the retries.

    """
    import tarfile
    import zipfile

    import pooch

    if archive_format not in ("zip", "tar"):
        raise InputError(f"{url}: archive format {archive_format!r}; use 'zip' or 'tar'")
    extract = pooch.Unzip if archive_format == "zip" else pooch.Untar
    with _scratch_beside(dest, "archive") as tmp:
        archive = tmp / _archive_name(url)
        try:
            _pooch_fetch(url, archive, archive_sha256, timeout, retries, progressbar,
                         processor=extract(members=[member], extract_dir=str(tmp / "extracted")))
        except (zipfile.BadZipFile, tarfile.TarError) as exc:
            raise CgcbenchError(
                f"{url}: the download is not a readable {archive_format} archive ({exc}); check the "
                "card's URL and its compression"
            ) from exc
        root = (tmp / "extracted").resolve()
        found = tmp / "extracted" / member
        if found.is_symlink() or not found.is_file() or not found.resolve().is_relative_to(root):
            names = _member_names(archive, archive_format)
            close = [n for n in names if Path(n).name == Path(member).name][:3] or names[:5]
            raise CgcbenchError(
                f"{url}: the archive holds no file {member!r} (members like {close}); fix the card's "
                "'member' (the path inside the archive)"
            )
        digest = sha256_file(found)
        if expected and digest not in expected:
            raise ChecksumError(
                f"{url}: member {member} has sha256 {digest}, not the card's "
                f"{' or '.join(expected)}; nothing was kept — update the card's sha256 if upstream "
                "changed"
            )
        os.replace(found, dest)
        return digest


def _member_names(archive: Path, archive_format: str) -> list[str]:
    import tarfile
    import zipfile

    try:
        if archive_format == "zip":
            with zipfile.ZipFile(archive) as zf:
                return zf.namelist()
        with tarfile.open(archive) as tf:
            return tf.getnames()
    except (OSError, zipfile.BadZipFile, tarfile.TarError):
        return []


def _copy_local_file(url: str, output_file: str, pooch_obj: object) -> None:
    """Downloader for ``file:`` URLs, given to pooch (cards and tests that point at a local file).

    pooch's own downloaders speak HTTP(S)/FTP/SFTP/DOI only; this copies the file into
    pooch's temporary output, which pooch then hashes and moves into place as for any download.
    """
    from urllib.parse import unquote, urlparse
    from urllib.request import url2pathname

    parsed = urlparse(url)
    source = Path(url2pathname(unquote(parsed.path)))
    if not source.is_file():
        raise OSError(f"{url}: no such local file")
    shutil.copyfile(source, output_file)


def build_from_recipe(card: DatasetCard, spec: FileSpec, dest: Path,
                      note: Callable[[str], None] = log.info) -> str:
    """Build ``spec`` into ``dest`` from its card's recipe; return the file's sha256.

    Each recipe URL is tried in turn: the upstream file is downloaded (pooch: sha256-checked,
    retried) into a temporary folder beside ``dest``, the recipe's member is extracted from the
    ``.deb``, the converter writes the file, its content is checked against ``content_sha256``
    and its bytes against the card's digests; the file is then moved to ``dest`` in one step
    (with a ``.sha256`` record when only the content matched). The temporary folder is removed
    whatever happens.

    Raises
    ------
    ChecksumError
        If the upstream download, the converted content or (with no ``content_sha256``) the
        converted bytes do not match the card (nothing is left on disk).
    CgcbenchError
        If no URL could be downloaded, or the package lacks the member.

    """
    from benchmarks.data.recipes import CONVERTERS, content_sha256, extract_deb_member

    recipe = spec.recipe
    if recipe is None:
        raise CgcbenchError(f"dataset {card.name}: file {spec.name} has no recipe")
    where = card.path or card.name
    errors: list[str] = []
    for url in recipe.urls:
        with _scratch_beside(dest, "recipe") as tmp:
            upstream = tmp / _archive_name(url)
            note(f"downloading {url} (to build {card.name}/{spec.name} with {recipe.converter})")
            try:
                download(url, upstream, recipe.sha256)
            except ChecksumError as exc:
                raise ChecksumError(f"{where}: files.recipe.sha256: {exc}") from exc
            except OSError as exc:
                errors.append(f"{url}: {exc}")
                continue
            source = upstream
            if recipe.format == "deb":
                source = tmp / "member"
                extract_deb_member(upstream, str(recipe.member), source)
                upstream.unlink()
            built = tmp / spec.name
            CONVERTERS[recipe.converter](source, built)
            if recipe.content_sha256 is not None:
                content = content_sha256(built)
                if content != recipe.content_sha256:
                    raise ChecksumError(
                        f"{where}: the content built by {recipe.converter} from {url} has sha256 "
                        f"{content}, not the recipe's content_sha256 {recipe.content_sha256}; nothing "
                        "was kept — the converter or the upstream file changed")
            seen = sha256_file(built)
            if spec.digests and seen not in spec.digests and recipe.content_sha256 is None:
                raise ChecksumError(
                    f"{where}: {spec.name} built by {recipe.converter} has sha256 {seen}, not the "
                    f"card's {' or '.join(spec.digests)}; nothing was kept")
            os.replace(built, dest)
            if spec.sha256 is None or seen not in spec.digests:
                write_sidecar(dest, seen)
                note(f"{card.name}/{spec.name}: content verified; its bytes ({seen}) recorded beside it")
            else:
                sidecar(dest).unlink(missing_ok=True)
            return seen
    raise CgcbenchError(
        f"dataset {card.name}: could not download the upstream file of {spec.name}'s recipe "
        f"({'; '.join(errors)}); set CGCBENCH_MIRRORS to a directory that holds "
        f"{spec.mirror_path or spec.name}"
    )


def resolve_file(
    card: DatasetCard,
    spec: FileSpec,
    *,
    allow_download: bool = True,
    on_event: Callable[[str], None] | None = None,
) -> Path:
    """Return a local, checksum-verified path for one file of ``card``."""
    note = on_event or log.info
    cached = cache_path(card, spec)
    if cached.exists():
        if _matches(cached, spec):
            return cached
        note(f"{cached}: sha256 mismatch, removing the corrupt cached copy and fetching again")
        cached.unlink()
        sidecar(cached).unlink(missing_ok=True)
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
    if not allow_download or not (spec.urls or spec.recipe):
        where = ", ".join(str(m) for m in mirror_dirs()) or (
            "none: CGCBENCH_MIRRORS is empty" if os.environ.get("CGCBENCH_MIRRORS") is not None
            else "none: CGCBENCH_MIRRORS is unset and there is no ../shared/data")
        raise CgcbenchError(
            f"dataset {card.name}: file {spec.name} is not in the cache ({cached.parent}) or the "
            f"mirrors ({where})"
            + ("" if spec.urls or spec.recipe else " and the card lists no download URL or recipe")
            + "; set CGCBENCH_MIRRORS to a directory holding it or run `cgcbench datasets fetch "
            f"{card.name}` on a machine with internet"
        )
    errors = []
    for url in spec.urls:
        try:
            if spec.member is not None:
                note(f"downloading {url} (for its member {spec.member})")
                seen = download_member(url, cached, spec.member, archive_format=str(spec.archive_format),
                                       archive_sha256=spec.archive_sha256, expected=spec.digests)
            else:
                note(f"downloading {url}")
                seen = download(url, cached, spec.sha256)
            if spec.sha256 is None:  # verified against this on every later load
                write_sidecar(cached, seen)
                note(f"{card.name}/{spec.name}: no sha256 in the card; recorded {seen}")
            return cached
        except ChecksumError:
            raise
        except OSError as exc:  # URLError, HTTPError, timeouts
            errors.append(f"{url}: {exc}")
    if spec.recipe is not None:
        try:
            build_from_recipe(card, spec, cached, note)
            return cached
        except ChecksumError:
            raise
        except CgcbenchError as exc:
            if not errors:
                raise
            errors.append(str(exc))
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
    dest = cache_path(card, spec)
    if dest.resolve() == path.resolve():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.part")
    shutil.copyfile(path, tmp)
    os.replace(tmp, dest)
    return dest
