"""nox sessions: tests (default CI), slow (end-to-end), lint, abuse (faults), bench (perf), demo."""

from __future__ import annotations

import os
import subprocess
import sys

import nox

nox.options.sessions = ["lint", "tests"]
nox.options.reuse_venv = "yes"
nox.options.default_venv_backend = "venv"

PYTHON = "3.11"


HERE = os.path.dirname(os.path.abspath(__file__))
FIRST_ENV_PYTHON = os.path.join(HERE, ".venv", "bin", "python")


def _own_venv(session: nox.Session) -> bool:
    """False under ``nox --no-venv``: the session runs in the environment nox itself runs in."""
    return getattr(session, "venv_backend", "venv") != "none"


def _first_env() -> str | None:
    """The Python of ``.venv`` (the README's first command builds it) when cgcbench and its test
    tools import there; ``None`` otherwise (a clean clone, as in CI) or with CGCBENCH_FRESH_ENV=1."""
    if os.environ.get("CGCBENCH_FRESH_ENV") or not os.path.exists(FIRST_ENV_PYTHON):
        return None
    probe = subprocess.run([FIRST_ENV_PYTHON, "-c", "import cgc, benchmarks, pytest, pytest_timeout"],
                           cwd=HERE, capture_output=True)
    return FIRST_ENV_PYTHON if probe.returncode == 0 else None


def _python(session: nox.Session) -> str | None:
    """The Python a session runs in: nox's own under --no-venv, else ``.venv``'s when it is
    complete, else ``None`` (the session's fresh environment, installed by :func:`install`)."""
    return sys.executable if not _own_venv(session) else _first_env()


def _run_module(session: nox.Session, module: str, *args: str, **kwargs) -> None:
    """``python -m MODULE ARGS`` in the environment :func:`_python` picks."""
    py = _python(session)
    if py is None:
        session.run("python", "-m", module, *args, **kwargs)
    else:
        session.log(f"reusing the environment of {py}")
        session.run(py, "-m", module, *args, external=True, **kwargs)


def install(session: nox.Session) -> None:
    """Install cgcbench with every extra except gpu (torch first so the CPU 2.13.0 pin holds), then scGPT.

    Nothing is installed when the session reuses an environment (:func:`_python`): the one
    the README's first command built in ``.venv``, or nox's own under ``--no-venv``.
    """
    if _python(session) is not None:
        return
    session.install("torch==2.13.0")
    session.install("-e", ".[all]")
    session.install("--no-deps", "scgpt==0.2.4")  # its pins conflict with scvi-tools >= 1


def _env() -> dict[str, str]:
    mirrors = os.environ.get("CGCBENCH_MIRRORS") or os.path.join(os.path.dirname(HERE), "shared", "data")
    return {"CGCBENCH_MIRRORS": mirrors, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """The default test run (excludes -m slow); about 15 minutes on 2 CPU cores."""
    install(session)
    _run_module(session, "pytest", "-q", "--timeout=900", *session.posargs, env=_env())


@nox.session(python=PYTHON)
def slow(session: nox.Session) -> None:
    """End-to-end runs marked slow (multi-seed suites, pre-training)."""
    install(session)
    _run_module(session, "pytest", "-q", "-m", "slow", "--timeout=2400", *session.posargs, env=_env(),
                success_codes=[0, 5])


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """ruff check and format check."""
    if _own_venv(session):
        session.install("ruff>=0.6")
        session.run("ruff", "check", ".")
    else:
        session.run(sys.executable, "-m", "ruff", "check", ".", external=True)


@nox.session(python=PYTHON)
def abuse(session: nox.Session) -> None:
    """The abuse/fault battery (benchmarks/abuse.py): bad inputs, kills, hostile files; prints its table."""
    install(session)
    _run_module(session, "benchmarks.abuse", *session.posargs, env=_env())


@nox.session(python=PYTHON)
def bench(session: nox.Session) -> None:
    """Speed and memory tables of benchmarks/perf (printed, not asserted)."""
    install(session)
    for script in sorted(os.listdir("benchmarks/perf")):
        if script.endswith(".py") and not script.startswith("_"):
            py = _python(session)
            session.run(py or "python", f"benchmarks/perf/{script}", *session.posargs, env=_env(),
                        external=py is not None)


@nox.session(python=PYTHON)
def demo(session: nox.Session) -> None:
    """The README's main job: CGC against pca-logreg and the majority control on the bundled PBMC set."""
    install(session)
    _run_module(session, "benchmarks.cli", "run", "annotation", "--models", "cgc,pca-logreg,majority",
                "--datasets", "pbmc68k_reduced", "--seeds", "0,1,2", env=_env())
