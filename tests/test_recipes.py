"""Card recipes: a converted file is built from its upstream Debian package (issue 18).

gene_info_hs, gene2go_hs and go_terms are TSV exports of the SQLite databases that the
Bioconductor packages org.Hs.eg.db / GO.db ship (Debian r-bioc-org.hs.eg.db, r-bioc-go.db).
Their cards declare a recipe: the .deb (URL + sha256), the database inside it and a converter.
Here the .deb is built in the test (an ``ar`` archive with ``data.tar.xz`` holding a small
SQLite database with the packages' table layout and rows copied from org.Hs.eg.db 3.16), and
served through ``file://`` and a loopback HTTP server. The real cards (and kang_pbmc_ctrl_stim,
built from harmony's ``data/pbmc_stim.RData``) are checked against the real upstream files
when they are on disk (``CGCBENCH_TEST_UPSTREAM``: a folder holding them, e.g. made with
``apt-get download r-bioc-org.hs.eg.db r-bioc-go.db``; or apt's own cache).
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import os
import sqlite3
import tarfile
from pathlib import Path

import pytest

from benchmarks.data.cards import DatasetCard, get_card, parse_card
from benchmarks.data.fetch import data_dir, resolve_file, sha256_file, sidecar
from benchmarks.data.recipes import content_sha256, extract_deb_member
from benchmarks.errors import CgcbenchError, ChecksumError, InputError

ORG_MEMBER = "usr/lib/R/site-library/org.Hs.eg.db/extdata/org.Hs.eg.sqlite"
GO_MEMBER = "usr/lib/R/site-library/GO.db/extdata/GO.sqlite"

# The layout of org.Hs.eg.db's tables that the converters read (as in the package's database)
ORG_SCHEMA = """
CREATE TABLE genes (_id INTEGER PRIMARY KEY, gene_id VARCHAR(10) NOT NULL UNIQUE);
CREATE TABLE gene_info (_id INTEGER NOT NULL UNIQUE, gene_name VARCHAR(255) NOT NULL,
                        symbol VARCHAR(80) NOT NULL);
CREATE TABLE genetype (_id INTEGER NOT NULL, gene_type VARCHAR(20) NOT NULL);
CREATE TABLE chromosome_locations (_id INTEGER NOT NULL, seqname VARCHAR(20) NOT NULL,
                                   start_location INTEGER NOT NULL, end_location INTEGER NOT NULL);
