"""Read the official CGCompass prior graphs (``tf_tg_graph``, ``chromo_graph``) without DGL.

The release's ``scData/bioFeature_embs`` holds both graphs as Python pickles written by the
official ``data_util.save_graph``::

    pickle.dump((g, tf_s, tf_s_inv, tf_gene_set), f)   # g = dgl.graph((src, dst))

``tf_s`` is a pandas Series gene → node id, ``tf_s_inv`` node id → gene, ``tf_gene_set`` a
``set`` of gene symbols; the chromosome graph carries one edge attribute, ``g.edata['dis']``
(the signed distance the official ``graph_generate`` maps to ``dis + 51``).
:func:`pickle.load` would run any callable such a file names, so :func:`read_official_graph`
uses an allow-list unpickler instead (it needs neither DGL nor its C library):

* the DGL classes are replaced by small recording stand-ins: ``DGLGraph``, ``HeteroGraphIndex``,
  ``HeteroPickleStates``, ``Frame``, ``Column`` keep the state their ``__setstate__`` receives,
  ``dgl._ffi.object._new_object`` creates only those stand-ins, and ``builtins.getattr`` is
  allowed for the single lookup DGL pickles (``Scheme._reconstruct_scheme``);
* the graph structure is decoded from ``HeteroPickleStates`` (version, ``meta`` bytes, arrays)
  as DGL's ``HeteroUnpickle`` does (``src/graph/pickle.cc``): the dmlc-serialised metagraph
  (an ``ImmutableGraph``: out-CSR of node types), ``num_nodes_per_type``, ``is_pinned`` and,
  per edge type, the sparse format (COO: ``row``, ``col``; CSR: ``indptr``, ``indices``, edge
  ids) whose arrays are the pickled tensors;
* tensors are rebuilt by ``torch._utils._rebuild_tensor_v2`` from storages that
  ``torch.storage._load_from_bytes`` would ``torch.load`` — here with ``weights_only=True``;
* pandas ``Series``/``Index`` and NumPy arrays are rebuilt by pandas and NumPy themselves,
  through the allow-list (old module paths such as ``Int64Index`` mapped as pandas does).

Any other global (``os.system``, ``builtins.eval``, another DGL function …) is refused with
:class:`~cgc.errors.InputFileError` naming the file and the global.
"""

from __future__ import annotations

import io
import pickle
import struct
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cgc.errors import InputFileError
from cgc.pickled_data import SERIES_GLOBALS, numpy_global
from cgc.utils import sha256_file

__all__ = ["OfficialGraph", "read_official_graph", "ALLOWED_GLOBALS"]

_IMGRAPH_MAGIC = 0xDD3C5FFE20046ABF  # src/graph/immutable_graph.cc kDGLSerialize_ImGraph
_CSR_MAGIC = 0xDD6CD31205DFF127  # include/dgl/aten/csr.h kDGLSerialize_AtenCsrMatrixMagic
_NDARRAY_MAGIC = 0xDD5E40F096B4A13F  # include/dgl/runtime/ndarray.h kDGLNDArrayMagic
_COO, _CSR = 1, 2  # include/dgl/aten/spmat.h SparseFormat


# ---------------------------------------------------------------- DGL stand-ins
class _Recorded:
    """Stand-in for a DGL class: keeps the state its ``__setstate__`` is given."""

    dgl_name = ""

    def __init__(self) -> None:
        self.state: Any = None

    def __setstate__(self, state: Any) -> None:
        self.state = state


class _DGLGraph(_Recorded):
    dgl_name = "dgl.heterograph.DGLGraph"


class _HeteroGraphIndex(_Recorded):
    dgl_name = "dgl.heterograph_index.HeteroGraphIndex"


class _HeteroPickleStates(_Recorded):
    dgl_name = "dgl.heterograph_index.HeteroPickleStates"


class _Frame(_Recorded):
    dgl_name = "dgl.frame.Frame"


