"""The official TF–target / chromosome graph pickles read without DGL give what DGL reads.

Fixtures (``tests/data/official_graphs``, see its README) were written by the official
``data_util.save_graph`` under DGL 1.1.3 with pandas 1.5.3 (``pandas1``) and 2.2.3
(``pandas2``); each ``*.expected.json`` is what DGL and pandas read back from the file.
"""

from __future__ import annotations

import json
import os
import pickle
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from cgc.errors import CGCError, InputFileError
from cgc.official_graphs import read_official_graph

DATA = Path(__file__).resolve().parents[1] / "data" / "official_graphs"
NAMES = ("tf_tg_graph", "chromo_graph", "tf_tg_graph_csr")
# + chromo_graph_v1: HeteroPickleStates version 1 (no is_pinned byte), as DGL 0.5-0.8.0 wrote it
FILES = [DATA / v / n for v in ("pandas1", "pandas2") for n in NAMES] + [DATA / "pandas1" / "chromo_graph_v1"]


def _expected(path: Path) -> dict[str, Any]:
    return json.loads(path.with_name(path.name + ".expected.json").read_text())


@pytest.mark.parametrize("path", FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_reader_gives_exactly_what_dgl_reads(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "dgl", None)  # importing dgl would fail: the reader must not need it
    g = read_official_graph(path)
    exp = _expected(path)
    assert g.num_nodes == exp["num_nodes"]
    assert g.src.tolist() == exp["src"] and g.dst.tolist() == exp["dst"]
    src_gene, dst_gene = g.gene_edges()
    assert src_gene.tolist() == exp["src_gene"] and dst_gene.tolist() == exp["dst_gene"]
    assert g.gene_to_node == exp["gene_to_node"]
    assert {int(k): v for k, v in exp["node_to_gene"].items()} == dict(enumerate(g.node_genes.tolist()))
    assert sorted(g.gene_set) == exp["gene_set"]
    assert {k: v.tolist() for k, v in g.edata.items()} == exp["edata"]
    assert {k: str(v.dtype) for k, v in g.edata.items()} == exp["edata_dtype"]
    assert g.dgl_state["format"] == ("csr" if path.name.endswith("_csr") else "coo")
    assert g.dgl_state["version"] == (1 if path.name.endswith("_v1") else 2)
    assert len(g.sha256) == 64
    if path.name.startswith("chromo_graph"):
        assert set(g.edata) == {"dis"} and g.num_edges == 380
        assert np.all(np.abs(g.edata["dis"]) <= 50) and np.all(g.edata["dis"] != 0)
    else:
        assert g.edata == {} and g.num_edges == 180


@pytest.mark.parametrize("path", FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_subgraph_matches_official_sub_graph(path: Path) -> None:
    """Same edges (and ``dis``) as the official ``data_util.sub_graph`` run under DGL."""
    exp = _expected(path)["subgraph"]
    a, b, edata = read_official_graph(path).subgraph(exp["genes"])
    dis = edata["dis"].tolist() if "dis" in edata else [None] * len(a)
    want_dis = exp["dis"] if exp["dis"] is not None else [None] * len(exp["src"])
    got = sorted(zip(a.tolist(), b.tolist(), dis, strict=True))
    want = sorted(zip(exp["src"], exp["dst"], want_dis, strict=True))
    assert got == want and len(got) > 10


class _Call:
    """Pickles as ``func(*args)``."""

    def __init__(self, func: Any, *args: Any) -> None:
        self.func, self.args = func, args

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return self.func, self.args


def _raw_global(module: str, name: str, arg: bytes = b")") -> bytes:
    """Protocol-2 pickle ``module.name(*())`` without importing the module."""
    return b"\x80\x02c" + module.encode() + b"\n" + name.encode() + b"\n" + arg + b"R."


@pytest.mark.parametrize(
    ("payload", "named"),
    [
        (pickle.dumps(_Call(os.system, "touch PWNED")), r"(posix|os|nt)\.system"),
        (pickle.dumps(_Call(eval, "__import__('os')")), r"builtins\.eval"),
        (_raw_global("dgl.sampling", "random_walk"), r"dgl\.sampling\.random_walk"),
        (_raw_global("dgl.frame", "Column", b"\x85"), None),  # allowed class, bad args → readable error
        (
            # getattr(dgl.frame.Scheme, '__init__'): the one allowed global used to reach further
            b"\x80\x02cbuiltins\ngetattr\ncdgl.frame\nScheme\nX\x08\x00\x00\x00__init__\x86R.",
            r"getattr\(_Scheme, '__init__'\)",
        ),
        (b"\x80\x02cdgl._ffi.object\n_new_object\ncbuiltins\nbytearray\n\x85R.", r"_new_object"),
    ],
    ids=["os.system", "eval", "dgl-function", "bad-args", "getattr-escape", "new_object-other"],
)
def test_foreign_globals_are_refused(tmp_path: Path, payload: bytes, named: str | None,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    f = tmp_path / "tf_tg_graph"
    f.write_bytes(payload)
    with pytest.raises(InputFileError) as info:
        read_official_graph(f)
    msg = str(info.value)
    assert str(f) in msg
    if named is not None:
        assert "refused to unpickle" in msg and "official release" in msg
        assert __import__("re").search(named, msg), msg
    assert not (tmp_path / "PWNED").exists()


def test_truncated_and_wrong_files_give_clear_errors(tmp_path: Path) -> None:
    data = FILES[1].read_bytes()
    for cut in (len(data) // 2, len(data) - 1, 40):
        f = tmp_path / f"cut{cut}"
        f.write_bytes(data[:cut])
        with pytest.raises(InputFileError, match=rf"{f}: .*truncated"):
            read_official_graph(f)
    plain = tmp_path / "plain"
    plain.write_bytes(pickle.dumps((1, 2, 3, 4)))
    with pytest.raises(InputFileError, match="first element is not a DGL graph"):
        read_official_graph(plain)
    with pytest.raises(InputFileError, match="not found"):
        read_official_graph(tmp_path / "missing")
    assert issubclass(InputFileError, CGCError)


def test_inconsistent_gene_tables_are_refused() -> None:
    """tf_s / tf_s_inv that disagree, or a gene set naming unknown genes, are not silently used."""
    from cgc.official_graphs import _assemble, _GraphUnpickler

    path = FILES[0]

    def parts() -> list[Any]:
        with open(path, "rb") as fh:
            return list(_GraphUnpickler(fh, str(path)).load())

    g, s, s_inv, genes = parts()
    assert _assemble((g, s, s_inv, genes), path).num_edges == 180  # untouched: fine
    swapped = s.copy()
    swapped.iloc[[0, 1]] = swapped.iloc[[1, 0]].to_numpy()
    with pytest.raises(InputFileError, match="tf_s and tf_s_inv disagree"):
        _assemble((g, swapped, s_inv, genes), path)
    with pytest.raises(InputFileError, match="'NOT_A_GENE' of tf_gene_set has no node"):
        _assemble((g, s, s_inv, set(genes) | {"NOT_A_GENE"}), path)
    with pytest.raises(InputFileError, match="name every node"):
        _assemble((g, s, s_inv.iloc[:-1], genes), path)
    g.state["_edge_frames"][0].state["_num_rows"] = 7
    with pytest.raises(InputFileError, match="7 rows for 180 edges"):
        _assemble((g, s, s_inv, genes), path)
