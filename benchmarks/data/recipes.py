"""Recipes: build a card's file from an upstream download when no upstream file has its bytes.

Some files of the data mirror are *converted* from an upstream release — e.g. the Bioconductor
annotation packages ship an SQLite database, which the mirror holds as TSV tables. Their cards
declare a ``[files.recipe]``: the upstream download (``urls`` and its ``sha256``), the path of
the database inside it (``member``; a Debian ``.deb`` is unpacked with the standard library:
an ``ar`` archive whose ``data.tar.*`` holds the package's files) and a **converter** named in
:data:`CONVERTERS`, a function ``(source_path, out_path)`` that writes the file
deterministically (same input → same bytes: gzip with ``mtime=0`` and no file name, rows in a
fixed order). ``content_sha256`` is the sha256 of the converted content — of the decompressed
text for a ``.gz`` file (:func:`content_sha256`) — so the build is checked against what the
mirror holds even where another zlib would compress the same text to other bytes.

:func:`benchmarks.data.fetch.build_from_recipe` runs a recipe (download, extract, convert,
verify, move into the cache). Example (``datasets/go_terms.toml``)::

    [files.recipe]
    converter = "go_db_terms"
    urls = ["https://deb.debian.org/debian/pool/main/r/r-bioc-go.db/r-bioc-go.db_3.16.0-1_all.deb"]
    sha256 = "6cf9c43b..."                 # the .deb, as in Debian's Packages index
    member = "usr/lib/R/site-library/GO.db/extdata/GO.sqlite"
    content_sha256 = "8ab434fc..."         # the decompressed TSV the converter writes
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import shutil
import sqlite3
import tarfile
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import IO, Any

from benchmarks.errors import CgcbenchError

Converter = Callable[[Path, Path], None]
"""A recipe's converter: reads the upstream file at the first path, writes the card's file."""

CONVERTERS: dict[str, Converter] = {}
"""Every converter a card's ``recipe.converter`` may name, by name."""

SOURCE_FORMATS = ("deb", "file")
"""How a recipe's upstream download is read: a member of a Debian package, or the file itself."""

CHUNK = 1 << 20


def register(name: str) -> Callable[[Converter], Converter]:
    """Register a converter under ``name`` (the value a card's ``recipe.converter`` names)."""

    def wrap(fn: Converter) -> Converter:
        CONVERTERS[name] = fn
        return fn

    return wrap


def content_sha256(path: Path) -> str:
    """sha256 of a file's content, independent of how it is encoded on disk.

    For a gzip file: of the decompressed bytes; for an ``.h5ad`` file:
    :func:`anndata_content_sha256` (HDF5 bytes differ between h5py/HDF5 versions); else of the
    bytes.
    """
    if path.name.endswith(".h5ad"):
        return anndata_content_sha256(path)
    with open(path, "rb") as raw:
        gz = raw.read(2) == b"\x1f\x8b"
    with (gzip.open(path, "rb") if gz else open(path, "rb")) as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def anndata_content_sha256(path: Path) -> str:
    """sha256 of an h5ad file's data: matrix values, names, annotations, slot names.

    Hashed in this order: the shape; ``obs_names`` and ``var_names``; each ``obs`` then
    ``var`` column (name, dtype, categories of a categorical, values as text); ``X`` as a
    canonical CSR matrix (dtype name, duplicates summed, sorted indices; data as float64,
    indices and indptr as int64, little-endian); the sorted key names of ``layers``, ``obsm``,
    ``varm``, ``obsp``, ``varp``, ``uns`` and whether ``raw`` is set.
    """
    import anndata as ad
    import scipy.sparse as sp

    adata = ad.read_h5ad(path)
    h = hashlib.sha256()

    def put(*items: Any) -> None:
        for item in items:
            data = item if isinstance(item, bytes) else str(item).encode()
            h.update(len(data).to_bytes(8, "little") + data)

    put("shape", *adata.shape, "obs_names", *adata.obs_names, "var_names", *adata.var_names)
    for side, frame in (("obs", adata.obs), ("var", adata.var)):
        for name in frame.columns:
            col = frame[name]
            cats = list(col.cat.categories) if hasattr(col, "cat") else []
            put(side, name, str(col.dtype), len(cats), *cats, *col.astype(str))
    x = adata.X
    if x is None:
        put("X", "none")
    else:
        csr = sp.csr_matrix(x)
        csr.sum_duplicates()
        csr.sort_indices()
        put("X", str(x.dtype), csr.data.astype("<f8").tobytes(), csr.indices.astype("<i8").tobytes(),
            csr.indptr.astype("<i8").tobytes())
        del csr
    for slot in ("layers", "obsm", "varm", "obsp", "varp", "uns"):
        put(slot, *sorted(getattr(adata, slot).keys()))
    put("raw", adata.raw is not None)
    return h.hexdigest()


