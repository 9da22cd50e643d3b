"""Abuse and fault battery: try cgcbench as a hostile or careless user would, and count outcomes.

Run it with ``python -m benchmarks.abuse`` (or ``nox -s abuse``). It needs the real-data mirror
(``CGCBENCH_MIRRORS`` or ``../shared/data``) and uses only cheap models (``majority``,
``pca-logreg``), so the whole battery takes a few minutes on two CPU cores. Every case runs the
real ``cgcbench`` command (or, for library-level inputs such as checkpoints and vocabularies,
the real loader) in a scratch directory and is classified as one of:

``clear``
    bad input → one-line error, exit code 2, nothing written; fault or hostile file → handled
    as documented (refused, re-fetched, resume line and fast exit, complete after ``--resume``).
``traceback``
    a Python traceback reached the user, or the process crashed.
``silent``
    bad or hostile input accepted without an error (or a documented promise not kept: a slow
    exit, a missing resume line, a file written where it must not be).
``lost``
    after a fault, a record claims success it does not have, a finished cell is missing after
    ``--resume``, or MLflow holds a different number of runs than there are records.

The table printed at the end counts them per category (bad input, fault, hostile file).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import pickle
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

VERDICTS = ("clear", "traceback", "silent", "lost")
CLI = [sys.executable, "-m", "benchmarks.cli"]
_COUNTER = itertools.count()


@dataclass
class Outcome:
    """The verdict of one case and a short reason."""

    verdict: str
    detail: str = ""


@dataclass
class Workspace:
    """A scratch directory with the data files the cases use."""

    root: Path
    rng: random.Random
    env: dict[str, str] = field(default_factory=dict)
    files: dict[str, Path] = field(default_factory=dict)

    def results(self, name: str) -> Path:
        """A fresh results directory for one case (not created)."""
        return self.root / "results" / name


@dataclass
class Case:
    """One abuse or fault case."""

    name: str
    category: str
    run: Callable[[Workspace], Outcome]


# -- helpers -----------------------------------------------------------------------------------


def _cli(
    ws: Workspace, *args: str, env: dict[str, str] | None = None, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args],
        cwd=ws.root,
        env={**ws.env, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _python(ws: Workspace, code: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=ws.root,
        env=ws.env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _judge_error(proc: subprocess.CompletedProcess[str], written: Path | None = None) -> Outcome:
    """A bad input must give exit 2, one error line, no traceback and write nothing."""
    text = proc.stdout + proc.stderr
    if "Traceback" in text:
        return Outcome("traceback", text.strip().splitlines()[-1][:120])
    if proc.returncode == 0:
        return Outcome("silent", "exit 0")
    if proc.returncode != 2:
        return Outcome(
            "traceback", f"exit {proc.returncode}: {text.strip().splitlines()[-1][:100] if text else ''}"
        )
    if written is not None and written.exists():
        return Outcome("silent", f"exit 2 but {written.name} was written")
    line = next((ln for ln in proc.stderr.splitlines() if "error:" in ln), proc.stderr.strip()[:120])
    return Outcome("clear", " ".join(line.split())[:110])


def _run_args(
    ws: Workspace, name: str, data: str = "user", models: str = "majority", *extra: str
) -> list[str]:
    return [
        "run",
        "annotation",
        "--models",
        models,
        "--datasets",
        str(ws.files[data]),
        "--label-key",
        "cell_type",
        "--results-dir",
        str(ws.results(name)),
        *extra,
    ]


def _bad_run(
    data: str = "user", models: str = "majority", *extra: str, env: dict[str, str] | None = None
) -> Callable[[Workspace], Outcome]:
    def run(ws: Workspace) -> Outcome:
        name = f"bad-{next(_COUNTER)}"
        proc = _cli(ws, *_run_args(ws, name, data, models, *extra), env=env)
        return _judge_error(proc, ws.results(name))

    return run


def _records(results: Path) -> list[dict[str, Any]]:
    root = results / "records"
    if not root.is_dir():
        return []
    return [json.loads(p.read_text()) for p in sorted(root.rglob("*.json")) if not p.name.startswith(".")]


def _mlflow_runs(results: Path) -> int:
    import mlflow
    from mlflow.entities import ViewType

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{results}/mlflow.db")
    exp = client.get_experiment_by_name("cgcbench/annotation")
    if exp is None:
        return 0
    cells = "tags.`cgcbench.record_id` != ''"  # not the invocations' parent runs
    return len(client.search_runs([exp.experiment_id], cells, run_view_type=ViewType.ALL))


def _integrity(results: Path, expected: int | None, mlflow_too: bool = True) -> str | None:
    """Why the results directory lost or misreports data (``None`` when it is sound).

    Right after a kill, MLflow may hold a run of the cell that was in flight (logged, record
    not yet written); ``--resume`` reuses it, so MLflow is compared only when ``mlflow_too``.
    """
    recs = _records(results)
    for rec in recs:
        if rec["status"] not in ("FINISHED", "NOT_APPLICABLE"):
            return f"record {rec['record_id']} is {rec['status']}"
        if any(not (results / a).is_file() for a in rec["artifacts"]):
            return f"record {rec['record_id']} names a missing artifact"
    if expected is not None and len(recs) != expected:
        return f"{len(recs)} records, expected {expected}"
    if mlflow_too and (results / "mlflow.db").exists():
        runs = _mlflow_runs(results)
        if runs != len(recs):
            return f"{runs} MLflow runs for {len(recs)} records"
    return None


# -- data --------------------------------------------------------------------------------------


def _mirror() -> Path:
    first = os.environ.get("CGCBENCH_MIRRORS", "").split(os.pathsep)[0]
    return Path(first) if first else Path(__file__).resolve().parents[2] / "shared" / "data"


def make_files(ws: Workspace) -> None:
    """Write the user files the cases need (from the PBMC subset of the mirror)."""
    import anndata as ad
    import numpy as np
    import scipy.sparse as sp

    src = ad.read_h5ad(_mirror() / "scrna" / "pbmc68k_reduced.h5ad")
    base = src.raw.to_adata()
    base.obs = src.obs[["bulk_labels"]].rename(columns={"bulk_labels": "cell_type"}).copy()
    dense = base.X.toarray() if sp.issparse(base.X) else np.asarray(base.X)
    data = ws.root / "data"
    data.mkdir()

    def write(name: str, adata: ad.AnnData) -> None:
        ws.files[name] = data / f"{name}.h5ad"
        adata.write_h5ad(ws.files[name])

    write("user", base)
    write("one_cell", base[:1].copy())
    one_class = base.copy()
    one_class.obs["cell_type"] = "T cell"
    write("one_class", one_class)
    for name, X in (
        ("complex", dense.astype(np.complex64)),
        ("object", dense.astype(str).astype(object)),
    ):
        bad = base.copy()
        bad.X = X
        write(name, bad)
    counts = np.round(np.expm1(dense))
    huge = base.copy()
    huge.X = counts.copy()
    huge.X[0, 0] = 1e30
    write("huge", huge)
    nan = base.copy()
    nan.X = dense.copy()
    nan.X[0, 0] = np.nan
    write("nan", nan)
    neg = base.copy()
    neg.X = counts.copy()
    neg.X[:5, :5] = -3
    write("negative", neg)
    ws.files["garbage"] = data / "garbage.h5ad"
    ws.files["garbage"].write_text("this is not an HDF5 file\n")


# -- bad inputs --------------------------------------------------------------------------------

BAD_INPUTS: list[tuple[str, Callable[[Workspace], Outcome]]] = [
    ("--seeds -1", _bad_run("user", "majority", "--seeds", "-1")),
    ("--seeds abc", _bad_run("user", "majority", "--seeds", "abc")),
    ("--seeds 0,0 (repeated)", _bad_run("user", "majority", "--seeds", "0,0")),
    ("--set unknown_key=5", _bad_run("user", "majority", "--set", "unknown_key=5")),
    ("--set query_fraction=2", _bad_run("user", "majority", "--set", "query_fraction=2")),
    (
        "--model-set pca-logreg.n_pcs=abc",
        _bad_run("user", "pca-logreg", "--model-set", "pca-logreg.n_pcs=abc"),
    ),
    ("--model-set pca-logreg.nope=1", _bad_run("user", "pca-logreg", "--model-set", "pca-logreg.nope=1")),
    ("--model-set for a model not run", _bad_run("user", "majority", "--model-set", "scvi.n_latent=3")),
    ("--timeout-per-run 0", _bad_run("user", "majority", "--timeout-per-run", "0")),
    ("--timeout-per-run -5", _bad_run("user", "majority", "--timeout-per-run", "-5")),
    (
        "--tracking-uri file:",
        _bad_run("user", "majority", "--tracking-uri", "file:///tmp/cgcbench-abuse-mlruns"),
    ),
    ("MLFLOW_TRACKING_URI=file:", _bad_run("user", "majority", env={"MLFLOW_TRACKING_URI": "file:///tmp/x"})),
    (
        "--tracking-uri unreachable server",
        _bad_run("user", "majority", "--tracking-uri", "http://127.0.0.1:9"),
    ),
    ("unknown model", _bad_run("user", "nope")),
    ("unknown variant", _bad_run("user", "pca-logreg:fast")),
    ("--label-key missing column", _bad_run("user", "majority", "--label-key", "celltype")),
    ("1-cell data set", _bad_run("one_cell")),
    ("label column with one class", _bad_run("one_class")),
    ("complex X", _bad_run("complex")),
    ("object X", _bad_run("object")),
    ("value 1e30 declared counts", _bad_run("huge")),
    ("NaN in X", _bad_run("nan")),
    ("negative values as counts", _bad_run("negative", "majority", "--expression-kind", "counts")),
    ("not an HDF5 file", _bad_run("garbage")),
    ("--expression-kind bogus", _bad_run("user", "majority", "--expression-kind", "bogus")),
    ("--organism martian", _bad_run("user", "majority", "--organism", "martian")),
]


def _unknown_suite(ws: Workspace) -> Outcome:
    return _judge_error(
        _cli(ws, "run", "no-such-suite", "--models", "majority", "--results-dir", str(ws.results("suite"))),
        ws.results("suite"),
    )


def _missing_file(ws: Workspace) -> Outcome:
    return _judge_error(
        _cli(
            ws,
            "run",
            "annotation",
            "--models",
            "majority",
            "--datasets",
            "missing.h5ad",
            "--results-dir",
            str(ws.results("missing")),
        ),
        ws.results("missing"),
    )


# -- hostile files -----------------------------------------------------------------------------

_CARD = """\
name = "{name}"
version = "1"
title = "hostile"
organism = "human"
gene_id_type = "symbol"
license = "CC0"
kind = "grn"