class _Column(_Recorded):
    dgl_name = "dgl.frame.Column"


@dataclass(frozen=True)
class _Scheme:
    """``dgl.frame.Scheme``: feature shape and dtype name."""

    shape: tuple[int, ...]
    dtype: str

    @classmethod
    def _reconstruct_scheme(cls, shape: Any, dtype_str: Any) -> _Scheme:
        return cls(tuple(int(s) for s in shape), str(dtype_str))


_NEW_OBJECT_CLASSES = (_HeteroGraphIndex, _HeteroPickleStates)


def _new_object(cls: Any) -> Any:
    """``dgl._ffi.object._new_object``, limited to the DGL graph-index stand-ins."""
    if cls not in _NEW_OBJECT_CLASSES:
        raise _Refused(f"dgl._ffi.object._new_object({getattr(cls, '__name__', cls)!r})")
    return cls()


def _getattr(obj: Any, name: Any) -> Any:
    """``builtins.getattr``, limited to the one lookup DGL pickles (``Scheme._reconstruct_scheme``)."""
    if obj is _Scheme and name == "_reconstruct_scheme":
        return _Scheme._reconstruct_scheme
    raise _Refused(f"builtins.getattr({getattr(obj, '__name__', type(obj).__name__)}, {name!r})")


def _load_from_bytes(data: Any) -> Any:
    """``torch.storage._load_from_bytes``, reading the nested storage with ``weights_only=True``."""
    import torch

    if not isinstance(data, bytes | bytearray):
        raise _Refused(f"torch.storage._load_from_bytes on a {type(data).__name__}")
    return torch.load(io.BytesIO(bytes(data)), weights_only=True)


class _Refused(Exception):
    """A global or a call outside the allow-list (turned into an InputFileError with the path)."""