CREATE TABLE cytogenetic_locations (_id INTEGER NOT NULL, cytogenetic_location VARCHAR(20) NOT NULL);
CREATE TABLE ensembl (_id INTEGER NOT NULL, ensembl_id VARCHAR(20) NOT NULL);
CREATE TABLE go_bp (_id INTEGER NOT NULL, go_id CHAR(10) NOT NULL, evidence CHAR(3) NOT NULL);
CREATE TABLE go_mf (_id INTEGER NOT NULL, go_id CHAR(10) NOT NULL, evidence CHAR(3) NOT NULL);
CREATE TABLE go_cc (_id INTEGER NOT NULL, go_id CHAR(10) NOT NULL, evidence CHAR(3) NOT NULL);
"""
# rows of org.Hs.eg.db 3.16: A2M has two locations, AAVS1 two cytobands and no location, NATP
# neither, ABCF1 two Ensembl ids (of its seven) and an alt-haplotype location
GENES = [(1, "1", "alpha-1-B glycoprotein", "A1BG", "protein-coding"),
         (2, "2", "alpha-2-macroglobulin", "A2M", "protein-coding"),
         (9, "11", "N-acetyltransferase pseudogene", "NATP", "pseudo"),
         (14, "17", "adeno-associated virus integration site 1", "AAVS1", "other"),
         (18, "23", "ATP binding cassette subfamily F member 1", "ABCF1", "protein-coding")]
LOCATIONS = [(1, "19", -58345182, -58353492), (2, "12", -9067707, -9115919),
             (2, "12", -9067707, -9116229), (18, "6", 30571399, 30591487),
             (18, "6_GL000252v2_alt", 1827268, 1847349)]
BANDS = [(1, "19q13.43"), (2, "12p13.31"), (9, "8p22"), (14, "19q13"), (14, "19q13-qter"),
         (18, "6p21.33")]
ENSEMBL = [(1, "ENSG00000121410"), (2, "ENSG00000175899"), (18, "ENSG00000204574"),
           (18, "ENSG00000236149")]
GO = {"bp": [(2, "GO:0001869", "IDA"), (1, "GO:0008150", "ND"), (2, "GO:0001553", "IEA")],
      "mf": [(1, "GO:0003674", "ND")],
      "cc": [(2, "GO:0005576", "HDA"), (1, "GO:0005576", "HDA")]}

GENE_INFO_TSV = (
    "entrez_id\tsymbol\tgene_name\tgene_type\tchrom\tstart\tend\tcytoband\tensembl_ids\r\n"
    "1\tA1BG\talpha-1-B glycoprotein\tprotein-coding\t19\t-58345182\t-58353492\t19q13.43\tENSG00000121410\r\n"
    "2\tA2M\talpha-2-macroglobulin\tprotein-coding\t12\t-9067707\t-9115919\t12p13.31\tENSG00000175899\r\n"
    "2\tA2M\talpha-2-macroglobulin\tprotein-coding\t12\t-9067707\t-9116229\t12p13.31\tENSG00000175899\r\n"
    "11\tNATP\tN-acetyltransferase pseudogene\tpseudo\t\t\t\t8p22\t\r\n"
    "17\tAAVS1\tadeno-associated virus integration site 1\tother\t\t\t\t19q13\t\r\n"
    "17\tAAVS1\tadeno-associated virus integration site 1\tother\t\t\t\t19q13-qter\t\r\n"
    "23\tABCF1\tATP binding cassette subfamily F member 1\tprotein-coding\t6\t30571399\t30591487\t"
    "6p21.33\tENSG00000204574;ENSG00000236149\r\n"
    "23\tABCF1\tATP binding cassette subfamily F member 1\tprotein-coding\t6_GL000252v2_alt\t1827268\t"
    "1847349\t6p21.33\tENSG00000204574;ENSG00000236149\r\n"
)
GENE2GO_TSV = (
    "entrez_id\tsymbol\tgo_id\tevidence\tontology\r\n"
    "1\tA1BG\tGO:0008150\tND\tBP\r\n"
    "2\tA2M\tGO:0001553\tIEA\tBP\r\n"
    "2\tA2M\tGO:0001869\tIDA\tBP\r\n"
    "1\tA1BG\tGO:0003674\tND\tMF\r\n"
    "1\tA1BG\tGO:0005576\tHDA\tCC\r\n"
    "2\tA2M\tGO:0005576\tHDA\tCC\r\n"
)
GO_TERMS_TSV = (
    "go_id\tterm\tontology\r\n"
    "GO:0000001\tmitochondrion inheritance\tBP\r\n"
    "GO:0000006\thigh-affinity zinc transmembrane transporter activity\tMF\r\n"
    "GO:0000015\tphosphopyruvate hydratase complex\tCC\r\n"
)


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _org_db(path: Path) -> None:
    con = sqlite3.connect(path)
    con.executescript(ORG_SCHEMA)
    con.executemany("INSERT INTO genes VALUES (?, ?)", [(g[0], g[1]) for g in GENES])
    con.executemany("INSERT INTO gene_info VALUES (?, ?, ?)", [(g[0], g[2], g[3]) for g in GENES])
    con.executemany("INSERT INTO genetype VALUES (?, ?)", [(g[0], g[4]) for g in GENES])
    con.executemany("INSERT INTO chromosome_locations VALUES (?, ?, ?, ?)", LOCATIONS)
    con.executemany("INSERT INTO cytogenetic_locations VALUES (?, ?)", BANDS)
    con.executemany("INSERT INTO ensembl VALUES (?, ?)", ENSEMBL)
    for ont, rows in GO.items():
        con.executemany(f"INSERT INTO go_{ont} VALUES (?, ?, ?)", rows)
    con.commit()
    con.close()


def _go_db(path: Path) -> None:
    con = sqlite3.connect(path)
    con.executescript("CREATE TABLE go_term (_id INTEGER PRIMARY KEY, go_id CHAR(10) NOT NULL UNIQUE, "
                      "term VARCHAR(255) NOT NULL, ontology VARCHAR(9) NOT NULL, definition TEXT NULL);")
    con.executemany("INSERT INTO go_term VALUES (?, ?, ?, ?, NULL)", [
        (1, "GO:0000001", "mitochondrion inheritance", "BP"),
        (3, "GO:0000015", "phosphopyruvate hydratase complex", "CC"),
        (2, "GO:0000006", "high-affinity zinc transmembrane transporter activity", "MF")])
    con.commit()
    con.close()


def _ar_entry(name: str, data: bytes) -> bytes:
    header = (f"{name + '/':<16}{0:<12}{0:<6}{0:<6}{100644:<8}{len(data):<10}".encode() + b"`\n")
    return header + data + (b"\n" if len(data) % 2 else b"")


def write_deb(path: Path, files: dict[str, bytes]) -> str:
    """A Debian package (ar: debian-binary, control.tar.xz, data.tar.xz) holding ``files``; its sha256."""

    def tar_xz(members: dict[str, bytes]) -> bytes:
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w:xz") as tf:
            for name, data in members.items():
                info = tarfile.TarInfo("./" + name)
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
        return buf.getvalue()

    body = (b"!<arch>\n" + _ar_entry("debian-binary", b"2.0\n")
            + _ar_entry("control.tar.xz", tar_xz({"control": b"Package: r-bioc-test\n"}))
            + _ar_entry("data.tar.xz", tar_xz({"usr/share/doc/r-bioc-test/copyright": b"Artistic-2.0\n",
                                                **files})))
    path.write_bytes(body)
    return _sha(body)


@pytest.fixture()
def debs(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    """The two test packages: ``{"org": (path, sha256), "go": (path, sha256)}``."""
    _org_db(tmp_path / "org.sqlite")
    _go_db(tmp_path / "go.sqlite")
    org = tmp_path / "upstream" / "r-bioc-org.hs.eg.db_3.16.0-1_all.deb"
    go = tmp_path / "upstream" / "r-bioc-go.db_3.16.0-1_all.deb"
    org.parent.mkdir()
    return {"org": (org, write_deb(org, {ORG_MEMBER: (tmp_path / "org.sqlite").read_bytes()})),
            "go": (go, write_deb(go, {GO_MEMBER: (tmp_path / "go.sqlite").read_bytes()}))}


@pytest.fixture()
def no_mirror(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Mirrors disabled, an empty cache; returns the cache folder."""
    monkeypatch.setenv("CGCBENCH_MIRRORS", "")
    monkeypatch.setenv("CGCBENCH_DATA_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _card(name: str, converter: str, url: str, sha: str, member: str | None, content: str,
          extra: str = "", file_extra: str = "", path: Path | None = None) -> DatasetCard:
    import tomllib

    text = (f'name = "{name}"\nversion = "3.16"\ntitle = "t"\norganism = "human"\n'
            f'gene_id_type = "entrez"\nlicense = "Artistic-2.0"\nkind = "priors"\n\n'
            f'[[files]]\nname = "{name}.tsv.gz"\n{file_extra}\n'
            f'[files.recipe]\nconverter = "{converter}"\nurls = ["{url}"]\nsha256 = "{sha}"\n'
            + (f'member = "{member}"\n' if member else "")
            + f'content_sha256 = "{content}"\n{extra}')
    return parse_card(tomllib.loads(text), path or Path(f"datasets/{name}.toml"))


