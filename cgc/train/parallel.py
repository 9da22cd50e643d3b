"""Executors for data preparation: in this process, or a Dask cluster behind a ``map``-like callable.

:func:`executor_map` opens what ``--executor``, ``--workers``, ``--scheduler`` and
``--cluster`` ask for and yields a ``map_fn(fn, items)`` that returns results in order
(``None`` for in-process work), which :func:`cgc.train.corpus.build_corpus` accepts. The checks
(:func:`check_scheduler`, :func:`check_cluster`) run before any work and raise one-line
:class:`~cgc.errors.ConfigError` errors; the benchmark harness reuses them. Dask is imported only
when used.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import shutil
import socket
from collections.abc import Callable, Iterable, Iterator
from typing import Any
from urllib.parse import urlsplit

from cgc.errors import ConfigError

MapFn = Callable[..., Iterable[Any]]

CLUSTERS: dict[str, tuple[str, str]] = {
    "slurm": ("SLURMCluster", "sbatch"),
    "pbs": ("PBSCluster", "qsub"),
    "sge": ("SGECluster", "qsub"),
    "lsf": ("LSFCluster", "bsub"),
    "htcondor": ("HTCondorCluster", "condor_submit"),
}
"""``--cluster`` name → (``dask_jobqueue`` class, the submit command it needs on PATH)."""

INSTALL_HINT = "install the extra: pip install 'cgcbench[dask]'"


def check_dask() -> None:
    """Raise :class:`ConfigError` if ``dask.distributed`` is not installed."""
    if importlib.util.find_spec("distributed") is None:
        raise ConfigError(f"--executor dask: dask.distributed is not installed; {INSTALL_HINT}")


def check_scheduler(address: str) -> tuple[str, int]:
    """``(host, port)`` of a ``tcp://HOST:PORT`` scheduler address that accepts connections.

    Raises
    ------
    ConfigError
        The address is malformed or nothing listens there.

    """
    parts = urlsplit(address if "://" in address else f"tcp://{address}")
    try:
        port = parts.port
    except ValueError:
        port = None
    if parts.scheme not in ("tcp", "tls") or not parts.hostname or port is None:
        raise ConfigError(
            f"--scheduler {address!r}: expected tcp://HOST:PORT, e.g. tcp://10.0.0.5:8786 "
            "(the address `dask scheduler` prints)"
        )
    try:
        with socket.create_connection((parts.hostname, port), timeout=5):
            pass
    except OSError as exc:
        raise ConfigError(
            f"--scheduler {address}: no Dask scheduler answers there ({type(exc).__name__}: {exc}); "
            "start one with `dask scheduler` or fix the address"
        ) from None
    return parts.hostname, port


def check_cluster(name: str) -> None:
    """Check that a ``dask_jobqueue`` cluster type can be used from this machine.

    Raises
    ------
    ConfigError
        Unknown type, ``dask-jobqueue`` not installed, the batch system's submit command not on
        PATH, or ``cores``/``memory`` missing from Dask's ``jobqueue.<name>`` configuration.

    """
    if name not in CLUSTERS:
        raise ConfigError(f"--cluster {name!r}: unknown cluster type; use one of {', '.join(CLUSTERS)}")
    if importlib.util.find_spec("dask_jobqueue") is None:
        raise ConfigError(f"--cluster {name}: dask-jobqueue is not installed; {INSTALL_HINT}")
    _cls, submit = CLUSTERS[name]
    if shutil.which(submit) is None:
        raise ConfigError(
            f"--cluster {name}: `{submit}` is not on PATH, so this machine cannot submit {name} jobs; "
            "run on a login node of the cluster"
        )
    import dask
    import dask_jobqueue  # noqa: F401  (loads jobqueue.yaml defaults into dask.config)

    conf = dask.config.get(f"jobqueue.{name}", default={}) or {}
    missing = [k for k in ("cores", "memory") if not conf.get(k)]
    if missing:
        raise ConfigError(
            f"--cluster {name}: jobqueue.{name}.{missing[0]} is not set in Dask's config; "
            "add it to ~/.config/dask/jobqueue.yaml (example in the README)"
        )


def check_executor(executor: str, workers: int | None, scheduler: str | None,
                   cluster: str | None) -> None:
    """Check an executor choice before any work (one-line :class:`ConfigError`)."""
    if executor not in ("local", "dask"):
        raise ConfigError(f"--executor {executor!r}: expected one of local, dask")
    if executor == "local":
        for flag, value in (("--workers", workers), ("--scheduler", scheduler), ("--cluster", cluster)):
            if value is not None:
                raise ConfigError(f"{flag} applies to the Dask executor; add --executor dask")
        return
    check_dask()
    if scheduler is not None and cluster is not None:
        raise ConfigError("--scheduler and --cluster exclude each other; pass one")
    if scheduler is not None and workers is not None:
        raise ConfigError("--workers starts a local cluster or sizes --cluster; with --scheduler drop it")
    if workers is not None and workers < 1:
        raise ConfigError(f"--workers {workers}: expected 1 or more")
    if scheduler is not None:
        check_scheduler(scheduler)
    if cluster is not None:
        check_cluster(cluster)


def dask_map(client: Any, **submit_kwargs: Any) -> MapFn:
    """A ``map``-like callable running ``fn(item)`` as Dask tasks; results come back in order.

    Each call submits its items at once and yields results as they are needed, releasing each
    from the cluster when yielded (callers bound memory by passing windows of items).
    """

    def _map(fn: Callable[[Any], Any], items: Iterable[Any]) -> Iterator[Any]:
        futures = client.map(fn, list(items), pure=False, **submit_kwargs)
        try:
            for fut in futures:
                yield fut.result()
                fut.release()
        finally:
            with contextlib.suppress(Exception):
                client.cancel([f for f in futures if f.status == "pending"])

    return _map


def open_cluster(workers: int | None, scheduler: str | None, cluster: str | None,
                 **local_kwargs: Any) -> tuple[Any, Any, str]:
    """Start or connect to a cluster: ``(client, cluster or None, description)``."""
    from distributed import Client, LocalCluster

    if "CGCBENCH_LOG" not in os.environ:  # Dask logs every worker start and stop at INFO
        logging.getLogger("distributed").setLevel(logging.WARNING)
    if scheduler is not None:
        return Client(scheduler, timeout="10s"), None, f"scheduler {scheduler}"
    if cluster is not None:
        import dask_jobqueue

        made = getattr(dask_jobqueue, CLUSTERS[cluster][0])()
        made.scale(n=workers or 1)
        return Client(made), made, f"{cluster} cluster ({workers or 1} worker(s) requested)"
    n = workers or os.cpu_count() or 1
    local_kwargs.setdefault("dashboard_address", ":0")
    made = LocalCluster(n_workers=n, threads_per_worker=1, processes=True, **local_kwargs)
    return Client(made), made, f"local cluster of {n} worker process(es)"


@contextlib.contextmanager
def executor_map(executor: str = "local", workers: int | None = None, scheduler: str | None = None,
                 cluster: str | None = None,
                 on_notice: Callable[[str], None] | None = None) -> Iterator[MapFn | None]:
    """Yield the ``map_fn`` for an executor choice (``None``: work in this process).

    Raises
    ------
    ConfigError
        A bad choice (see :func:`check_executor`), before anything starts.

    """
    check_executor(executor, workers, scheduler, cluster)
    if executor == "local":
        yield None
        return
    client, made, where = open_cluster(workers, scheduler, cluster)
    try:
        if on_notice is not None:
            on_notice(f"Dask: {where}; dashboard {client.dashboard_link}")
        client.wait_for_workers(1)
        yield dask_map(client)
    finally:
        for thing in (client, made):
            if thing is not None:
                with contextlib.suppress(Exception):
                    thing.close()
