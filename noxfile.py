"""nox sessions: tests (default CI), slow (end-to-end), lint, abuse (faults), bench (perf), demo."""

from __future__ import annotations

import os
import sys

import nox

nox.options.sessions = ["lint", "tests"]
nox.options.reuse_venv = "yes"
nox.options.default_venv_backend = "venv"

PYTHON = "3.11"


def _own_venv(session: nox.Session) -> bool:
    """False under ``nox --no-venv``: the session runs in the environment nox itself runs in."""
    return getattr(session, "venv_backend", "venv") != "none"


def _bin(session: nox.Session, name: str) -> str:
    """A console script of the session's environment (under --no-venv: beside nox's Python)."""
    return name if _own_venv(session) else os.path.join(os.path.dirname(sys.executable), name)


def install(session: nox.Session) -> None:
    """Install cgcbench with every extra except gpu (torch first so the CPU 2.13.0 pin holds), then scGPT.

    Under ``nox --no-venv`` nothing is installed: the sessions reuse the environment the
    README's first command built (``.venv/bin/python -m nox --no-venv -s lint tests``).
    """
    if not _own_venv(session):
        return
    session.install("torch==2.13.0")
    session.install("-e", ".[all]")
    session.install("--no-deps", "scgpt==0.2.4")  # its pins conflict with scvi-tools >= 1


def _env() -> dict[str, str]:
    here = os.path.dirname(os.path.abspath(__file__))
    mirrors = os.environ.get("CGCBENCH_MIRRORS") or os.path.join(os.path.dirname(here), "shared", "data")
    return {"CGCBENCH_MIRRORS": mirrors, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """The default test run (excludes -m slow); about 15 minutes on 2 CPU cores."""
    install(session)
    session.run(_bin(session, "pytest"), "-q", "--timeout=900", *session.posargs, env=_env())


@nox.session(python=PYTHON)
def slow(session: nox.Session) -> None:
    """End-to-end runs marked slow (multi-seed suites, pre-training)."""
    install(session)
    session.run(_bin(session, "pytest"), "-q", "-m", "slow", "--timeout=2400", *session.posargs, env=_env(),
                success_codes=[0, 5])


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """ruff check and format check."""
    if _own_venv(session):
        session.install("ruff>=0.6")
    session.run(_bin(session, "ruff"), "check", ".")


@nox.session(python=PYTHON)
def abuse(session: nox.Session) -> None:
    """The abuse/fault battery (benchmarks/abuse.py): bad inputs, kills, hostile files; prints its table."""
    install(session)
    session.run(_bin(session, "python"), "-m", "benchmarks.abuse", *session.posargs, env=_env())


@nox.session(python=PYTHON)
def bench(session: nox.Session) -> None:
    """Speed and memory tables of benchmarks/perf (printed, not asserted)."""
    install(session)
    for script in sorted(os.listdir("benchmarks/perf")):
        if script.endswith(".py") and not script.startswith("_"):
            session.run(_bin(session, "python"), f"benchmarks/perf/{script}", *session.posargs, env=_env())


@nox.session(python=PYTHON)
def demo(session: nox.Session) -> None:
    """The README's main job: annotation on the bundled PBMC set with the two simple baselines."""
    install(session)
    session.run(_bin(session, "cgcbench"), "run", "annotation", "--models", "majority,pca-logreg",
                "--datasets", "pbmc68k_reduced", "--seeds", "0,1,2", env=_env())