def _text(path: Path) -> str:
    with gzip.open(path, "rb") as fh:
        return fh.read().decode()


@pytest.mark.parametrize(("converter", "which", "member", "expected"), [
    ("org_eg_db_gene_info", "org", ORG_MEMBER, GENE_INFO_TSV),
    ("org_eg_db_gene2go", "org", ORG_MEMBER, GENE2GO_TSV),
    ("go_db_terms", "go", GO_MEMBER, GO_TERMS_TSV),
])
def test_recipe_builds_the_exact_table_from_the_deb(debs, no_mirror, converter, which, member, expected):
    deb, sha = debs[which]
    card = _card("t", converter, deb.as_uri(), sha, member, _sha(expected.encode()))
    path = resolve_file(card, card.files[0])
    assert path == data_dir() / "t" / "t.tsv.gz"
    assert _text(path) == expected  # same rows, same order, same formatting
    raw = path.read_bytes()
    assert raw[4:8] == b"\0\0\0\0" and not raw[3] & 0x08  # gzip mtime 0, no file name: deterministic
    assert sorted(p.name for p in path.parent.iterdir()) == ["t.tsv.gz", "t.tsv.gz.sha256"]
    deb.unlink()  # the cached build is used from now on, without the upstream file
    assert resolve_file(card, card.files[0]) == path


