"""Start-up cost of the command line: help, listings and input errors import no deep-learning stack.

``python -X importtime`` writes one line per imported module to stderr; the test reads which
modules were imported (a timing is never asserted).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "torch_geometric", "scvi", "transformers")


def _imported(*args: str) -> tuple[int, set[str], str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "benchmarks.cli", *args],
                          capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)
    mods = {line.rsplit("|", 1)[1].strip() for line in proc.stderr.splitlines()
            if line.startswith("import time:") and "|" in line}
    return proc.returncode, mods, proc.stdout + proc.stderr


@pytest.mark.parametrize("args", [
    ("--help",),
    ("list", "suites"),
    ("datasets", "list"),
    ("run", "annotation", "--models", "majority", "--datasets", "pbmc68k_reduced", "--seeds", "x"),
])
def test_cli_start_up_imports_no_deep_learning_stack(args):
    rc, mods, out = _imported(*args)
    assert rc == (2 if "--seeds" in args else 0), out[-2000:]
    assert "typer" in mods  # the importtime trace was read
    assert not [m for m in HEAVY if m in mods], f"{args} imported {[m for m in HEAVY if m in mods]}"
    if args == ("--help",):
        assert "anndata" not in mods and "numba" not in mods  # help reads no data modules


def test_list_models_reads_adapters_without_torch():
    rc, mods, out = _imported("list", "models")
    assert rc == 0
    cgc_row = next(line for line in out.splitlines() if line.strip("│ ").startswith("cgc "))
    assert "unavailable" not in cgc_row and "annotation" in cgc_row  # the class was read
    assert "torch" not in mods


def test_version_flag():
    from benchmarks import __version__

    proc = subprocess.run([sys.executable, "-m", "benchmarks.cli", "--version"], capture_output=True,
                          text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == f"cgcbench {__version__}"


def test_cgc_names_still_resolve_lazily():
    import cgc

    assert cgc.CGCConfig.small().d_model == 64
    assert cgc.CellGraphBuilder.__module__ == "cgc.graph"
    assert callable(cgc.pretrain) and callable(cgc.load_checkpoint)
    with pytest.raises(AttributeError):
        cgc.no_such_name  # noqa: B018


def test_numba_cache_goes_to_the_data_cache(monkeypatch, tmp_path):
    from benchmarks import cli

    monkeypatch.delenv("NUMBA_CACHE_DIR", raising=False)
    monkeypatch.setenv("CGCBENCH_DATA_DIR", str(tmp_path))
    cli.configure_caches()
    from benchmarks.data.fetch import data_dir

    assert os.environ["NUMBA_CACHE_DIR"] == str(tmp_path / "numba") == str(data_dir() / "numba")
    monkeypatch.setenv("NUMBA_CACHE_DIR", "/elsewhere")
    cli.configure_caches()  # a user's setting wins
    assert os.environ["NUMBA_CACHE_DIR"] == "/elsewhere"
