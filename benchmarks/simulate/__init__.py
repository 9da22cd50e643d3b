"""Simulated ground truth with SERGIO: cells, batches and knockouts from a real GRN.

A dataset card with ``kind = "simulated"`` carries a ``[simulation]`` table (see
:data:`benchmarks.simulate.designs.DEFAULTS` for every key). :func:`materialize` simulates it
deterministically and caches the h5ad at ``$CGCBENCH_DATA_DIR/<card>/<params hash>.h5ad``; the
loader then reads it like any other h5ad card through the card's ``[anndata]`` section.

The h5ad holds raw UMI counts in ``X`` (pseudo-bulk sums for the ``bulk_ko`` design), the
noise-free SERGIO expression in ``layers["clean"]``, gene symbols as ``var_names``, the true GRN
in ``uns["grn"]`` (``reg``, ``tar``, ``k``, ``n``, ``h``; ``k < 0`` = repression) and the
resolved parameters in ``uns["simulation"]``.
"""

from __future__ import annotations

import os
import tempfile
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING, Any

from benchmarks.errors import InputError

if TYPE_CHECKING:
    from benchmarks.data.cards import DatasetCard

SIMULATOR_VERSION = "1"
"""Bumped whenever the simulation code changes its output for the same parameters."""



def __getattr__(name: str) -> Any:
    # The designs (numpy/scipy, SERGIO's engine) load on first use, so mounting
    # ``cgcbench datasets simulate`` costs nothing at start-up; cached once loaded, and a
    # monkeypatched ``simulate`` is what :func:`materialize` calls.
    if name in ("DEFAULTS", "resolve_params", "simulate"):
        from benchmarks.simulate import designs

        value = getattr(designs, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _designs(name: str) -> Any:
    return globals()[name] if name in globals() else __getattr__(name)


__all__ = ["DEFAULTS", "SIMULATOR_VERSION", "card_params", "materialize", "params_hash", "simulate"]


def _sergio_version() -> str:
    try:
        return version("sergio-scsim")
    except PackageNotFoundError:
        return "missing"


def card_params(card: DatasetCard, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """The card's resolved ``[simulation]`` parameters, with ``overrides`` applied."""
    where = str(card.path or card.name)
    if card.kind != "simulated":
        raise InputError(f"{where}: kind={card.kind!r}; only kind='simulated' cards can be simulated")
    table = card.extra.get("simulation")
    if not isinstance(table, dict):
        raise InputError(f"{where}: a simulated card needs a [simulation] table (e.g. design, seed, n_genes)")
    return _designs("resolve_params")({**table, **(overrides or {})}, where)


def params_hash(params: dict[str, Any]) -> str:
    """Cache key of a simulation: its parameters, the simulator code version and SERGIO's version."""
    from benchmarks.interface import config_hash

    clean = {k: v for k, v in params.items() if k != "n_jobs"}
    return config_hash({"params": clean, "simulator": SIMULATOR_VERSION, "sergio": _sergio_version()})


def materialize(
    card: DatasetCard, overrides: dict[str, Any] | None = None, n_jobs: int | None = None
) -> Path:
    """Simulate ``card`` (once) and return the cached h5ad path.

    Parameters
    ----------
    card
        A ``kind = "simulated"`` dataset card with a ``[simulation]`` table.
    overrides
        Parameter overrides (e.g. ``{"cells_per_type": 2000}``); they change the cache key.
    n_jobs
        Worker processes for the simulation (default: up to 2); never changes the output.

    Returns
    -------
    Path
        ``$CGCBENCH_DATA_DIR/<card name>/<params hash>.h5ad``, written atomically, with its
        sha256 in ``<params hash>.h5ad.sha256`` beside it. A cached file is checked against
        that sha256 on every call; a cached file without one (an older cache) is simulated again.

    Raises
    ------
    ChecksumError
        If the cached file no longer matches the sha256 recorded when it was written.

    """
    from benchmarks.data.fetch import data_dir, sha256_file, sidecar, verify_sidecar, write_sidecar

    try:
        import SERGIO  # noqa: F401
    except ImportError as exc:
        raise InputError(
            f"dataset {card.name} is simulated with SERGIO, which is not installed; "
            "pip install sergio-scsim (or cgcbench[baselines])"
        ) from exc
    params = card_params(card, overrides)
    path = data_dir() / card.name / f"{params_hash(params)}.h5ad"
    if path.is_file() and sidecar(path).is_file():  # written by us: must still be what we wrote
        verify_sidecar(path, f"delete {path} (and {sidecar(path).name}) to simulate it again")
        return path
    adata = _designs("simulate")(params, n_jobs=n_jobs)
    adata.uns["simulation"]["card"] = card.name
    adata.uns["simulation"]["sergio_version"] = _sergio_version()
    adata.uns["simulation"]["simulator_version"] = SIMULATOR_VERSION
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}-", suffix=".h5ad.tmp", dir=path.parent)
    os.close(fd)
    try:
        adata.write_h5ad(tmp)
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; a cache is shared like a download
        digest = sha256_file(Path(tmp))
        os.replace(tmp, path)
        write_sidecar(path, digest)  # the sha256 at creation, checked on every later load
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path
