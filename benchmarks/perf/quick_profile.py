"""Where a ``--quick`` run's CPU time goes (issue 16): one process, profiled, as a table.

Runs ``cgcbench run SUITE --models MODEL --quick`` in a fresh child process under
``cProfile`` (with a fresh results directory and MLflow sqlite store, and the data cache
given by ``--cache``) and splits the process's CPU time into: start-up (imports, option
checks), data loading and preparation, the model's own work (fit + predict / embed), the
suite's metrics, plots (UMAP, figures), MLflow tracking and record writing, and the rest.
The first run in a cache pays numba's compilation of the functions that numba may cache;
``--warm`` runs the command twice and profiles the second run, which is what a user sees from
then on. (umap-learn's own ``njit`` functions are not declared cacheable, so scanpy's UMAP
compiles them in every process, warm cache or not.)

Usage::

    python benchmarks/perf/quick_profile.py [--suite annotation] [--model pca-logreg]
        [--dataset pbmc68k_reduced] [--cache DIR] [--warm] [--no-plots]

Not timed assertions: numbers for the issue's table.
"""

from __future__ import annotations

import argparse
import os
import pstats
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

MODEL_CALLS = ("fit_classifier", "predict_labels", "embed_cells", "embed_genes", "fit_perturbation",
               "predict_perturbation", "fit_bulk", "predict_bulk", "fit_integration")
"""Adapter methods whose time is the model's own work."""
PLOT_CALLS = ("umap_coordinates", "umap_plot", "confusion_matrix_plot", "metrics_line",
              "roc_curves_plot")
"""Plotting functions of :mod:`benchmarks.plots`."""


def _child_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def _run(args: argparse.Namespace, prof: Path | None, workdir: Path) -> float:
    cmd = [sys.executable]
    if prof is not None:
        cmd += ["-m", "cProfile", "-o", str(prof)]
    cmd += ["-m", "benchmarks.cli", "run", args.suite, "--models", args.model, "--datasets",
            args.dataset, "--seeds", "0", "--quick", "--quiet",
            "--results-dir", str(workdir / "results"),
            "--tracking-uri", f"sqlite:///{workdir / 'mlflow.db'}"]
    if args.no_plots:
        cmd.append("--no-plots")
    env = dict(os.environ, CGCBENCH_DATA_DIR=str(args.cache), PYTHONPATH=str(ROOT))
    before = _child_cpu()
    subprocess.run(cmd, cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL)
    return _child_cpu() - before


def _cumulative(stats: dict, file_part: str | None, names: tuple[str, ...]) -> float:
    """Largest cumulative time of a function named in ``names`` (its outermost call)."""
    return max((ct for (file, _, fn), (_, _, _, ct, _) in stats.items()
                if fn in names and (file_part is None or file_part in file)), default=0.0)


def _phase_times(prof: Path) -> dict[str, float]:
    """Split the profiled process into start-up, harness, model, plots and the rest of the cell."""
    stats = pstats.Stats(str(prof)).stats  # type: ignore[attr-defined]
    total = max(ct for (_, _, _, ct, _) in stats.values())
    run = _cumulative(stats, "benchmarks/cli.py", ("run",))
    cell = _cumulative(stats, "benchmarks/cell.py", ("execute_cell",))
    model = _cumulative(stats, None, MODEL_CALLS)
    plots = sum(_cumulative(stats, "benchmarks/plots.py", (n,)) for n in PLOT_CALLS)
    return {
        "start-up (imports, options)": total - run,
        "harness around the cell (data, MLflow, records, table)": run - cell,
        "the cell: model (fit + predict/embed)": model,
        "the cell: plots (UMAP, figures)": plots,
        "the cell: metrics and the rest": cell - model - plots,
        "total (profiled)": total,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--suite", default="annotation")
    ap.add_argument("--model", default="pca-logreg")
    ap.add_argument("--dataset", default="pbmc68k_reduced")
    ap.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "cgc_quick_profile")
    ap.add_argument("--warm", action="store_true", help="profile a second run (numba cache warm)")
    ap.add_argument("--no-plots", action="store_true")
    args = ap.parse_args()
    args.cache.mkdir(parents=True, exist_ok=True)
    numba_cache = args.cache / "numba"
    warm = args.warm or (numba_cache.is_dir() and any(numba_cache.iterdir()))
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if args.warm:
            _run(args, None, work / "warm-up")
        prof = work / "run.prof"
        cpu = _run(args, prof, work / "profiled")
        phases = _phase_times(prof)
    total = phases.pop("total (profiled)")
    label = f"{args.suite} · {args.model} · {args.dataset} --quick" + (" --no-plots" if args.no_plots
                                                                       else "")
    w = max(len(k) for k in phases) + 4
    print(f"{label}: process {cpu:.1f} CPU-s (profiled wall {total:.1f} s), "
          f"{'warm' if warm else 'cold'} numba cache in {args.cache}")
    print(f"{'phase'.ljust(w)} | seconds | share")
    print(f"{'-' * w}-|---------|------")
    for k, v in phases.items():
        print(f"{k.ljust(w)} | {v:7.1f} | {100 * v / total:4.0f}%")


if __name__ == "__main__":
    main()