# --- Debian packages -----------------------------------------------------------------------

_AR_MAGIC = b"!<arch>\n"


def _ar_members(fh: IO[bytes], where: str) -> Iterator[tuple[str, int, int]]:
    """``(name, offset, size)`` of each member of a (System V / GNU) ``ar`` archive."""
    if fh.read(8) != _AR_MAGIC:
        raise CgcbenchError(f"{where}: not a Debian package (no ar archive header); check the recipe's "
                            "urls and sha256")
    offset = 8
    while True:
        fh.seek(offset)
        header = fh.read(60)
        if len(header) < 60:
            return
        if header[58:60] != b"`\n":
            raise CgcbenchError(f"{where}: corrupt ar member header at byte {offset}")
        name = header[:16].decode("ascii", "replace").strip().rstrip("/")
        size = int(header[48:58].decode("ascii").strip())
        yield name, offset + 60, size
        offset += 60 + size + (size % 2)


class _Slice:
    """A read-only window ``[start, start + size)`` of a binary file (for tarfile's stream mode)."""

    def __init__(self, fh: IO[bytes], start: int, size: int) -> None:
        self._fh, self._pos, self._end = fh, start, start + size

    def read(self, n: int = -1) -> bytes:
        n = self._end - self._pos if n < 0 else min(n, self._end - self._pos)
        self._fh.seek(self._pos)
        data = self._fh.read(n)
        self._pos += len(data)
        return data


def _normal(name: str) -> str:
    return name.removeprefix("./").lstrip("/")


def extract_deb_member(deb: Path, member: str, out: Path) -> None:
    """Copy the file ``member`` of the Debian package ``deb`` (its ``data.tar.*``) to ``out``.

    Only the standard library is used: the ``.deb`` is an ``ar`` archive; its ``data.tar.xz``
    (or ``.gz``, ``.bz2``, ``.zst`` is refused: not in the standard library) is streamed.

    Raises
    ------
    CgcbenchError
        If ``deb`` is not a Debian package or holds no regular file ``member``.

    """
    want = _normal(member)
    with open(deb, "rb") as fh:
        data = [(n, o, s) for n, o, s in _ar_members(fh, str(deb)) if n.startswith("data.tar")]
        if not data:
            raise CgcbenchError(f"{deb}: the Debian package has no data.tar member")
        name, offset, size = data[0]
        if name.endswith(".zst"):
            raise CgcbenchError(f"{deb}: {name} is zstd-compressed, which Python's tarfile cannot read")
        seen: list[str] = []
        try:
            with tarfile.open(fileobj=_Slice(fh, offset, size), mode="r|*") as tf:  # type: ignore[call-overload]
                for info in tf:
                    path = _normal(info.name)
                    if path != want:
                        if info.isfile():
                            seen.append(path)
                        continue
                    if not info.isfile():
                        raise CgcbenchError(f"{deb}: {member} is not a regular file in the package")
                    src = tf.extractfile(info)
                    assert src is not None
                    with open(out, "wb") as dst:
                        shutil.copyfileobj(src, dst, CHUNK)
                    return
        except tarfile.TarError as exc:
            raise CgcbenchError(f"{deb}: {name} is not a readable tar archive ({exc})") from exc
    close = [s for s in seen if Path(s).name == Path(want).name][:3] or seen[:5]
    raise CgcbenchError(f"{deb}: the package holds no file {member!r} (files like {close}); fix the "
                        "recipe's 'member' (the path inside the package, e.g. usr/lib/R/...)")