def test_recipe_over_http_and_a_file_sha256_identifies_the_build(debs, no_mirror, tmp_path, loopback):
    deb, sha = debs["go"]
    url = f"{loopback.serve_directory(deb.parent)}/{deb.name}"
    probe = _card("probe", "go_db_terms", url, sha, GO_MEMBER, _sha(GO_TERMS_TSV.encode()))
    built = sha256_file(resolve_file(probe, probe.files[0]))
    card = _card("t", "go_db_terms", url, sha, GO_MEMBER, _sha(GO_TERMS_TSV.encode()),
                 file_extra=f'sha256 = "{"0" * 64}"\naccept_sha256 = ["{built}"]')
    path = resolve_file(card, card.files[0])
    assert sha256_file(path) == built  # the same bytes again (deterministic gzip)
    assert not sidecar(path).exists()  # identified by the card's digests, no record needed


def test_build_whose_bytes_differ_is_kept_by_content_and_a_corrupted_copy_is_rebuilt(debs, no_mirror):
    """Another zlib may compress the same text to other bytes: the content decides, once."""
    deb, sha = debs["go"]
    mirror_sha = "1" * 64  # the mirror copy's bytes (not what this zlib writes)
    card = _card("t", "go_db_terms", deb.as_uri(), sha, GO_MEMBER, _sha(GO_TERMS_TSV.encode()),
                 file_extra=f'sha256 = "{mirror_sha}"')
    path = resolve_file(card, card.files[0])
    assert _text(path) == GO_TERMS_TSV
    assert sidecar(path).read_text().strip() == sha256_file(path)
    assert resolve_file(card, card.files[0]) == path  # accepted by its recorded digest
    path.write_bytes(gzip.compress(b"go_id\tterm\tontology\r\n", mtime=0))  # corrupted in the cache
    assert _text(resolve_file(card, card.files[0])) == GO_TERMS_TSV  # rebuilt, not used


def _leftovers(cache: Path) -> list[Path]:
    return [p for p in cache.rglob("*") if p.is_file()] if cache.exists() else []


def test_wrong_upstream_digest_fails_and_leaves_nothing(debs, no_mirror):
    deb, sha = debs["org"]
    card = _card("t", "org_eg_db_gene_info", deb.as_uri(), "f" * 64, ORG_MEMBER,
                 _sha(GENE_INFO_TSV.encode()))
    with pytest.raises(ChecksumError, match=r"datasets/t\.toml: files\.recipe\.sha256"):
        resolve_file(card, card.files[0])
    assert _leftovers(no_mirror) == []


def test_wrong_content_digest_fails_and_leaves_nothing(debs, no_mirror):
    deb, sha = debs["org"]
    card = _card("t", "org_eg_db_gene2go", deb.as_uri(), sha, ORG_MEMBER, _sha(GENE_INFO_TSV.encode()))
    with pytest.raises(ChecksumError, match="not the recipe's content_sha256"):
        resolve_file(card, card.files[0])
    assert _leftovers(no_mirror) == []