def _resolve(module: str, name: str) -> Any:
    import pandas as pd
    import torch

    dgl: dict[tuple[str, str], Any] = {
        ("dgl.heterograph", "DGLGraph"): _DGLGraph,
        ("dgl.heterograph_index", "HeteroGraphIndex"): _HeteroGraphIndex,
        ("dgl.heterograph_index", "HeteroPickleStates"): _HeteroPickleStates,
        ("dgl._ffi.object", "_new_object"): _new_object,
        ("dgl.frame", "Frame"): _Frame,
        ("dgl.frame", "Column"): _Column,
        ("dgl.frame", "Scheme"): _Scheme,
        ("builtins", "getattr"): _getattr,
        ("builtins", "bytearray"): bytearray,
        ("builtins", "slice"): slice,
        ("collections", "OrderedDict"): OrderedDict,
        ("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,
        ("torch.storage", "_load_from_bytes"): _load_from_bytes,
        ("pandas.core.series", "Series"): pd.Series,
        ("pandas.core.indexes.base", "Index"): pd.Index,
        ("pandas.core.indexes.numeric", "Int64Index"): pd.Index,  # pandas < 2
        ("pandas.core.indexes.range", "RangeIndex"): pd.RangeIndex,
    }
    if (module, name) in dgl:
        return dgl[(module, name)]
    if module.startswith("numpy"):
        return numpy_global(module, name)
    pandas_internal = {
        ("pandas.core.indexes.base", "_new_Index"),
        ("pandas.core.internals.managers", "SingleBlockManager"),
        ("pandas._libs.internals", "_unpickle_block"),
    }
    if (module, name) == ("pandas.core.internals.blocks", "new_block"):  # pandas < 2.1
        module, name = "pandas._libs.internals", "_unpickle_block"
    if (module, name) in pandas_internal:
        import importlib

        return getattr(importlib.import_module(module), name)
    raise _Refused(f"{module}.{name}")


ALLOWED_GLOBALS: frozenset[tuple[str, str]] = SERIES_GLOBALS | {
    ("dgl.heterograph", "DGLGraph"),
    ("dgl.heterograph_index", "HeteroGraphIndex"),
    ("dgl.heterograph_index", "HeteroPickleStates"),
    ("dgl._ffi.object", "_new_object"),
    ("dgl.frame", "Frame"),
    ("dgl.frame", "Column"),
    ("dgl.frame", "Scheme"),
    ("builtins", "getattr"),
    ("builtins", "bytearray"),
    ("torch._utils", "_rebuild_tensor_v2"),
    ("torch.storage", "_load_from_bytes"),
}
"""``(module, name)`` pairs an official graph pickle may reference; nothing else is resolved."""


class _GraphUnpickler(pickle.Unpickler):
    def __init__(self, fh: Any, where: str) -> None:
        super().__init__(fh)
        self.where = where

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in ALLOWED_GLOBALS:
            raise _Refused(f"{module}.{name}")
        return _resolve(module, name)


# ---------------------------------------------------------------- result
@dataclass(frozen=True)
class OfficialGraph:
    """One official prior graph, as plain arrays.

    Attributes
    ----------
    path, sha256
        The file read and its SHA-256.
    num_nodes
        Nodes of the DGL graph.
    src, dst
        ``int64`` node ids of every edge, in DGL edge-id order (``g.edges(order='eid')``).
    node_genes
        Gene symbol of each node id (from ``tf_s_inv``).
    gene_to_node
        ``tf_s``: gene symbol → node id.
    gene_set
        ``tf_gene_set``: the genes the official ``sub_graph`` selects from.
    edata
        Edge attributes (``{'dis': int64 [n_edges]}`` for the chromosome graph), edge-id order.
    dgl_state
        What the file says about itself: pickle-states version, sparse format, pinned flag.

    """

    path: Path
    sha256: str
    num_nodes: int
    src: np.ndarray
    dst: np.ndarray
    node_genes: np.ndarray
    gene_to_node: dict[str, int]
    gene_set: frozenset[str]
    edata: dict[str, np.ndarray] = field(default_factory=dict)
    dgl_state: dict[str, Any] = field(default_factory=dict)

    @property
    def num_edges(self) -> int:
        """Number of edges."""
        return int(self.src.shape[0])

    def gene_edges(self) -> tuple[np.ndarray, np.ndarray]:
        """Source and target gene symbols of every edge (edge-id order)."""
        return self.node_genes[self.src], self.node_genes[self.dst]

    def subgraph(self, genes: Sequence[str]) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
        """Edges among ``genes`` as positions in ``genes`` — the official ``data_util.sub_graph``.

        Nodes are ``tf_s[set(genes) & tf_gene_set]``; the induced edges (``dgl.node_subgraph``,
        kept in edge-id order) are mapped back to positions in ``genes``.

        Parameters
        ----------
        genes
            Gene symbols of the cell's tokens (unique).

        Returns
        -------
        src, dst : numpy.ndarray
            ``int64`` positions in ``genes``.
        edata : dict
            The edges' attributes (e.g. ``'dis'``).

        """
        pos = {g: k for k, g in enumerate(genes)}
        if len(pos) != len(genes):
            raise InputFileError("gene list passed to OfficialGraph.subgraph has duplicates")
        where = np.full(self.num_nodes, -1, np.int64)
        for g in set(genes) & self.gene_set:
            where[self.gene_to_node[g]] = pos[g]
        a, b = where[self.src], where[self.dst]
        keep = (a >= 0) & (b >= 0)
        return a[keep], b[keep], {k: v[keep] for k, v in self.edata.items()}


# ---------------------------------------------------------------- meta decoding
class _Meta:
    """Little-endian reader of DGL's dmlc-serialised ``HeteroPickleStates.meta``."""

    def __init__(self, data: bytes, where: str) -> None:
        self.data, self.pos, self.where = data, 0, where

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise InputFileError(f"{self.where}: DGL graph meta data is truncated (at byte {self.pos})")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def unpack(self, fmt: str) -> Any:
        return struct.unpack("<" + fmt, self.take(struct.calcsize("<" + fmt)))[0]

    def ndarray(self) -> np.ndarray:
        if self.unpack("Q") != _NDARRAY_MAGIC:
            raise InputFileError(f"{self.where}: DGL graph meta data: bad NDArray magic number")
        self.unpack("Q")  # reserved
        self.unpack("i"), self.unpack("i")  # device type, id (always saved as CPU)
        ndim = self.unpack("i")
        code, bits, lanes = self.unpack("B"), self.unpack("B"), self.unpack("H")
        shape = [self.unpack("q") for _ in range(ndim)]
        nbytes = self.unpack("q")
        kinds = {0: "i", 1: "u", 2: "f"}
        if code not in kinds or bits not in (8, 16, 32, 64) or lanes != 1:
            raise InputFileError(
                f"{self.where}: DGL graph meta data: unsupported array type {code}/{bits}/{lanes}"
            )
        dtype = np.dtype(f"<{kinds[code]}{bits // 8}")
        if nbytes != dtype.itemsize * int(np.prod(shape)):
            raise InputFileError(f"{self.where}: DGL graph meta data: array size does not match its shape")
        return np.frombuffer(self.take(nbytes), dtype=dtype).reshape(shape)

    def metagraph_edges(self) -> tuple[int, list[tuple[int, int]]]:
        """The metagraph (``ImmutableGraph`` saved as its out-CSR): node-type count, edge types."""
        if self.unpack("Q") != _IMGRAPH_MAGIC or self.unpack("Q") != _CSR_MAGIC:
            raise InputFileError(f"{self.where}: DGL graph meta data does not start with a metagraph")
        self.unpack("q")  # num_cols
        n_rows = self.unpack("q")
        indptr, indices, eids = self.ndarray(), self.ndarray(), self.ndarray()
        self.unpack("?")  # sorted
        rows = np.repeat(np.arange(n_rows), np.diff(indptr.astype(np.int64)))
        order = eids.astype(np.int64) if eids.size else np.arange(indices.size)
        etypes: list[tuple[int, int]] = [(0, 0)] * int(indices.size)
        for k, e in enumerate(order):
            etypes[int(e)] = (int(rows[k]), int(indices[k]))
        return int(n_rows), etypes


def _edges_from_states(states: Any, where: str) -> tuple[int, np.ndarray, np.ndarray, dict[str, Any]]:
    """Decode ``HeteroPickleStates`` the way DGL's ``HeteroUnpickle`` does (src/graph/pickle.cc)."""
    st = states.state if isinstance(states, _HeteroPickleStates) else None
    if not (isinstance(st, tuple) and len(st) == 3 and isinstance(st[0], int)):
        raise InputFileError(
            f"{where}: the DGL graph uses a pickle layout older than DGL 0.5 (no version number); "
            "re-save it with a current DGL or use the official release files"
        )
    version, meta, arrays = st
    if version not in (1, 2) or not isinstance(meta, bytes | bytearray) or not isinstance(arrays, list):
        raise InputFileError(f"{where}: unsupported DGL graph pickle version {version!r}")
    m = _Meta(bytes(meta), where)
    n_types, etypes = m.metagraph_edges()
    n_vec = m.unpack("Q")
    num_nodes = [m.unpack("q") for _ in range(n_vec)]
    pinned = bool(m.unpack("?")) if version > 1 else False
    if n_types != 1 or len(etypes) != 1 or len(num_nodes) != 1:
        raise InputFileError(
            f"{where}: a graph with {n_types} node and {len(etypes)} edge types; the official "
            "prior graphs have one of each (dgl.graph((src, dst)))"
        )
    arrs = [_as_numpy(a, where) for a in arrays]
    fmt = m.unpack("i")
    n = num_nodes[0]
    if fmt == _COO:
        m.unpack("?"), m.unpack("?")  # row_sorted, col_sorted
        if len(arrs) != 2:
            raise InputFileError(f"{where}: COO graph with {len(arrs)} arrays (expected row, col)")
        src, dst = arrs
        name = "coo"
    elif fmt == _CSR:
        m.unpack("?")  # sorted
        if len(arrs) != 3:
            raise InputFileError(
                f"{where}: CSR graph with {len(arrs)} arrays (expected indptr, indices, ids)"
            )
        indptr, indices, eids = arrs
        if indptr.shape != (n + 1,) or indptr[-1] != indices.size:
            raise InputFileError(f"{where}: CSR graph with an inconsistent indptr")
        rows = np.repeat(np.arange(n, dtype=np.int64), np.diff(indptr))
        order = eids if eids.size else np.arange(indices.size)
        if sorted(order.tolist()) != list(range(indices.size)):
            raise InputFileError(f"{where}: CSR graph whose edge ids are not 0..{indices.size - 1}")
        src = np.empty(indices.size, np.int64)
        dst = np.empty(indices.size, np.int64)
        src[order], dst[order] = rows, indices
        name = "csr"
    else:
        raise InputFileError(f"{where}: unknown DGL sparse format code {fmt}")
    if src.shape != dst.shape or src.ndim != 1:
        raise InputFileError(f"{where}: edge arrays of different shapes {src.shape} / {dst.shape}")
    if src.size and (min(src.min(), dst.min()) < 0 or max(src.max(), dst.max()) >= n):
        raise InputFileError(f"{where}: an edge names a node outside 0..{n - 1}")
    info = {"version": version, "format": name, "pinned": pinned}
    return n, src.astype(np.int64), dst.astype(np.int64), info


def _as_numpy(t: Any, where: str) -> np.ndarray:
    import torch

    if not isinstance(t, torch.Tensor):
        raise InputFileError(f"{where}: expected a tensor in the DGL graph, found {type(t).__name__}")
    return t.detach().cpu().numpy()


def _frame_columns(frames: Any, where: str, what: str) -> tuple[int | None, dict[str, np.ndarray]]:
    if not isinstance(frames, list) or len(frames) != 1 or not isinstance(frames[0], _Frame):
        raise InputFileError(f"{where}: the DGL graph's {what} frames are not one dgl.frame.Frame")
    state = frames[0].state if isinstance(frames[0].state, dict) else {}
    out: dict[str, np.ndarray] = {}
    for key, col in (state.get("_columns") or {}).items():
        cst = col.state if isinstance(col, _Column) else None
        if not isinstance(cst, dict) or cst.get("storage") is None:
            raise InputFileError(f"{where}: {what} feature {key!r} holds no tensor")
        if cst.get("index") is not None:
            raise InputFileError(
                f"{where}: {what} feature {key!r} is a lazy view; not a saved official graph"
            )
        out[str(key)] = _as_numpy(cst["storage"], where)
    rows = state.get("_num_rows")
    return (int(rows) if rows is not None else None), out


def read_official_graph(path: str | Path) -> OfficialGraph:
    """Read ``tf_tg_graph`` or ``chromo_graph`` of the official release, without running code.

    Parameters
    ----------
    path
        The pickle ``(g, tf_s, tf_s_inv, tf_gene_set)`` written by the official
        ``data_util.save_graph`` (``scData/bioFeature_embs/`` of the release).

    Returns
    -------
    OfficialGraph
        Edges (node ids and gene symbols), node → gene table, gene set, edge attributes.

    Raises
    ------
    InputFileError
        Missing or truncated file, a global outside :data:`ALLOWED_GLOBALS`, or contents that
        are not the official 4-tuple (each message names the file).

    """
    f = Path(path)
    if not f.is_file():
        raise InputFileError(
            f"{f}: official graph file not found; pass the release's tf_tg_graph / chromo_graph"
        )
    where = str(f)
    try:
        with open(f, "rb") as fh:
            obj = _GraphUnpickler(fh, where).load()
    except _Refused as exc:
        raise InputFileError(
            f"{where}: refused to unpickle {exc}: an official CGC graph file holds only a DGL graph, "
            "two pandas Series and a set of gene names, so this is not one (or it was tampered "
            "with); use tf_tg_graph / chromo_graph from the official release"
        ) from None
    except InputFileError:
        raise
    except EOFError as exc:
        raise InputFileError(f"{where}: truncated pickle (ends early); download the file again") from exc
    except Exception as exc:  # noqa: BLE001 - any failure of a malformed pickle is a bad input file
        first = str(exc).splitlines()[0] if str(exc) else ""
        raise InputFileError(
            f"{where}: not a readable official graph pickle ({type(exc).__name__}: {first})"
        ) from exc
    return _assemble(obj, f)


def _assemble(obj: Any, f: Path) -> OfficialGraph:
    import pandas as pd

    where = str(f)
    if not (isinstance(obj, tuple) and len(obj) == 4):
        raise InputFileError(
            f"{where}: expected the tuple (g, tf_s, tf_s_inv, tf_gene_set) of data_util.save_graph, "
            f"found {type(obj).__name__}"
        )
    g, s, s_inv, genes = obj
    if not isinstance(g, _DGLGraph) or not isinstance(g.state, dict):
        raise InputFileError(f"{where}: first element is not a DGL graph")
    gi = g.state.get("_graph")
    if not isinstance(gi, _HeteroGraphIndex):
        raise InputFileError(f"{where}: the DGL graph has no graph index")
    n, src, dst, info = _edges_from_states(gi.state, where)
    _, _ndata = _frame_columns(g.state.get("_node_frames"), where, "node")
    n_rows, edata = _frame_columns(g.state.get("_edge_frames"), where, "edge")
    if n_rows is not None and n_rows != src.size:
        raise InputFileError(f"{where}: edge frame has {n_rows} rows for {src.size} edges")
    for key, val in edata.items():
        if val.shape[0] != src.size:
            raise InputFileError(
                f"{where}: edge feature {key!r} has {val.shape[0]} rows for {src.size} edges"
            )
    if not isinstance(s, pd.Series) or not isinstance(s_inv, pd.Series):
        raise InputFileError(f"{where}: elements 2 and 3 must be pandas Series (gene → id, id → gene)")
    if not isinstance(genes, set | frozenset) or not all(isinstance(x, str) for x in genes):
        raise InputFileError(f"{where}: element 4 must be a set of gene symbols")
    try:
        gene_to_node = {str(k): int(v) for k, v in s.items()}
        node_to_gene = {int(k): str(v) for k, v in s_inv.items()}
    except (TypeError, ValueError) as exc:
        raise InputFileError(f"{where}: tf_s must map gene → node id and tf_s_inv id → gene ({exc})") from exc
    if len(gene_to_node) != len(s) or len(node_to_gene) != len(s_inv):
        raise InputFileError(f"{where}: tf_s / tf_s_inv have duplicate entries")
    if sorted(node_to_gene) != list(range(n)):
        raise InputFileError(f"{where}: tf_s_inv must name every node 0..{n - 1} of the graph exactly once")
    bad = [k for k, v in gene_to_node.items() if node_to_gene.get(v) != k]
    if bad or len(gene_to_node) != n:
        raise InputFileError(
            f"{where}: tf_s and tf_s_inv disagree (e.g. gene {bad[0] if bad else '?'!r}); "
            "not an official graph"
        )
    missing = sorted(set(genes) - gene_to_node.keys())
    if missing:
        raise InputFileError(f"{where}: gene {missing[0]!r} of tf_gene_set has no node in tf_s")
    node_genes = np.array([node_to_gene[i] for i in range(n)], dtype=object)
    return OfficialGraph(
        path=f,
        sha256=sha256_file(f),
        num_nodes=n,
        src=src,
        dst=dst,
        node_genes=node_genes,
        gene_to_node=gene_to_node,
        gene_set=frozenset(genes),
        edata=edata,
        dgl_state=info,
    )