# --- writing ---------------------------------------------------------------------------------


def write_tsv_gz(out: Path, header: Iterable[str], rows: Iterable[Iterable[Any]]) -> None:
    r"""Write a tab-separated table as gzip, deterministically, in the mirror's text format.

    The text is what Python's :func:`csv.writer` writes with ``delimiter="\t"`` (the
    format of the mirror's TSV files): UTF-8, ``\r\n`` line ends, ``None`` as an empty field,
    a value holding a tab, quote or line break quoted (never altered or dropped). The gzip
    header holds no file name and ``mtime=0``; compression level 9.
    """
    with open(out, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0,
                                               compresslevel=9) as gz, \
            io.TextIOWrapper(gz, encoding="utf-8", newline="") as text:
        writer = csv.writer(text, delimiter="\t", lineterminator="\r\n")
        writer.writerow(header)
        writer.writerows(rows)


@contextmanager
def _sqlite(path: Path) -> Iterator[sqlite3.Connection]:
    """A read-only connection to an SQLite file (nothing is written beside it)."""
    uri = f"{path.resolve().as_uri()}?mode=ro&immutable=1"
    try:
        with closing(sqlite3.connect(uri, uri=True)) as con:
            con.execute("select count(*) from sqlite_master").fetchone()
            yield con
    except sqlite3.DatabaseError as exc:
        raise CgcbenchError(f"{path}: not a readable SQLite database of the expected layout ({exc})") from exc


def _grouped(con: sqlite3.Connection, sql: str) -> dict[int, list[Any]]:
    """``{_id: [value or tuple, ...]}`` in the table's row order."""
    out: dict[int, list[Any]] = defaultdict(list)
    for key, *values in con.execute(sql):
        out[key].append(tuple(values) if len(values) > 1 else values[0])
    return out


# --- Bioconductor annotation packages ------------------------------------------------------

GENE_INFO_COLUMNS = ("entrez_id", "symbol", "gene_name", "gene_type", "chrom", "start", "end",
                     "cytoband", "ensembl_ids")
GENE2GO_COLUMNS = ("entrez_id", "symbol", "go_id", "evidence", "ontology")
GO_TERM_COLUMNS = ("go_id", "term", "ontology")


@register("org_eg_db_gene_info")
def org_eg_db_gene_info(source: Path, out: Path) -> None:
    """Gene table of an ``org.*.eg.db`` SQLite database (Bioconductor), one row per location.

    Genes in ``genes._id`` order; each gene yields one row per (chromosome location ×
    cytoband) pair, in table row order — a gene without either gets one row with those fields
    empty. ``chrom``/``start``/``end`` come from ``chromosome_locations`` (``seqname``, with
    negative coordinates on the minus strand, as Bioconductor stores them), ``ensembl_ids``
    joins the gene's ``ensembl`` rows with ``;``.
    """
    with _sqlite(source) as con:
        genes = con.execute(
            "SELECT g._id, g.gene_id, i.symbol, i.gene_name, t.gene_type FROM genes g "
            "JOIN gene_info i ON i._id = g._id LEFT JOIN genetype t ON t._id = g._id "
            "ORDER BY g._id").fetchall()
        locations = _grouped(con, "SELECT _id, seqname, start_location, end_location "
                                  "FROM chromosome_locations ORDER BY rowid")
        bands = _grouped(con, "SELECT _id, cytogenetic_location FROM cytogenetic_locations ORDER BY rowid")
        ensembl = _grouped(con, "SELECT _id, ensembl_id FROM ensembl ORDER BY rowid")

    def rows() -> Iterator[tuple[Any, ...]]:
        for _id, entrez, symbol, name, gene_type in genes:
            ens = ";".join(ensembl.get(_id, []))
            for chrom, start, end in locations.get(_id, [(None, None, None)]):
                for band in bands.get(_id, [None]):
                    yield entrez, symbol, name, gene_type, chrom, start, end, band, ens

    write_tsv_gz(out, GENE_INFO_COLUMNS, rows())