[[files]]
name = "{file}"
{where}
"""


def _hostile_card(file: str, where: str) -> Callable[[Workspace], Outcome]:
    def run(ws: Workspace) -> Outcome:
        cards = ws.root / f"cards-{abs(hash(file)) % 10**6}"
        cards.mkdir()
        payload = ws.root / "payload.txt"
        payload.write_text("planted")
        (cards / "evil.toml").write_text(
            _CARD.format(name="evil", file=file, where=where.format(uri=payload.as_uri()))
        )
        cache = ws.root / "deep" / "a" / "cache"
        proc = _cli(
            ws,
            "datasets",
            "fetch",
            "evil",
            env={"CGCBENCH_CARDS": str(cards), "CGCBENCH_DATA_DIR": str(cache)},
        )
        if list(ws.root.rglob("escaped.txt")):
            return Outcome("silent", "a file was written outside the cache")
        return _judge_error(proc)

    return run


def _crafted_train_state(ws: Workspace) -> Outcome:
    marker = ws.root / "pwned-train-state"
    proc = _python(
        ws,
        f"""
        import torch
        from pathlib import Path
        from cgc.train.checkpoint import MANIFEST, load_train_state
        from cgc.utils import sha256_file
        class P:
            def __reduce__(self):
                return (exec, ("open({str(marker)!r}, 'w').write('x')",))
        ck = Path({str(ws.root / "ck-evil")!r}); ck.mkdir()
        torch.save({{"step": 1, "rng": P()}}, ck / "train_state.pt")
        (ck / MANIFEST).write_text(sha256_file(ck / "train_state.pt") + "  train_state.pt\\n")
        try:
            load_train_state(ck)
            print("LOADED")
        except Exception as exc:
            print("REFUSED", type(exc).__name__, exc)
    """,
    )
    if marker.exists():
        return Outcome("silent", "the crafted train_state.pt ran code")
    return _judge_library(proc, "CheckpointError")


def _corrupt_checkpoint(ws: Workspace) -> Outcome:
    proc = _python(
        ws,
        f"""
        import torch
        from pathlib import Path
        from cgc.train.checkpoint import MANIFEST, load_train_state
        from cgc.utils import sha256_file
        ck = Path({str(ws.root / "ck-corrupt")!r}); ck.mkdir()
        torch.save({{"step": 1, "rng": [{{"torch": torch.get_rng_state()}}]}}, ck / "train_state.pt")
        (ck / MANIFEST).write_text(sha256_file(ck / "train_state.pt") + "  train_state.pt\\n")
        data = bytearray((ck / "train_state.pt").read_bytes()); data[-20] ^= 0xFF
        (ck / "train_state.pt").write_bytes(bytes(data))
        try:
            load_train_state(ck)
            print("LOADED")
        except Exception as exc:
            print("REFUSED", type(exc).__name__, exc)
    """,
    )
    return _judge_library(proc, "CheckpointError")


def _hostile_vocab(ws: Workspace) -> Outcome:
    marker = ws.root / "pwned-vocab"
    vocab = ws.root / "vocab"
    vocab.mkdir()
    src = _mirror() / "vocab" / "geneformer"
    for name in ("token_dictionary.pkl", "gene_median_dictionary.pkl", "gene_name_id_dict.pkl"):
        shutil.copyfile(src / f"geneformer_{name}", vocab / name)

    class Payload:
        def __reduce__(self) -> tuple[Any, ...]:
            return (os.system, (f"touch {marker}",))

    (vocab / "token_dictionary.pkl").write_bytes(pickle.dumps({"<pad>": Payload()}))
    proc = _python(
        ws,
        f"""
        from baselines.geneformer_model import GeneformerVocab
        try:
            GeneformerVocab.load({str(vocab)!r})
            print("LOADED")
        except Exception as exc:
            print("REFUSED", type(exc).__name__, exc)
    """,
    )
    if marker.exists():
        return Outcome("silent", "the hostile vocabulary ran code")
    return _judge_library(proc, "InputError")


def _judge_library(proc: subprocess.CompletedProcess[str], expected: str) -> Outcome:
    out = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""
    if out.startswith("REFUSED " + expected):
        return Outcome("clear", out[:110])
    if out.startswith("LOADED"):
        return Outcome("silent", "loaded without an error")
    if "Traceback" in proc.stderr:
        return Outcome("traceback", proc.stderr.strip().splitlines()[-1][:110])
    return Outcome("traceback", (out or proc.stderr.strip())[:110])


def _hostile_record(ws: Workspace) -> Outcome:
    """A record whose model name is HTML and whose artifacts reach outside its directory."""
    from PIL import Image

    src = next((Path(__file__).resolve().parents[1] / "leaderboard" / "results" / "records").rglob("*.json"))
    rec = json.loads(src.read_text())
    results = ws.root / "hostile-records"
    secret = ws.root / "secret_umap.png"
    Image.new("RGB", (4, 4), (255, 0, 0)).save(secret)
    (results / "artifacts" / "x").mkdir(parents=True)
    os.symlink(secret, results / "artifacts" / "x" / "link_umap.png")
    (results / "artifacts" / "x" / "p.svg").write_text("<svg><script>alert(1)</script></svg>")
    rec["model"] = {**rec["model"], "label": "<img src=x onerror=alert(1)>", "name": "<script>x</script>"}
    rec["record_id"] = f"{rec['suite']}/{rec['dataset']['name']}/evil/seed0-0"
    rec["status"] = "FINISHED"
    rec["artifacts"] = [str(secret), "../secret_umap.png", "artifacts/x/link_umap.png", "artifacts/x/p.svg"]
    path = results / "records" / "evil.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(rec))
    out = ws.root / "site"
    proc = _cli(ws, "leaderboard", "build", "--records", str(results), "--out", str(out))
    if "Traceback" in proc.stderr:
        return Outcome("traceback", proc.stderr.strip().splitlines()[-1][:110])
    if proc.returncode != 0:
        return Outcome("traceback", f"exit {proc.returncode}")
    copied = [p for p in (out / "assets").rglob("*") if p.is_file()] if (out / "assets").exists() else []
    if copied or list(out.rglob("*.svg")):
        return Outcome("silent", f"copied {[p.name for p in copied]}")
    md = (out / "README.md").read_text()
    if "<img" in md or "<script" in md:
        return Outcome("silent", "raw HTML in README.md")
    return Outcome("clear", "4 artifacts refused, names escaped")


def _corrupt_cache(ws: Workspace) -> Outcome:
    """A flipped byte in a cached copy of a card's file: replaced, never used."""
    cache = ws.root / "cache-corrupt"
    env = {"CGCBENCH_DATA_DIR": str(cache)}
    proc = _cli(ws, "datasets", "fetch", "pbmc68k_reduced", "--copy", env=env)
    cached = cache / "pbmc68k_reduced" / "pbmc68k_reduced.h5ad"
    if proc.returncode != 0 or not cached.is_file():
        return Outcome("traceback", f"fetch --copy failed: {proc.stderr.strip()[-100:]}")
    data = bytearray(cached.read_bytes())
    data[len(data) // 2] ^= 0xFF
    cached.write_bytes(bytes(data))
    proc = _cli(ws, "datasets", "verify", "pbmc68k_reduced", env=env)
    if "Traceback" in proc.stderr:
        return Outcome("traceback", proc.stderr.strip().splitlines()[-1][:110])
    if cached.exists() and cached.read_bytes() == bytes(data):
        return Outcome("silent", "the corrupted cached file is still there")
    return Outcome("clear", "corrupted cached copy removed; mirror copy used")


def _corrupt_simulation(ws: Workspace) -> Outcome:
    proc = _python(
        ws,
        f"""
        import os
        os.environ["CGCBENCH_DATA_DIR"] = {str(ws.root / "cache-sim")!r}
        import anndata as ad, numpy as np
        import benchmarks.simulate as sim
        from benchmarks.data.cards import get_card
        def tiny(params, n_jobs=None):
            out = ad.AnnData(X=np.random.default_rng(0).poisson(1.0, (20, 5)).astype(np.float32))
            out.uns["simulation"] = {{}}
            return out
        sim.simulate = tiny
        card = get_card("sergio_batches")
        path = sim.materialize(card)
        data = bytearray(path.read_bytes()); data[len(data) // 2] ^= 0xFF
        path.write_bytes(bytes(data))
        try:
            sim.materialize(card)
            print("LOADED")
        except Exception as exc:
            print("REFUSED", type(exc).__name__, exc)
    """,
    )
    return _judge_library(proc, "ChecksumError")


# -- faults ------------------------------------------------------------------------------------


def _matrix(ws: Workspace, results: Path, seeds: str, *extra: str) -> list[str]:
    """The command of a two-model matrix on the PBMC user file."""
    return [
        *CLI,
        "run",
        "annotation",
        "--models",
        "majority,pca-logreg",
        "--datasets",
        str(ws.files["user"]),
        "--label-key",
        "cell_type",
        "--seeds",
        seeds,
        "--results-dir",
        str(results),
        *extra,
    ]


def _kill_at_random(sig: signal.Signals) -> Callable[[Workspace], Outcome]:
    def run(ws: Workspace) -> Outcome:
        results = ws.results(f"kill-{sig.name}")
        delay = ws.rng.uniform(6.0, 20.0)
        proc = subprocess.Popen(
            _matrix(ws, results, "0,1,2"),
            cwd=ws.root,
            env=ws.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        time.sleep(delay)
        if proc.poll() is not None:
            return Outcome("clear", f"finished before the kill at {delay:.1f} s")
        sent = time.monotonic()
        proc.send_signal(sig)
        try:
            _, err = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            return Outcome("silent", "did not exit within 60 s")
        took = time.monotonic() - sent
        if "Traceback" in err:
            return Outcome("traceback", err.strip().splitlines()[-1][:110])
        problem = _integrity(results, None, mlflow_too=False)
        if problem:
            return Outcome("lost", f"after the kill: {problem}")
        if sig != signal.SIGKILL:
            if "rerun with --resume" not in err:
                return Outcome("silent", "no resume line")
            if took > 5.0 or proc.returncode != 130:
                return Outcome("silent", f"exit {proc.returncode} after {took:.1f} s")
        done = len(_records(results))
        resume = subprocess.run(
            [*_matrix(ws, results, "0,1,2"), "--resume"],
            cwd=ws.root,
            env=ws.env,
            capture_output=True,
            text=True,
            timeout=900,
        )
        if resume.returncode != 0:
            return Outcome(
                "traceback" if "Traceback" in resume.stderr else "lost", f"resume exit {resume.returncode}"
            )
        problem = _integrity(results, 6)
        if problem:
            return Outcome("lost", f"after --resume: {problem}")
        if list(results.glob(".staging-*")):
            return Outcome("lost", "staging directories left after --resume")
        return Outcome(
            "clear", f"killed at {delay:.1f} s ({done} done), exit after {took:.1f} s; resumed to 6"
        )

    return run


def _concurrent(ws: Workspace) -> Outcome:
    results = ws.results("concurrent")
    procs = [
        subprocess.Popen(
            _matrix(ws, results, seeds),
            cwd=ws.root,
            env=ws.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for seeds in ("0,1", "1,2")
    ]
    errs = [p.communicate(timeout=900)[1] for p in procs]
    if any("Traceback" in e for e in errs):
        return Outcome("traceback", next(e for e in errs if "Traceback" in e).strip().splitlines()[-1][:110])
    if any(p.returncode != 0 for p in procs):
        return Outcome("lost", f"exit codes {[p.returncode for p in procs]}")
    problem = _integrity(results, 6)
    return Outcome("lost", problem) if problem else Outcome("clear", "6 records, 6 MLflow runs")


def _timeout(ws: Workspace) -> Outcome:
    results = ws.results("timeout")
    limit = 1.0
    t0 = time.monotonic()
    proc = subprocess.run(
        _matrix(ws, results, "0", "--timeout-per-run", str(limit), "--offline"),
        cwd=ws.root,
        env=ws.env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if "Traceback" in proc.stderr:
        return Outcome("traceback", proc.stderr.strip().splitlines()[-1][:110])
    recs = _records(results)
    walls = [r["provenance"]["resources"]["wall_time_s"] for r in recs if r["status"] == "FAILED"]
    if proc.returncode != 1 or len(walls) != 2:
        return Outcome(
            "silent",
            f"exit {proc.returncode}, {len(walls)} timed-out records in {time.monotonic() - t0:.0f} s",
        )
    if not all(limit - 0.1 <= w <= limit + 2.0 for w in walls):
        return Outcome("silent", f"recorded wall times {walls} for a {limit} s limit")
    return Outcome("clear", f"both cells killed at {walls} s (limit {limit} s)")


def _offline_uri(ws: Workspace) -> Outcome:
    proc = _cli(ws, *_run_args(ws, "offline", "user", "majority", "--offline", "--quick"))
    if proc.returncode != 0:
        return Outcome("traceback", f"exit {proc.returncode}")
    if "sqlite:///" in proc.stdout or (ws.results("offline") / "mlflow.db").exists():
        return Outcome("silent", "an unused MLflow URI was printed")
    return Outcome("clear", "no MLflow URI printed")


def cases() -> list[Case]:
    """The whole battery, in the order it runs."""
    out = [Case(name, "bad input", fn) for name, fn in BAD_INPUTS]
    out += [
        Case("unknown suite", "bad input", _unknown_suite),
        Case("missing data file", "bad input", _missing_file),
    ]
    out += [
        Case(
            "card file name ../../escaped.txt",
            "hostile file",
            _hostile_card("../../escaped.txt", 'urls = ["{uri}"]'),
        ),
        Case(
            "card mirror_path ../../",
            "hostile file",
            _hostile_card("x.txt", 'mirror_path = "../../etc/passwd"'),
        ),
        Case("crafted train_state.pt (pickle RCE)", "hostile file", _crafted_train_state),
        Case("hostile Geneformer vocabulary pickle", "hostile file", _hostile_vocab),
        Case("hostile record (HTML name, ../ and symlink artifacts, SVG)", "hostile file", _hostile_record),
        Case("corrupted checkpoint file", "fault", _corrupt_checkpoint),
        Case("corrupted cached download", "fault", _corrupt_cache),
        Case("corrupted simulated h5ad", "fault", _corrupt_simulation),
        Case("--offline prints no MLflow URI", "bad input", _offline_uri),
        Case("--isolate --timeout-per-run 1", "fault", _timeout),
        Case("two concurrent writers, overlapping cells", "fault", _concurrent),
        Case("kill -9 at a random point, then --resume", "fault", _kill_at_random(signal.SIGKILL)),
        Case("kill -TERM at a random point, then --resume", "fault", _kill_at_random(signal.SIGTERM)),
        Case("kill -INT at a random point, then --resume", "fault", _kill_at_random(signal.SIGINT)),
    ]
    return out


def _table(results: list[tuple[Case, Outcome, float]]) -> str:
    lines = [f"{'case':<62} {'category':<13} {'verdict':<9} {'s':>5}  detail"]
    for case, outcome, secs in results:
        lines.append(
            f"{case.name[:62]:<62} {case.category:<13} {outcome.verdict:<9} {secs:5.0f}  {outcome.detail}"
        )
    lines += [
        "",
        f"{'category':<13} {'tried':>5} {'clear (exit 2 / handled)':>25} {'traceback':>10} "
        f"{'silently accepted':>18} {'data lost':>10}",
    ]
    cats = sorted({c.category for c, _, _ in results}) + ["all"]
    for cat in cats:
        rows = [o for c, o, _ in results if cat in ("all", c.category)]
        counts = [sum(o.verdict == v for o in rows) for v in VERDICTS]
        lines.append(
            f"{cat:<13} {len(rows):>5} {counts[0]:>25} {counts[1]:>10} {counts[2]:>18} {counts[3]:>10}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the battery and print the table; exit 1 unless every case is ``clear``."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.abuse", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--seed", type=int, default=int(time.time()) % 10000, help="seed of the random kill times"
    )
    parser.add_argument("-k", default="", help="run only cases whose name contains this text")
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory")
    args = parser.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="cgcbench-abuse-"))
    env = {
        **os.environ,
        "COLUMNS": "200",
        "CGCBENCH_DATA_DIR": str(root / "cache"),
        "CGCBENCH_MIRRORS": str(_mirror()),
    }
    for var in ("MLFLOW_TRACKING_URI", "CGCBENCH_CARDS", "CGCBENCH_RESULTS"):
        env.pop(var, None)
    ws = Workspace(root, random.Random(args.seed), env)
    print(f"abuse battery: seed {args.seed}, scratch {root}", flush=True)
    make_files(ws)
    done: list[tuple[Case, Outcome, float]] = []
    try:
        for case in cases():
            if args.k and args.k not in case.name:
                continue
            t0 = time.monotonic()
            try:
                outcome = case.run(ws)
            except Exception as exc:  # the battery itself must go on
                outcome = Outcome("traceback", f"battery: {type(exc).__name__}: {exc}"[:110])
            done.append((case, outcome, time.monotonic() - t0))
            print(f"  {outcome.verdict:<9} {case.name}: {outcome.detail}", flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    print()
    print(_table(done))
    return 0 if all(o.verdict == "clear" for _, o, _ in done) else 1


if __name__ == "__main__":
    sys.exit(main())
