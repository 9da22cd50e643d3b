"""The run matrix on Dask: same numbers as in-process, worker deaths retried, bad input refused.

Real ``LocalCluster``s of 2 worker processes on the real PBMC set (controls + pca-logreg).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("distributed")

from benchmarks.data.load import UserKeys  # noqa: E402
from benchmarks.errors import InputError  # noqa: E402
from benchmarks.executors import EVENT_TOPIC, ExecutorSpec, check_executor, local_cluster  # noqa: E402
from benchmarks.runner import MatrixRunner, RunRequest  # noqa: E402


def _request(user_file: Path, results: Path, **kw) -> RunRequest:
    return RunRequest(
        suite="annotation",
        models=["majority", "pca-logreg"],
        datasets=[str(user_file)],
        seeds=[0, 1],
        keys=UserKeys(label_key="cell_type"),
        quick=True,
        results_dir=results,
        offline=True,
        **kw,
    )


def _by_cell(records: list[dict]) -> dict[tuple[str, int], dict]:
    return {(r["model"]["name"], r["seed"]): r for r in records}


def _on_disk(results: Path) -> dict[tuple[str, int], dict]:
    return _by_cell([json.loads(p.read_text()) for p in (results / "records").rglob("*.json")])


def test_local_cluster_records_equal_in_process(tmp_path, pbmc_user_file):
    local = MatrixRunner(_request(pbmc_user_file, tmp_path / "local")).run()
    notices: list[str] = []
    dask_spec = ExecutorSpec("dask", workers=2)
    request = _request(pbmc_user_file, tmp_path / "dask", executor=dask_spec)
    on_dask = MatrixRunner(request, None, notices.append)
    records = on_dask.run()
    assert [r["record_id"] for r in records] == [r["record_id"] for r in local]  # matrix order
    a, b = _by_cell(local), _on_disk(tmp_path / "dask")
    assert sorted(a) == sorted(b) and len(a) == 4
    for cell, rec in b.items():
        assert rec["status"] == "FINISHED"
        assert rec["metrics"] == a[cell]["metrics"], cell  # exactly, same seeds
        assert rec["config_hash"] == a[cell]["config_hash"]
        assert rec["provenance"]["executor"]["attempts"] == 1
        assert rec["provenance"]["executor"]["pid"] != os.getpid()  # ran in a worker process
        assert all((tmp_path / "dask" / p).is_file() for p in rec["artifacts"])
    assert any("dashboard http" in n for n in notices), notices
    assert not list((tmp_path / "dask").glob(".staging-*"))


def test_killed_worker_is_retried_then_failed_and_resume_completes(tmp_path, pbmc_user_file):
    """Kill (SIGKILL, by pid) the worker of a pca-logreg cell when it starts.

    seed 1 is killed once (retried, then finishes); seed 0 on each of its two attempts
    (--retries 1), so it must be recorded FAILED with the reason, and ``--resume`` finishes it.
    """
    results = tmp_path / "results"
    kills = {"seed0": 2, "seed1": 1}
    killed: list[tuple[str, int]] = []
    lock = threading.Lock()
    from distributed import Client

    with local_cluster(2) as cluster, Client(cluster) as watcher:

        def on_event(event: tuple) -> None:
            msg = event[1]
            if msg.get("event") != "start" or "pca-logreg" not in msg["record_id"]:
                return
            seed = msg["record_id"].rsplit("/", 1)[-1].split("-")[0]
            with lock:
                if kills.get(seed, 0) > 0:
                    kills[seed] -= 1
                    killed.append((seed, msg["pid"]))
                    os.kill(msg["pid"], signal.SIGKILL)

        watcher.subscribe_topic(EVENT_TOPIC, on_event)
        spec = ExecutorSpec("dask", scheduler=cluster.scheduler_address, retries=1)
        records = MatrixRunner(_request(pbmc_user_file, results, executor=spec)).run()
    assert [s for s, _ in killed].count("seed0") == 2 and [s for s, _ in killed].count("seed1") == 1
    recs = _on_disk(results)
    assert len(records) == len(recs) == 4
    failed = recs[("pca-logreg", 0)]
    assert failed["status"] == "FAILED" and failed["metrics"] == {} and failed["artifacts"] == []
    assert failed["error"]["type"] == "WorkerLost"
    assert "worker running the cell died" in failed["error"]["message"]
    assert "tried 2 time(s)" in failed["error"]["message"]
    retried = recs[("pca-logreg", 1)]
    assert retried["status"] == "FINISHED" and retried["provenance"]["executor"]["attempts"] == 2
    assert retried["provenance"]["executor"]["pid"] not in {pid for _, pid in killed}
    assert recs[("majority", 0)]["status"] == recs[("majority", 1)]["status"] == "FINISHED"
    assert not list(results.glob(".staging-*"))  # killed attempts left nothing behind
    # --resume runs only the failed cell, here in-process, and gets the in-process numbers
    before = {k: r["provenance"]["started_at_ms"] for k, r in recs.items() if r["status"] == "FINISHED"}
    resumed = MatrixRunner(_request(pbmc_user_file, results, resume=True)).run()
    after = _on_disk(results)
    assert {r["status"] for r in resumed} == {"FINISHED"}
    assert all(after[k]["provenance"]["started_at_ms"] == t for k, t in before.items())
    assert after[("pca-logreg", 0)]["metrics"] and "executor" not in after[("pca-logreg", 0)]["provenance"]


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--executor", "dask", "--scheduler", "tcp://127.0.0.1:{port}"], "no Dask scheduler answers there"),
    ],
)
def test_bad_executor_input_exits_2_before_any_work(tmp_path, pbmc_user_file, args, message):
    results = tmp_path / "results"
    args = [a.replace("{port}", str(_closed_port())) for a in args]
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.cli", "run", "annotation", "--models", "majority",
         "--datasets", str(pbmc_user_file), "--label-key", "cell_type", "--results-dir", str(results), *args],
        cwd=tmp_path, capture_output=True, text=True, timeout=300, env=dict(os.environ, COLUMNS="300"),
    )
    assert proc.returncode == 2, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and message in lines[0], proc.stderr
    assert not results.exists()


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (ExecutorSpec("dask", scheduler="localhost"), "expected tcp://HOST:PORT"),
        (ExecutorSpec("dask", cluster="slurm"), "`sbatch` is not on PATH"),
        (ExecutorSpec("dask", cluster="kubernetes"), "unknown cluster type"),
        (ExecutorSpec("local", workers=2), "add --executor dask"),
        (ExecutorSpec("ray"), "expected one of local, dask"),
        (ExecutorSpec("dask", memory_per_cell="lots"), "expected a size such as 4GiB"),
        (ExecutorSpec("dask", workers=0), "--workers 0"),
        (ExecutorSpec("dask", retries=-1), "--retries -1"),
        (ExecutorSpec("dask", scheduler="tcp://127.0.0.1:1", cluster="slurm"), "exclude each other"),
        (ExecutorSpec("dask", scheduler="tcp://127.0.0.1:1", workers=2), "with --scheduler drop it"),
    ],
)
def test_check_executor_refuses(spec, message):
    if "sbatch" in message and shutil.which("sbatch"):
        pytest.skip("this machine has Slurm")
    with pytest.raises(InputError, match=re.escape(message)):
        check_executor(spec)


def test_missing_jobqueue_is_one_line(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    fake = lambda n, *a: None if n == "dask_jobqueue" else real(n, *a)  # noqa: E731
    monkeypatch.setattr(importlib.util, "find_spec", fake)
    with pytest.raises(InputError, match="dask-jobqueue is not installed"):
        check_executor(ExecutorSpec("dask", cluster="slurm"))


@pytest.mark.slow
def test_interrupt_kills_local_workers_and_resume_on_dask_completes(tmp_path, pbmc_user_file):
    import psutil

    results = tmp_path / "results"
    cmd = [sys.executable, "-m", "benchmarks.cli", "run", "annotation", "--models", "majority,pca-logreg",
           "--datasets", str(pbmc_user_file), "--label-key", "cell_type", "--seeds", "0,1",
           "--results-dir", str(results), "--executor", "dask", "--workers", "2", "--offline"]
    proc = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while time.time() < deadline and not list((results / "records").rglob("*.json")):
        time.sleep(0.2)
    workers = [c for c in psutil.Process(proc.pid).children(recursive=True) if "spawn_main" in " ".join(
        c.cmdline())]
    assert workers, "no worker processes found"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "rerun with --resume" in err
    time.sleep(1)
    assert not [w for w in workers if w.is_running() and w.status() != psutil.STATUS_ZOMBIE]
    partial = _on_disk(results)
    assert 1 <= len(partial) < 4 and {r["status"] for r in partial.values()} == {"FINISHED"}
    resumed = subprocess.run([*cmd, "--resume"], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    final = _on_disk(results)
    assert len(final) == 4 and {r["status"] for r in final.values()} == {"FINISHED"}
    assert all(final[k]["provenance"]["started_at_ms"] == r["provenance"]["started_at_ms"]
               for k, r in partial.items())
    assert not list(results.glob(".staging-*"))


def test_gpu_cells_ask_for_a_gpu_worker_and_memory_is_checked(monkeypatch):
    from benchmarks.executors import DaskPool

    workers = [
        {"resources": {"GPU": 1, "MEMORY": 16e9}, "memory_limit": 16e9},
        {"resources": {"MEMORY": 8e9}, "memory_limit": 8e9},
    ]
    notices: list[str] = []
    pool = DaskPool(ExecutorSpec("dask", memory_per_cell="6GiB"), notices.append)
    monkeypatch.setattr(pool, "_worker_resources", lambda: workers)
    res = pool.resources_for({"cgc", "scvi", "majority", "pca-logreg"})
    assert res["cgc"] == res["scvi"] == {"MEMORY": float(6 * 2**30), "GPU": 1.0}
    assert res["majority"] == res["pca-logreg"] == {"MEMORY": float(6 * 2**30)}
    cpu_only = DaskPool(ExecutorSpec("dask"), notices.append)
    monkeypatch.setattr(cpu_only, "_worker_resources", lambda: workers[1:])
    assert cpu_only.resources_for({"cgc"}) == {"cgc": {"MEMORY": 8e9}}
    assert any("no worker advertises a GPU" in n for n in notices)
    too_big = DaskPool(ExecutorSpec("dask", memory_per_cell="20GiB"))
    monkeypatch.setattr(too_big, "_worker_resources", lambda: workers)
    with pytest.raises(InputError, match="more than any worker's memory limit"):
        too_big.resources_for({"majority"})