def test_member_missing_from_the_package_is_named_and_leaves_nothing(debs, no_mirror):
    deb, sha = debs["org"]
    card = _card("t", "go_db_terms", deb.as_uri(), sha, GO_MEMBER, "0" * 64)
    with pytest.raises(CgcbenchError, match=r"holds no file .*GO\.sqlite.*org\.Hs\.eg\.sqlite"):
        resolve_file(card, card.files[0])
    assert _leftovers(no_mirror) == []


def test_a_file_that_is_not_a_deb_is_refused(tmp_path):
    bogus = tmp_path / "x.deb"
    bogus.write_bytes(b"PK\x03\x04 not an ar archive")
    with pytest.raises(CgcbenchError, match="not a Debian package"):
        extract_deb_member(bogus, ORG_MEMBER, tmp_path / "out")


def test_offline_without_mirror_says_where_the_recipe_downloads_from(debs, no_mirror):
    deb, sha = debs["go"]
    missing = deb.with_name("gone.deb").as_uri()
    card = _card("t", "go_db_terms", missing, sha, GO_MEMBER, "0" * 64)
    with pytest.raises(CgcbenchError, match=r"upstream file of t\.tsv\.gz's recipe .*gone\.deb"):
        resolve_file(card, card.files[0])
    assert _leftovers(no_mirror) == []


URL = "https://deb.debian.org/debian/pool/main/r/r-bioc-go.db/r-bioc-go.db_3.16.0-1_all.deb"


@pytest.mark.parametrize(("recipe", "field"), [
    ('converter = "nope"\nurls = ["URL"]\nsha256 = "SHA"\nmember = "a/b"', r"recipe\.converter: 'nope'"),
    ('converter = "go_db_terms"\nsha256 = "SHA"\nmember = "a/b"', r"recipe\.urls: missing"),
    ('converter = "go_db_terms"\nurls = ["URL"]\nmember = "a/b"', r"recipe\.sha256: missing"),
    ('converter = "go_db_terms"\nurls = ["URL"]\nsha256 = "ABC"\nmember = "a/b"', r"recipe\.sha256: 'ABC'"),
    ('converter = "go_db_terms"\nurls = ["URL"]\nsha256 = "SHA"', r"recipe\.member: missing"),
    ('converter = "go_db_terms"\nurls = ["URL"]\nsha256 = "SHA"\nmember = "../x"',
     r"recipe\.member: '\.\./x'"),
    ('converter = "go_db_terms"\nurls = ["URL"]\nsha256 = "SHA"\nformat = "file"\nmember = "a"',
     r"recipe\.member: set only for format"),
    ('converter = "go_db_terms"\nurls = ["URL"]\nsha256 = "SHA"\nformat = "rpm"', r"recipe\.format: 'rpm'"),
    ('converter = "go_db_terms"\nurls = ["URL"]\nsha256 = "SHA"\nmember = "a"\ncontent_sha256 = 1',
     r"recipe\.content_sha256: 1"),
    ('converter = "go_db_terms"\nurls = ["URL"]\nsha256 = "SHA"\nmember = "a"\nsha1 = "x"',
     r"recipe: unknown field\(s\) sha1"),
])
def test_bad_recipe_fields_name_the_card_file_and_field(recipe, field):
    import tomllib

    text = ('name = "t"\nversion = "1"\ntitle = "t"\norganism = "human"\ngene_id_type = "entrez"\n'
            'license = "x"\nkind = "priors"\n[[files]]\nname = "t.tsv.gz"\n[files.recipe]\n'
            + recipe.replace("URL", URL).replace("SHA", "a" * 64) + "\n")
    with pytest.raises(InputError, match=r"datasets/t\.toml: files\[0\]\." + field):
        parse_card(tomllib.loads(text), Path("datasets/t.toml"))


def test_recipe_must_be_a_table():
    data = {"name": "t", "version": "1", "title": "t", "organism": "human", "gene_id_type": "entrez",
            "license": "x", "kind": "priors", "files": [{"name": "t.tsv.gz", "recipe": "go_db_terms"}]}
    with pytest.raises(InputError, match=r"t\.toml: files\[0\]\.recipe: expected a table"):
        parse_card(data, Path("datasets/t.toml"))


