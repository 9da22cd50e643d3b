"""Scale-out: the run matrix and corpus building on Dask vs in-process (printed, not asserted).

Tables:

1. matrix wall time of the same cells (annotation on PBMC 68k-reduced: majority + pca-logreg,
   ``--quick``, seeds 0-1) in-process and on a LocalCluster of 1 and 2 worker processes;
   cluster start-up is timed apart;
2. per-cell scheduling overhead: the same cheap cells (majority, 6 seeds) in-process and on one
   Dask worker, (dask - in-process) / cells;
3. corpus build cells/s from the h5ad and from a SOMA experiment (``tiledbsoma.io.from_h5ad``
   of it), in-process and on 1 and 2 Dask workers;
4. peak RSS of a corpus build (fresh process) at two corpus sizes (1x and 4x the PBMC 3k cells,
   fixed chunk and shard size): it should not grow with the corpus.

Usage::

    python benchmarks/perf/scale_out.py [--data ../shared/data] [--skip-matrix]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parents[2]


def _data_dir() -> Path:
    first = os.environ.get("CGCBENCH_MIRRORS", "").split(os.pathsep)[0]
    return Path(first) if first else HERE.parent / "shared" / "data"


def _table(title: str, header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    print(f"\n{title}")
    print("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
    for r in rows:
        print("  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)))


def _matrix_user_file(data: Path, work: Path) -> Path:
    import anndata as ad

    src = ad.read_h5ad(data / "scrna" / "pbmc68k_reduced.h5ad")
    out = src.raw.to_adata()
    out.obs = src.obs[["bulk_labels"]].rename(columns={"bulk_labels": "cell_type"}).copy()
    path = work / "pbmc.h5ad"
    out.write_h5ad(path)
    return path


def _runner(user_file: Path, results: Path, models: list[str], seeds: list[int], executor=None):
    from benchmarks.data.load import UserKeys
    from benchmarks.executors import ExecutorSpec
    from benchmarks.runner import MatrixRunner, RunRequest

    req = RunRequest(suite="annotation", models=models, datasets=[str(user_file)], seeds=seeds,
                     keys=UserKeys(label_key="cell_type"), quick=True, results_dir=results,
                     offline=True, executor=executor or ExecutorSpec())
    runner = MatrixRunner(req)
    prepared = runner.prepare()
    runner.results_dir.mkdir(parents=True, exist_ok=True)
    return runner, prepared


def _time_matrix(user_file: Path, work: Path, models: list[str], seeds: list[int],
                 workers: int | None, tag: str) -> tuple[float, float, int]:
    """(cluster start-up s, matrix s, cells) with only the cells inside the matrix time."""
    from benchmarks.executors import DaskPool, ExecutorSpec

    if workers is None:
        runner, prepared = _runner(user_file, work / tag, models, seeds)
        t = time.perf_counter()
        recs = [runner._run_cell(item, spec, None) for item in prepared for spec in runner.specs]
        return 0.0, time.perf_counter() - t, len(recs)
    spec = ExecutorSpec("dask", workers=workers)
    runner, prepared = _runner(user_file, work / tag, models, seeds, spec)
    t0 = time.perf_counter()
    with DaskPool(spec) as pool:
        t1 = time.perf_counter()
        recs = pool.run_matrix(runner, prepared, None)
        t2 = time.perf_counter()
    assert all(r["status"] == "FINISHED" for r in recs), [r.get("error") for r in recs]
    return t1 - t0, t2 - t1, len(recs)


def matrix_tables(data: Path, work: Path) -> None:
    user_file = _matrix_user_file(data, work)
    models, seeds = ["majority", "pca-logreg"], [0, 1]
    rows = []
    for label, workers in (("in-process", None), ("dask, 1 worker", 1), ("dask, 2 workers", 2)):
        start, wall, n = _time_matrix(user_file, work, models, seeds, workers, label.replace(" ", "_"))
        rows.append([label, str(n), f"{start:.1f}", f"{wall:.1f}", f"{wall / n:.2f}"])
    _table("matrix: annotation, majority + pca-logreg (--quick), seeds 0-1, PBMC 68k-reduced",
           ["executor", "cells", "cluster start s", "matrix wall s", "s / cell"], rows)
    seeds6 = list(range(6))
    rows = []
    for label, workers in (("in-process", None), ("dask, 1 worker", 1)):
        tag = f"ovh_{workers}"
        _, wall, n = _time_matrix(user_file, work, ["majority"], seeds6, workers, tag)
        ends = sorted(json.loads(p.read_text())["provenance"]["ended_at_ms"]
                      for p in (work / tag / "records").rglob("*.json"))
        steady = (ends[-1] - ends[0]) / 1000 / (n - 1)  # after the first cell (worker imports)
        rows.append([label, f"{wall:.2f}", f"{wall / n:.3f}", f"{steady:.3f}"])
    _table("per-cell scheduling overhead (majority control, 6 cells; steady = after the first cell)",
           ["executor", "matrix wall s", "s / cell", "steady s / cell"], rows)


def _priors(data: Path, h5ad: Path, work: Path):
    from cgc import GenePriors
    from cgc.priors import HashingTextEncoder, PriorSources

    path = work / "priors"
    if not path.exists():
        GenePriors.build(corpus=[h5ad], text_encoder=HashingTextEncoder(8),
                         **PriorSources.from_dir(data).as_kwargs()).save(path)
    return GenePriors.load(path)


def corpus_tables(data: Path, work: Path) -> None:
    import tiledbsoma.io

    from cgc import build_corpus
    from cgc.train.parallel import executor_map
    from cgc.train.sources import SomaInput

    h5ad = data / "scrna" / "pbmc3k_raw.h5ad"
    priors = _priors(data, h5ad, work)
    uri = str(work / "pbmc3k_soma")
    tiledbsoma.io.from_h5ad(uri, str(h5ad), measurement_name="RNA")
    kw = {"shard_size": 1000, "chunk_size": 512, "save_priors": False}
    rows = []
    for kind, inputs in (("h5ad", [h5ad, h5ad]), ("SOMA", [SomaInput(uri), SomaInput(uri)])):
        for label, executor, workers in (("in-process", "local", None), ("dask, 1 worker", "dask", 1),
                                         ("dask, 2 workers", "dask", 2)):
            with executor_map(executor, workers) as map_fn:
                out = work / f"c-{kind}-{executor}-{workers}"
                t = time.perf_counter()
                build_corpus(inputs, out, priors, map_fn=map_fn, **kw)
                dt = time.perf_counter() - t
            n = sum(s["n_cells"] for s in json.loads((out / "corpus.json").read_text())["sources"])
            rows.append([kind, label, str(n), f"{dt:.1f}", f"{n / dt:.0f}"])
            shutil.rmtree(out)
    _table("corpus build: PBMC 3k raw counts x2 inputs (32,738 genes), chunk 512, cluster start excluded",
           ["input", "executor", "cells", "wall s", "cells / s"], rows)
    memory_table(data, work, uri)


def memory_table(data: Path, work: Path, uri: str | None = None) -> None:
    h5ad = data / "scrna" / "pbmc3k_raw.h5ad"
    _priors(data, h5ad, work)
    if uri is None:
        import tiledbsoma.io

        uri = str(work / "pbmc3k_soma")
        tiledbsoma.io.from_h5ad(uri, str(h5ad), measurement_name="RNA")
    peak_rows = []
    for kind in ("h5ad", "soma"):
        for copies in (1, 4):
            peak, before, dt, n = _peak_build(work, h5ad, uri, kind, copies)
            peak_rows.append([kind, str(n), f"{before:.0f}", f"{peak:.0f}", f"{peak - before:.0f}",
                              f"{dt:.1f}"])
    _table("corpus builder memory (fresh process, in-process executor, chunk 512, shard 1000; RSS sampled "
           "every 10 ms during the build)",
           ["input", "cells", "RSS before build MiB", "peak RSS MiB", "build adds MiB", "wall s"],
           peak_rows)


_PEAK_CHILD = r"""
import json, resource, sys, time
from pathlib import Path
from cgc import GenePriors, build_corpus
from cgc.train.sources import SomaInput
work, h5ad, uri, kind, copies = Path(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
priors = GenePriors.load(work / "priors")
import scipy.sparse, anndata, numpy  # the imports the build uses, before the baseline
if kind == "soma":
    import tiledbsoma
inputs = [h5ad] * copies if kind == "h5ad" else [SomaInput(uri)] * copies
import gc, threading, psutil
gc.collect()
proc, peak, stop = psutil.Process(), [0], threading.Event()
base = proc.memory_info().rss
def sample():
    while not stop.is_set():
        peak[0] = max(peak[0], proc.memory_info().rss)
        time.sleep(0.01)
th = threading.Thread(target=sample, daemon=True)
th.start()
t = time.perf_counter()
out = build_corpus(inputs, work / f"peak-{kind}-{copies}", priors, shard_size=1000, chunk_size=512,
                   save_priors=False)
dt = time.perf_counter() - t
stop.set()
th.join()
n = sum(s["n_cells"] for s in json.loads((out / "corpus.json").read_text())["sources"])
print(json.dumps({"peak_kb": peak[0] / 1024, "before_kb": base / 1024, "s": dt, "n": n}))
"""


def _peak_build(work: Path, h5ad: Path, uri: str, kind: str, copies: int
                ) -> tuple[float, float, float, int]:
    env = {**os.environ, "PYTHONPATH": str(HERE)}
    proc = subprocess.run([sys.executable, "-c", _PEAK_CHILD, str(work), str(h5ad), uri, kind, str(copies)],
                          capture_output=True, text=True, env=env, check=True)
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    shutil.rmtree(work / f"peak-{kind}-{copies}", ignore_errors=True)
    return out["peak_kb"] / 1024, out["before_kb"] / 1024, out["s"], out["n"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=_data_dir())
    ap.add_argument("--skip-matrix", action="store_true")
    ap.add_argument("--skip-corpus", action="store_true")
    ap.add_argument("--only-memory", action="store_true", help="only the corpus builder memory table")
    args = ap.parse_args()
    os.environ.setdefault("CGCBENCH_DATA_DIR", tempfile.mkdtemp(prefix="cgc_scale_cache_"))
    work = Path(tempfile.mkdtemp(prefix="cgc_scale_"))
    print(f"machine: {os.cpu_count()} CPUs; "
          f"this process RSS at start {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")
    try:
        if not args.skip_matrix:
            matrix_tables(args.data, work)
        if args.only_memory:
            memory_table(args.data, work)
        elif not args.skip_corpus:
            corpus_tables(args.data, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