@register("org_eg_db_gene2go")
def org_eg_db_gene2go(source: Path, out: Path) -> None:
    """Direct gene → GO annotations of an ``org.*.eg.db`` database (tables go_bp, go_mf, go_cc).

    Ontologies in the order BP, MF, CC; within one, by gene (``_id``), GO id and evidence code.
    The ``*_all`` tables (annotations propagated to ancestor terms) are not included.
    """
    with _sqlite(source) as con:
        parts = [
            con.execute(
                f"SELECT g.gene_id, i.symbol, t.go_id, t.evidence, '{ont.upper()}' FROM go_{ont} t "
                "JOIN genes g ON g._id = t._id JOIN gene_info i ON i._id = t._id "
                "ORDER BY t._id, t.go_id, t.evidence").fetchall()
            for ont in ("bp", "mf", "cc")
        ]
    write_tsv_gz(out, GENE2GO_COLUMNS, (row for part in parts for row in part))


@register("go_db_terms")
def go_db_terms(source: Path, out: Path) -> None:
    """GO term names of the ``GO.db`` SQLite database (table go_term), by internal id."""
    with _sqlite(source) as con:
        rows = con.execute("SELECT go_id, term, ontology FROM go_term ORDER BY _id").fetchall()
    write_tsv_gz(out, GO_TERM_COLUMNS, rows)


# --- R data files ----------------------------------------------------------------------------


def _dgc_matrix(obj: Any, where: str) -> tuple[Any, list[str], list[str]]:
    """A Matrix::dgCMatrix read by ``rdata`` → (cells × genes CSR, cell names, gene names)."""
    import numpy as np
    import scipy.sparse as sp

    d = getattr(obj, "__dict__", {})
    if "dgCMatrix" not in list(d.get("class", [])) or not {"i", "p", "x", "Dim", "Dimnames"} <= set(d):
        raise CgcbenchError(f"{where}: not a dgCMatrix (sparse count matrix) as harmony ships it")
    genes_by_cells = sp.csc_matrix((np.asarray(d["x"]), np.asarray(d["i"]), np.asarray(d["p"])),
                                   shape=tuple(int(n) for n in d["Dim"]))
    genes, cells = ([str(v) for v in names] for names in d["Dimnames"])
    return genes_by_cells.T.tocsr(), cells, genes


@register("harmony_pbmc_stim_h5ad")
def harmony_pbmc_stim_h5ad(source: Path, out: Path) -> None:
    """Build from harmony's ``data/pbmc_stim.RData`` (dgCMatrix ``pbmc.ctrl``, ``pbmc.stim``) → h5ad.

    Cells of ``pbmc.ctrl`` then ``pbmc.stim`` (rows, in the matrices' column order), genes in
    their row order (both matrices must name the same genes); ``X`` raw UMI counts as float32
    CSR; ``obs.batch`` categorical ctrl/stim. Written with anndata, ``X`` gzip-compressed.
    """
    import warnings

    import anndata as ad
    import numpy as np
    import pandas as pd
    import rdata
    import scipy.sparse as sp

    with warnings.catch_warnings():  # rdata has no constructor for dgCMatrix: returns its slots
        warnings.simplefilter("ignore", UserWarning)
        objects = rdata.conversion.convert(rdata.parser.parse_file(source))
    parts = []
    for batch in ("ctrl", "stim"):
        key = f"pbmc.{batch}"
        if key not in objects:
            raise CgcbenchError(f"{source.name}: no object {key!r} (found {sorted(objects)})")
        parts.append((batch, *_dgc_matrix(objects[key], f"{source.name}: {key}")))
    if parts[0][3] != parts[1][3]:
        raise CgcbenchError(f"{source.name}: pbmc.ctrl and pbmc.stim name different genes")
    x = sp.vstack([m for _, m, _, _ in parts]).tocsr().astype(np.float32)
    cells = [c for _, _, names, _ in parts for c in names]
    batches = [b for b, m, _, _ in parts for _ in range(m.shape[0])]
    obs = pd.DataFrame({"batch": pd.Categorical(batches, categories=["ctrl", "stim"])},
                       index=pd.Index(cells))
    adata = ad.AnnData(X=x, obs=obs, var=pd.DataFrame(index=pd.Index(parts[0][3])))
    adata.write_h5ad(out, compression="gzip")