# --- the real cards, against the real Debian packages ---------------------------------------

MIRROR = Path(os.environ.get("CGCBENCH_MIRRORS", "").split(os.pathsep)[0]
              or Path(__file__).resolve().parents[2] / "shared" / "data")
"""The real-data mirror, read at import (before a test disables mirrors)."""


def _local_upstream() -> dict[str, Path]:
    dirs = [Path(p) for p in os.environ.get("CGCBENCH_TEST_UPSTREAM", "").split(os.pathsep) if p]
    dirs.append(Path("/var/cache/apt/archives"))
    found: dict[str, Path] = {}
    for d in dirs:
        for p in sorted(d.iterdir()) if d.is_dir() else []:
            found.setdefault(p.name, p)
    return found


HOW = {"r-bioc-org.hs.eg.db_3.16.0-1_all.deb": "`apt-get download r-bioc-org.hs.eg.db` in a folder",
       "r-bioc-go.db_3.16.0-1_all.deb": "`apt-get download r-bioc-go.db` in a folder",
       "pbmc_stim.RData": "download the card's recipe URL (GitHub) into a folder"}


@pytest.mark.parametrize("name", ["gene_info_hs", "gene2go_hs", "go_terms", "kang_pbmc_ctrl_stim"])
def test_real_card_resolves_without_mirror_from_its_upstream_file(name, no_mirror):
    card = get_card(name)
    spec = card.files[0]
    recipe = spec.recipe
    assert recipe is not None and recipe.content_sha256 and recipe.urls[0].startswith("https://")
    upstream_name = recipe.urls[0].rsplit("/", 1)[1]
    upstream = _local_upstream().get(upstream_name)
    if upstream is None:
        pytest.skip(f"{upstream_name} is not on disk: {HOW[upstream_name]}, and set CGCBENCH_TEST_UPSTREAM "
                    "to it (the test never downloads)")
    if sha256_file(upstream) != recipe.sha256:
        pytest.skip(f"{upstream} is not the card's upstream file (sha256 differs)")
    local = dataclasses.replace(spec, recipe=dataclasses.replace(recipe, urls=(upstream.as_uri(),)))
    path = resolve_file(card, local)
    assert path.is_relative_to(no_mirror)
    assert content_sha256(path) == recipe.content_sha256
    assert sha256_file(path) in spec.digests  # these library versions write the bytes the card accepts
    if MIRROR.is_dir():  # the mirror copy holds exactly the same content
        assert content_sha256(MIRROR / str(spec.mirror_path)) == recipe.content_sha256


def test_anndata_content_digest_follows_the_data_not_the_encoding(tmp_path):
    import anndata as ad
    import numpy as np
    import pandas as pd
    import scipy.sparse as sp

    x = sp.csr_matrix(np.array([[0, 3, 1], [2, 0, 0]], dtype=np.float32))
    obs = pd.DataFrame({"batch": pd.Categorical(["ctrl", "stim"])}, index=["c1", "c2"])
    a = ad.AnnData(X=x, obs=obs, var=pd.DataFrame(index=["G1", "G2", "G3"]))
    a.write_h5ad(tmp_path / "a.h5ad", compression="gzip")
    a.write_h5ad(tmp_path / "b.h5ad")  # other bytes, same data
    assert sha256_file(tmp_path / "a.h5ad") != sha256_file(tmp_path / "b.h5ad")
    assert content_sha256(tmp_path / "a.h5ad") == content_sha256(tmp_path / "b.h5ad")
    changed = a.copy()
    changed.X[0, 1] = 4  # one count
    changed.write_h5ad(tmp_path / "c.h5ad")
    relabelled = a.copy()
    relabelled.obs["batch"] = pd.Categorical(["stim", "stim"], categories=["ctrl", "stim"])
    relabelled.write_h5ad(tmp_path / "d.h5ad")
    renamed = a.copy()
    renamed.var_names = ["G1", "G2", "G4"]
    renamed.write_h5ad(tmp_path / "e.h5ad")
    digests = {content_sha256(tmp_path / f"{n}.h5ad") for n in "acde"}
    assert len(digests) == 4
