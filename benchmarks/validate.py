"""The one validation layer: every option of a run and every data set, before any work or write.

:func:`validate_request` checks a :class:`~benchmarks.runner.RunRequest` as a whole — seeds,
timeout, tracking URI, ``--set`` keys of the suite and ``--model-set`` keys of each model
(declared in :mod:`benchmarks.options`) — and returns it with values converted to their declared
types. :func:`check_matrix_dtype` and :func:`check_dataset` check a loaded data set: a numeric,
real expression matrix; at least :data:`MIN_CELLS` cells; plausible values for the declared
expression kind (:data:`MAX_VALUE`); and, for suites that score labels, at least two classes.
:func:`check_task` checks the suite's splits (at least :data:`MIN_CELLS_PER_SPLIT` cells each).
Every failure is an :class:`~benchmarks.errors.InputError` with one line naming the input, the
field and the fix; the CLI prints it and exits with code 2, having written nothing.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.sparse as sp

from benchmarks.errors import InputError
from benchmarks.options import check_model_params, check_suite_options

if TYPE_CHECKING:
    import anndata as ad

    from benchmarks.interface import TaskData
    from benchmarks.runner import RunRequest

MAX_SEED = 2**32 - 1
"""NumPy seeds are unsigned 32-bit integers."""

MIN_CELLS = 10
"""Fewest cells (after loading) a single-cell data set may have for the cell-level suites."""

MIN_CELLS_PER_SPLIT = 3
"""Fewest cells in each split a suite makes (annotation: reference and query)."""

CELL_SUITES = ("annotation", "clustering")
"""Suites that work on cells and need :data:`MIN_CELLS` of them."""

LABEL_SUITES = ("annotation", "clustering")
"""Suites whose metrics compare labels: the label column needs at least two classes."""

MAX_VALUE: dict[str, float] = {
    "counts": 1e9,
    "linear_normalized": 1e9,
    "log1p_normalized": 30.0,
    "log2_normalized": 45.0,
    "scaled": 1e5,
}
"""Largest plausible absolute value per expression kind.

