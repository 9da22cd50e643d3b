"""SIGTERM/SIGINT: the resume line, exit within 5 s, no partial record (issue 15)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

EXIT_LIMIT_S = 5.0


def _records(results: Path) -> list[Path]:
    root = results / "records"
    return [p for p in root.rglob("*.json") if not p.name.startswith(".")] if root.is_dir() else []


@pytest.mark.parametrize(
    ("sig", "isolate"), [(signal.SIGTERM, False), (signal.SIGINT, False), (signal.SIGTERM, True)]
)
def test_signal_prints_resume_line_and_exits_fast(tmp_path, pbmc_user_file, sig, isolate):
    results = tmp_path / "results"
    args = [
        sys.executable,
        "-m",
        "benchmarks.cli",
        "run",
        "annotation",
        "--models",
        "majority,pca-logreg",
        "--datasets",
        str(pbmc_user_file),
        "--label-key",
        "cell_type",
        "--seeds",
        "0,1,2,3,4,5",
        "--results-dir",
        str(results),
        *(["--isolate"] if isolate else []),
    ]
    proc = subprocess.Popen(
        args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(os.environ, COLUMNS="200")
    )
    deadline = time.monotonic() + 240
    while not _records(results) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before the signal: " + proc.stderr.read()
    time.sleep(0.3)  # land inside a cell (or between cells)
    sent = time.monotonic()
    proc.send_signal(sig)
    try:
        out, err = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail("the run did not exit within 30 s of the signal")
    took = time.monotonic() - sent
    assert took < EXIT_LIMIT_S, f"exited {took:.1f} s after the signal"
    assert proc.returncode == 130, err[-2000:]
    assert "rerun with --resume to complete" in err
    assert "Traceback" not in err
    for path in _records(results):  # every record on disk is whole and claims only what happened
        rec = json.loads(path.read_text())
        assert rec["status"] in ("FINISHED", "NOT_APPLICABLE"), rec["status"]
        assert all((results / a).is_file() for a in rec["artifacts"])


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_while_importing_is_quiet(tmp_path, pbmc_user_file, sig):
    results = tmp_path / "results"
    args = [sys.executable, "-m", "benchmarks.cli", "run", "annotation", "--models", "majority",
            "--datasets", str(pbmc_user_file), "--label-key", "cell_type", "--results-dir", str(results)]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(1.0)  # the command is still importing its modules
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err[-2000:]
    assert "Traceback" not in err and "rerun with --resume" in err
    assert not results.exists()


def test_importing_the_cli_leaves_signal_handlers_alone():
    before = signal.getsignal(signal.SIGINT)
    import benchmarks.cli  # noqa: F401

    assert signal.getsignal(signal.SIGINT) is before
