"""Row sources of the corpus builder: ``.h5ad`` files, in-memory AnnData, TileDB-SOMA experiments.

A source knows its gene names and cell count and hands out *chunk references*: small picklable
objects whose :meth:`read` returns cells ``start:start+size`` as a float32 CSR matrix of raw
values. The builder maps a function over chunk references with any ``map``-like callable (the
built-in :func:`map`, :meth:`concurrent.futures.Executor.map`, or a Dask client through
:func:`cgc.train.parallel.dask_map`), so a chunk is read where it is processed and no process
holds more than a few chunks.

A SOMA source is an experiment URI (a local folder, ``s3://…``, or a CELLxGENE Census release
opened through ``tiledbsoma``) plus an optional obs ``value_filter``; the cells it yields are the
matching obs rows in ``soma_joinid`` order, read from ``ms[measurement].X[layer]``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anndata as ad
import numpy as np
import scipy.sparse as sp

from cgc.errors import InputFileError


@dataclass(frozen=True)
class SomaInput:
    """A TileDB-SOMA experiment (or a filtered part of it) as corpus input.

    Parameters
    ----------
    uri
        Experiment URI (local path, ``s3://``, ``tiledb://``).
    obs_filter
        SOMA ``value_filter`` on obs, e.g. ``"cell_type == 'B cell' and is_primary_data == True"``;
        ``None`` takes every cell.
    measurement
        Measurement holding the expression (``"RNA"``).
    layer
        X layer (``tiledbsoma.io.from_h5ad`` writes ``"data"``; Census has ``"raw"``).
    var_column
        var column with the gene identifiers (``from_h5ad``: ``"var_id"``; Census:
        ``"feature_name"`` for symbols or ``"feature_id"`` for Ensembl ids).
    context
        Optional ``tiledbsoma.SOMATileDBContext`` (credentials, Census region); not pickled
        to workers.

    """

    uri: str
    obs_filter: str | None = None
    measurement: str = "RNA"
    layer: str = "data"
    var_column: str = "var_id"
    context: Any = field(default=None, compare=False, repr=False)

    @property
    def name(self) -> str:
        """How the source is named in the corpus manifest."""
        return self.uri if not self.obs_filter else f"{self.uri} [{self.obs_filter}]"


def _tiledbsoma() -> Any:
    try:
        import tiledbsoma
    except ImportError as exc:
        raise InputFileError(
            f"--soma needs tiledbsoma ({exc}); install it: pip install 'cgcbench[dask]'"
        ) from None
    return tiledbsoma


def _first(exc: BaseException) -> str:
    """The first line of an error (tiledbsoma appends a native traceback)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class Source:
    """A corpus input opened in the building process."""

    name: str
    var_names: list[str]
    n_obs: int

    def chunk(self, start: int, size: int) -> Any:
        """A picklable reference to cells ``start:start+size`` (its ``read()`` gives CSR)."""
        raise NotImplementedError

    def close(self) -> None:
        """Release file handles."""

    @property
    def remote(self) -> bool:
        """Whether chunk references are cheap to ship to another process (no data inside)."""
        return True


@dataclass(frozen=True)
class H5adChunk:
    """Cells ``start:start+size`` of an ``.h5ad`` file, opened ``backed="r"`` where read."""

    path: str
    start: int
    size: int

    def read(self) -> sp.csr_matrix:
        """The chunk as float32 CSR (raw values)."""
        adata = _backed(self.path)
        return sp.csr_matrix(adata.X[self.start : self.start + self.size], dtype=np.float32)


_BACKED: dict[tuple[str, int, int], ad.AnnData] = {}
"""``.h5ad`` files this process has open ``backed="r"``, by (path, mtime, size): a worker reads
many chunks of a file and opening it costs more than reading a chunk."""


def _backed(path: str) -> ad.AnnData:
    st = Path(path).stat()
    key = (path, st.st_mtime_ns, st.st_size)
    if key not in _BACKED:
        for old in [k for k in _BACKED if k[0] == path]:  # the file changed: drop the old handle
            _close_backed(old)
        _BACKED[key] = ad.read_h5ad(path, backed="r")
    return _BACKED[key]


def _close_backed(key: tuple[str, int, int]) -> None:
    adata = _BACKED.pop(key, None)
    if adata is not None:
        adata.file.close()


@dataclass(frozen=True)
class MatrixChunk:
    """A chunk already in memory (from an in-memory AnnData)."""

    x: Any

    def read(self) -> sp.csr_matrix:
        """The chunk as float32 CSR (raw values)."""
        return sp.csr_matrix(self.x, dtype=np.float32)


@dataclass(frozen=True)
class SomaChunk:
    """The cells with the given obs ``soma_joinid``s (sorted) of a SOMA experiment."""

    uri: str
    measurement: str
    layer: str
    joinids: np.ndarray
    n_var: int

    def read(self, context: Any = None) -> sp.csr_matrix:
        """The chunk as float32 CSR, rows in ``joinids`` order, columns = var ``soma_joinid``."""
        soma = _tiledbsoma()
        with soma.Experiment.open(self.uri, context=context) as exp:
            X = exp.ms[self.measurement].X[self.layer]
            table = X.read(coords=(self.joinids,)).tables().concat()
        rows = np.searchsorted(self.joinids, table.column("soma_dim_0").to_numpy())
        cols = table.column("soma_dim_1").to_numpy()
        vals = table.column("soma_data").to_numpy().astype(np.float32, copy=False)
        x = sp.csr_matrix((vals, (rows, cols)), shape=(len(self.joinids), self.n_var), dtype=np.float32)
        x.sum_duplicates()
        x.eliminate_zeros()  # a stored zero is not a detected gene
        return x


class H5adSource(Source):
    """An ``.h5ad`` file read in chunks (``backed="r"``)."""

    def __init__(self, path: str | Path) -> None:
        p = Path(path)
        if not p.is_file():
            raise InputFileError(f"corpus input {p} not found")
        self.path = str(p)
        self.name = str(p)
        self._adata = _backed(self.path)
        self.var_names = list(self._adata.var_names)
        self.n_obs = int(self._adata.n_obs)

    def chunk(self, start: int, size: int) -> H5adChunk:  # noqa: D102
        return H5adChunk(self.path, start, size)

    def head(self, n: int) -> sp.csr_matrix:
        """The first ``n`` cells (to detect counts)."""
        return sp.csr_matrix(self._adata.X[: min(self.n_obs, n)])

    def close(self) -> None:  # noqa: D102
        for key in [k for k in _BACKED if k[0] == self.path]:
            _close_backed(key)


class MemorySource(Source):
    """An in-memory AnnData (its chunks carry their data)."""

    def __init__(self, adata: ad.AnnData) -> None:
        self._adata = adata
        self.name = "<AnnData>"
        self.var_names = list(adata.var_names)
        self.n_obs = int(adata.n_obs)

    def chunk(self, start: int, size: int) -> MatrixChunk:  # noqa: D102
        return MatrixChunk(self._adata.X[start : start + size])

    def head(self, n: int) -> sp.csr_matrix:
        """The first ``n`` cells (to detect counts)."""
        return sp.csr_matrix(self._adata.X[: min(self.n_obs, n)])

    @property
    def remote(self) -> bool:  # noqa: D102
        return False


class SomaSource(Source):
    """The obs rows of a SOMA experiment matching a filter, in ``soma_joinid`` order.

    Raises
    ------
    InputFileError
        The URI is not a SOMA experiment, the measurement, layer or var column is missing,
        the filter is invalid or matches no cell.

    """

    def __init__(self, spec: SomaInput) -> None:
        soma = _tiledbsoma()
        self.spec = spec
        self.name = spec.name
        where = f"--soma {spec.uri}"
        try:
            exp = soma.Experiment.open(spec.uri, context=spec.context)
        except soma.DoesNotExistError:
            raise InputFileError(f"{where}: no SOMA experiment there; check the URI") from None
        except soma.SOMAError as exc:
            raise InputFileError(f"{where}: cannot open it as a SOMA experiment ({_first(exc)})") from None
        with exp:
            if spec.measurement not in exp.ms:
                raise InputFileError(
                    f"{where}: no measurement {spec.measurement!r} (has {', '.join(exp.ms.keys())}); "
                    "pass --soma-measurement"
                )
            ms = exp.ms[spec.measurement]
            if "X" not in ms or spec.layer not in ms.X:
                layers = ", ".join(ms.X.keys()) if "X" in ms else "none"
                raise InputFileError(f"{where}: no X layer {spec.layer!r} (has {layers}); pass --soma-layer")
            var = ms.var.read().concat()
            if spec.var_column not in var.column_names:
                raise InputFileError(
                    f"{where}: var has no column {spec.var_column!r} (has {', '.join(var.column_names)}); "
                    "pass --soma-var-column"
                )
            var_ids = var.column("soma_joinid").to_numpy()
            names = np.asarray(var.column(spec.var_column).to_pylist(), dtype=object)
            self.n_var = int(var_ids.max()) + 1 if len(var_ids) else 0
            # var soma_joinid is the column index of X; name every column (gaps stay unnamed)
            full = np.full(self.n_var, "", dtype=object)
            full[var_ids] = names
            self.var_names = [str(n) for n in full]
            try:
                obs = exp.obs.read(column_names=["soma_joinid"], value_filter=spec.obs_filter).concat()
            except (soma.SOMAError, ValueError, SyntaxError) as exc:
                raise InputFileError(
                    f"{where}: obs filter {spec.obs_filter!r} is invalid ({_first(exc)})"
                ) from None
        self.joinids = np.sort(obs.column("soma_joinid").to_numpy().astype(np.int64))
        self.n_obs = len(self.joinids)
        if self.n_obs == 0:
            raise InputFileError(
                f"{where}: obs filter {spec.obs_filter!r} matches no cell; check the column names and values"
            )

    def chunk(self, start: int, size: int) -> SomaChunk:  # noqa: D102
        s = self.spec
        return SomaChunk(s.uri, s.measurement, s.layer, self.joinids[start : start + size], self.n_var)

    def head(self, n: int) -> sp.csr_matrix:
        """The first ``n`` cells (to detect counts)."""
        return self.chunk(0, n).read(self.spec.context)


def open_source(src: ad.AnnData | str | Path | SomaInput | Source) -> Source:
    """Open one corpus input (raises :class:`~cgc.errors.InputFileError` for a bad one)."""
    if isinstance(src, Source):  # opened already (by a caller that validates before work)
        return src
    if isinstance(src, ad.AnnData):
        return MemorySource(src)
    if isinstance(src, SomaInput):
        return SomaSource(src)
    return H5adSource(src)