A single gene of a single profile never holds 10⁹ reads or UMIs; ``log1p``/``log2`` of any real
count stays below ~21/~30; centred data beyond 10⁵ standard deviations is an error.
"""

TRACKING_SCHEMES = ("sqlite", "postgresql", "mysql", "mssql", "http", "https", "databricks")
"""MLflow tracking URI schemes cgcbench accepts (MLflow ≥ 3.17 refuses ``file:`` stores)."""


def check_seeds(seeds: Sequence[Any]) -> list[int]:
    """Seeds as distinct integers in ``[0, 2**32 - 1]``."""
    out: list[int] = []
    for s in seeds:
        if isinstance(s, bool) or not isinstance(s, (int, np.integer)):
            raise InputError(f"--seeds {s!r}: expected integers, e.g. --seeds 0,1,2")
        if not 0 <= int(s) <= MAX_SEED:
            raise InputError(f"--seeds {s}: a seed must be between 0 and {MAX_SEED}; e.g. --seeds 0,1,2")
        if int(s) in out:
            raise InputError(f"--seeds: seed {s} is repeated; each seed runs once")
        out.append(int(s))
    if not out:
        raise InputError("--seeds is empty; pass e.g. --seeds 0,1,2")
    return out


def check_timeout(timeout: Any) -> float | None:
    """A positive, finite ``--timeout-per-run`` (or ``None``)."""
    if timeout is None:
        return None
    try:
        value = float(timeout)
    except (TypeError, ValueError):
        raise InputError(f"--timeout-per-run {timeout!r}: expected seconds, e.g. 3600") from None
    if not math.isfinite(value) or value <= 0:
        raise InputError(f"--timeout-per-run {timeout}: must be a positive number of seconds, e.g. 3600")
    return value


def check_tracking_uri(uri: str | None, flag: str = "--tracking-uri") -> None:
    """Refuse a tracking URI MLflow would refuse later (``file:`` stores, bare paths, typos)."""
    if uri is None:
        return
    scheme = uri.split(":", 1)[0].lower() if ":" in uri else ""
    scheme = scheme.split("+", 1)[0]  # postgresql+psycopg2://
    if scheme == "file" or not scheme:
        raise InputError(
            f"{flag} {uri}: MLflow ≥ 3.17 no longer accepts file stores; use a database store such "
            "as sqlite:///path/to/mlflow.db (or leave it unset for sqlite in --results-dir)"
        )
    if scheme not in TRACKING_SCHEMES:
        raise InputError(
            f"{flag} {uri}: unknown scheme {scheme!r}; use one of {', '.join(TRACKING_SCHEMES)} "
            "(e.g. sqlite:///path/mlflow.db or http://host:5000)"
        )


def validate_request(req: RunRequest) -> RunRequest:
    """``req`` with every option checked and converted to its declared type.

    Raises
    ------
    InputError
        The first invalid option, named with its flag and the fix.

    """
    from benchmarks.registry import model_class, parse_model, suite_class

    suite_cls = suite_class(req.suite)
    seeds = check_seeds(req.seeds)
    timeout = check_timeout(req.timeout_per_run)
    if not req.offline:
        check_tracking_uri(req.tracking_uri)
        if req.tracking_uri is None:
            check_tracking_uri(os.environ.get("MLFLOW_TRACKING_URI"), "MLFLOW_TRACKING_URI")
    options = check_suite_options(req.suite, req.suite_options, suite_cls)
    names = [parse_model(m).name for m in req.models]
    params: dict[str, dict[str, Any]] = {}
    for model, values in req.model_params.items():
        if model not in names:
            raise InputError(
                f"--model-set {model}.…: {model} is not among --models ({', '.join(names) or 'none'}); "
                "set options only for models you run"
            )
        params[model] = check_model_params(model, model_class(model), values)
    check_model_settings(req.models, params, seeds[0] if seeds else 0, req.quick)
    return replace(req, seeds=seeds, timeout_per_run=timeout, suite_options=options, model_params=params)


def check_model_settings(models: list[str], params: dict[str, dict[str, Any]], seed: int,
                         quick: bool) -> None:
    """Build every model given ``--model-set`` values once, so that their values are checked.

    Types are checked by :func:`benchmarks.options.check_model_params`; what only the adapter
    knows (a checkpoint path that does not exist, a folder without the release's files, an
    invalid list of edge types) is checked by its constructor, which does no work beyond that.
    Doing it here makes such a value an input error before any data is read or anything is
    written, instead of a failed row for every cell of the matrix.

    Raises
    ------
    InputError
        A value the adapter refuses, named with its ``--model-set`` flag.

    """
    from benchmarks.registry import build_model, parse_model

    for name in models:
        spec = parse_model(name)
        values = params.get(spec.name)
        if not values:
            continue
        try:
            build_model(spec, seed=seed, quick=quick, **values)
        except InputError as exc:
            keys = ", ".join(f"{spec.name}.{k}" for k in values)
            raise InputError(f"--model-set {keys}: {exc}") from exc
        except (ValueError, TypeError, OSError) as exc:
            keys = ", ".join(f"{spec.name}.{k}={v}" for k, v in values.items())
            raise InputError(f"--model-set {keys}: model {spec.label} refuses these settings "
                             f"({type(exc).__name__}: {exc})") from exc


# -- data sets -------------------------------------------------------------------------------


def check_matrix_dtype(X: Any, where: str) -> None:
    """Refuse an expression matrix that is not numeric and real (object, string, complex).

    Raises
    ------
    InputError
        Naming the dtype found and what to store instead.

    """
    dtype = getattr(X, "dtype", None)
    if dtype is None:
        raise InputError(f"{where}: the expression matrix has no dtype ({type(X).__name__}); store numbers")
    kind = np.dtype(dtype).kind
    if kind == "c":
        raise InputError(
            f"{where}: the expression matrix is complex ({dtype}); store real values (e.g. the "
            "magnitude or the real part) as float32"
        )
    if kind not in "biuf":
        raise InputError(
            f"{where}: the expression matrix holds {dtype} values, not numbers; convert it to "
            "float32 (e.g. adata.X = adata.X.astype('float32')) and write the file again"
        )


def _values(X: Any) -> np.ndarray:
    return np.asarray(X.data if sp.issparse(X) else X).ravel()


def check_dataset(adata: ad.AnnData, suite: str) -> None:
    """Check a loaded data set against what ``suite`` needs (cells, value range, classes).

    Raises
    ------
    InputError
        Too few cells, implausible values for the expression kind, or one class only.

    """
    meta = adata.uns.get("cgcbench", {})
    ds = meta.get("dataset", {})
    where = ds.get("path") or ds.get("name") or "the data set"
    check_matrix_dtype(adata.X, where)
    if suite in CELL_SUITES and adata.n_obs < MIN_CELLS:
        raise InputError(
            f"{where}: {adata.n_obs} cell(s); suite {suite} needs at least {MIN_CELLS} cells "
            f"(and {MIN_CELLS_PER_SPLIT} per split) — use a larger data set"
        )
    kind = ds.get("expression_kind")
    values = _values(adata.X)
    limit = MAX_VALUE.get(kind or "")
    if limit is not None and values.size:
        peak = float(np.abs(values).max())
        if peak > limit:
            raise InputError(
                f"{where}: expression value {peak:.3g} is implausible for {kind} (at most {limit:.0e}); "
                "check the matrix (overflow, wrong layer) or --expression-kind"
            )
    label_key = meta.get("label_key")
    if suite in LABEL_SUITES and label_key and label_key in adata.obs:
        labels = adata.obs[label_key].dropna().astype(str)
        classes = labels.unique()
        if len(classes) < 2:
            raise InputError(
                f"{where}: obs[{label_key!r}] has {len(classes)} class(es) "
                f"({', '.join(map(str, classes[:3])) or 'none'}); suite {suite} needs at least 2 — "
                "pass --label-key with a column of cell types"
            )
        if suite == "annotation" and int((labels.value_counts() >= 2).sum()) < 1:
            raise InputError(
                f"{where}: every class of obs[{label_key!r}] has a single cell; annotation needs "
                "classes with at least 2 cells to split into reference and query"
            )


def check_task(task: TaskData, suite: str, dataset: str) -> None:
    """Each split the suite made holds at least :data:`MIN_CELLS_PER_SPLIT` cells."""
    if suite not in CELL_SUITES:
        return
    for name, part in task.payload.items():
        n = getattr(part, "n_obs", None)
        if n is not None and n < MIN_CELLS_PER_SPLIT:
            raise InputError(
                f"dataset {dataset}: the {name} split of suite {suite} has {n} cell(s), fewer than "
                f"{MIN_CELLS_PER_SPLIT}; use a larger data set or change --set query_fraction"
            )
