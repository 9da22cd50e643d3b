"""The ``cgcbench`` command line (typer + rich).

``cgcbench run SUITE --models a,b --datasets x,y --seeds 0,1,2`` runs a benchmark matrix;
``cgcbench list models|suites|datasets`` and ``cgcbench datasets list|fetch|verify`` inspect
the registries. Bad input prints one line naming the file, field and fix, and exits with 2.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import threading
import time
import warnings
from pathlib import Path
from typing import Annotated, Any

RESUME_LINE = "interrupted: finished cells are recorded; rerun with --resume to complete"


def _interrupted_while_starting(signum: int, frame: object) -> None:
    """Ctrl-C/SIGTERM while the command is still importing: nothing is written yet; leave quietly."""
    sys.stderr.write(RESUME_LINE + "\n")
    sys.stderr.flush()
    os._exit(130)


# imports below take seconds: an interrupt meanwhile must not print a traceback (restored at the end)
_STARTUP_HANDLERS = (
    {s: signal.signal(s, _interrupted_while_starting) for s in (signal.SIGINT, signal.SIGTERM)}
    if threading.current_thread() is threading.main_thread()
    else {}
)

import typer  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.markup import escape  # noqa: E402
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn  # noqa: E402
from rich.table import Table  # noqa: E402
from rich.text import Text  # noqa: E402

from benchmarks.errors import CgcbenchError, InputError  # noqa: E402
from benchmarks.summary import summarize  # noqa: E402
from benchmarks.weights_cli import app as weights_app  # noqa: E402

try:  # newer typer vendors click as ``typer._click`` and raises its usage errors, not click's
    from typer._click.exceptions import ClickException
except ImportError:  # older typer runs on click itself
    from click.exceptions import ClickException


def _console(stderr: bool) -> Console:
    """A rich console; wide enough for result tables when output is not a terminal."""
    probe = Console(stderr=stderr)
    return probe if probe.is_terminal else Console(stderr=stderr, width=int(os.environ.get("COLUMNS", 160)))


console = _console(stderr=False)
err_console = _console(stderr=True)

app = typer.Typer(
    name="cgcbench",
    help="Train, evaluate and compare single-cell foundation models (CGC and baselines).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
list_app = typer.Typer(help="List registered models, suites or datasets.", no_args_is_help=True)
datasets_app = typer.Typer(help="Dataset registry: list, fetch and verify cards.", no_args_is_help=True)
app.add_typer(list_app, name="list")
app.add_typer(datasets_app, name="datasets")
app.add_typer(weights_app, name="weights")


def _print_version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        from benchmarks import __version__

        try:
            installed = version("cgcbench")
        except PackageNotFoundError:
            installed = __version__
        console.print(f"cgcbench {installed}")
        raise typer.Exit(0)


@app.callback()
def _main(
    version: Annotated[
        bool,
        typer.Option("--version", help="Print the version and exit.", is_eager=True, callback=_print_version),
    ] = False,
) -> None:
    """Train, evaluate and compare single-cell foundation models (CGC and baselines)."""


def _mount_optional() -> None:
    """Mount the leaderboard group and ``datasets simulate`` (they import heavier modules)."""
    from benchmarks.ablate import ablate_command
    from benchmarks.leaderboard.cli import app as leaderboard_app
    from benchmarks.simulate.cli import simulate_command

    app.add_typer(leaderboard_app, name="leaderboard")
    app.command("ablate")(ablate_command)
    datasets_app.command("simulate")(simulate_command)


_mount_optional()


def _split_csv(value: str | None) -> list[str]:
    return [v.strip() for v in (value or "").split(",") if v.strip()]


def _parse_seeds(value: str) -> list[int]:
    try:
        seeds = [int(s) for s in _split_csv(value)]
    except ValueError as exc:
        raise InputError(f"--seeds {value!r}: expected comma-separated integers, e.g. 0,1,2") from exc
    if not seeds:
        raise InputError("--seeds is empty; pass e.g. --seeds 0,1,2")
    return seeds


def _parse_settings(pairs: list[str], flag: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise InputError(f"{flag} {pair!r}: expected KEY=VALUE")
        value: Any = raw
        for conv in (int, float):
            try:
                value = conv(raw)
                break
            except ValueError:
                continue
        if raw.lower() in ("true", "false"):
            value = raw.lower() == "true"
        out[key] = value
    return out


@list_app.command("models")
def list_models() -> None:
    """List model adapters with their task kinds and variants; flag missing packages."""
    from benchmarks.data.preflight import package_gap
    from benchmarks.registry import model_class, model_names

    table = Table(title="models")
    for col in ("name", "task kinds", "variants", "description"):
        table.add_column(col)
    for name in model_names():
        try:
            cls = model_class(name)
        except ImportError as exc:
            table.add_row(name, f"[red]unavailable: {exc}[/red]", "", "")
            continue
        kinds = ", ".join(sorted(k.value for k in cls.capabilities.task_kinds))
        label = f"{name} [dim](control)[/dim]" if cls.is_control else name
        gap = package_gap(cls)
        if gap:
            table.add_row(label, f"[red]unavailable: {escape(gap)}[/red]", ", ".join(cls.variants) or "—", "")
            continue
        table.add_row(label, kinds, ", ".join(cls.variants) or "—", cls.description)
    console.print(table)


@list_app.command("suites")
def list_suites() -> None:
    """List benchmark suites with their metrics and default datasets."""
    from benchmarks.registry import suite_class, suite_names

    table = Table(title="suites")
    for col in ("name", "needs", "headline metrics", "default datasets"):
        table.add_column(col)
    for name in suite_names():
        cls = suite_class(name)
        table.add_row(
            name,
            ", ".join(sorted(k.value for k in cls.required_kinds)),
            ", ".join(cls.headline_metrics),
            ", ".join(cls.default_datasets),
        )
    console.print(table)


@list_app.command("datasets")
def list_datasets_cmd() -> None:
    """List dataset cards (same as ``cgcbench datasets list``)."""
    datasets_list()


@datasets_app.command("list")
def datasets_list(
    kind: Annotated[str | None, typer.Option(help="only cards of this kind (scrna, grn, …)")] = None,
) -> None:
    """List dataset cards."""
    from benchmarks.data.cards import all_cards

    table = Table(title="datasets")
    for col in ("name", "kind", "organism", "genes", "version", "license", "tasks"):
        table.add_column(col)
    for card in all_cards().values():
        if kind and card.kind != kind:
            continue
        table.add_row(
            card.name,
            card.kind,
            card.organism,
            card.gene_id_type,
            card.version,
            card.license,
            ", ".join(card.tasks),
        )
    console.print(table)


@datasets_app.command("fetch")
def datasets_fetch(
    names: Annotated[list[str], typer.Argument(help="card names")],
    copy: Annotated[bool, typer.Option(help="copy mirrored files into the cache")] = False,
) -> None:
    """Resolve (download if needed) the files of the named cards, verifying sha256."""
    from benchmarks.data.cards import get_card
    from benchmarks.data.fetch import copy_into_cache, resolve_file

    for name in names:
        card = get_card(name)
        for spec in card.files:
            path = resolve_file(card, spec, on_event=lambda m: err_console.print(f"[dim]{m}[/dim]"))
            if copy:
                path = copy_into_cache(path, card, spec)
            console.print(f"{card.name}/{spec.name}: {path}")


@datasets_app.command("verify")
def datasets_verify(
    names: Annotated[list[str] | None, typer.Argument(help="card names (default: all)")] = None,
) -> None:
    """Check the sha256 of every locally available file of the named (or all) cards."""
    from benchmarks.data.cards import all_cards, get_card
    from benchmarks.data.fetch import verify

    cards = [get_card(n) for n in names] if names else list(all_cards().values())
    table = Table(title="dataset files")
    for col in ("dataset", "file", "status", "where"):
        table.add_column(col, overflow="fold")
    missing = 0
    for card in cards:
        for file, status, where in verify(card):
            missing += status == "missing"
            style = "red" if status == "missing" else "green"
            table.add_row(card.name, file, f"[{style}]{status}[/{style}]", where)
    console.print(table)
    if missing:
        err_console.print(f"{missing} file(s) not available locally (not an error for download-only cards)")


WIDE_TABLE = 120
"""Below this console width the results table takes its narrow layout."""


def _status_text(row: Any) -> str:
    """Statuses, the reasons for ``NOT_APPLICABLE`` and the first line of each failure."""
    status = ", ".join(f"{k.lower()}×{v}" for k, v in sorted(row.statuses.items()))
    why = [*row.reasons, *(e.splitlines()[0] for e in row.errors)]
    return status + (f" ({'; '.join(why)})" if why else "")


def _results_table(
    records: list[dict[str, Any]], metrics: tuple[str, ...], suite: str, width: int | None = None
) -> Table:
    """The results table: wide (one column each) or, below :data:`WIDE_TABLE` columns, narrow.

    Model and data-set names are never cut. The narrow layout puts each data set on a row of
    its own above its models, the init, seeds and status under the model name, mean and sd on
    two lines and metric names broken at their underscores.
    """
    rows = summarize(records, metrics)
    table = Table(title=f"{suite}: mean ± sd over seeds")
    names = [f"{r.model} (control)" if r.is_control else r.model for r in rows]
    name_width = max([5, *map(len, names), *(len(r.dataset) for r in rows)])
    if width is not None and width < WIDE_TABLE:
        table.add_column("data set / model", overflow="fold", min_width=name_width)  # names fit whole
        for m in metrics:
            table.add_column(m.replace("_", "\n"), justify="right", overflow="fold")
        last = None
        for row, name in zip(rows, names, strict=True):
            if row.dataset != last:
                table.add_row(f"[bold]{escape(row.dataset)}[/bold]", *("" for _ in metrics))
                last = row.dataset
            label = f"[dim]{escape(name)}[/dim]" if row.is_control else escape(name)
            detail = f"{row.init or 'unknown'} · seeds {','.join(map(str, row.seeds))} · {_status_text(row)}"
            cells = [row.cell(m).replace(" ± ", "\n±") for m in metrics]
            table.add_row(label, *cells)
            blank = ("" for _ in metrics)
            table.add_row(Text(detail, style="dim", overflow="fold"), *blank, end_section=True)
        return table
    table.add_column("dataset", no_wrap=True, min_width=max([7, *(len(r.dataset) for r in rows)]))
    table.add_column("model", no_wrap=True, min_width=max([5, *map(len, names)]))
    table.add_column("init", overflow="fold")
    table.add_column("seeds", overflow="fold")
    for m in metrics:
        table.add_column(m, justify="right", overflow="fold")
    table.add_column("status", overflow="fold")
    for row, name in zip(rows, names, strict=True):
        table.add_row(
            escape(row.dataset),
            f"[dim]{escape(name)}[/dim]" if row.is_control else escape(name),
            row.init or "unknown",
            ",".join(map(str, row.seeds)),
            *(row.cell(m) for m in metrics),
            _status_text(row),
        )
    return table


@app.command()
def run(
    suite: Annotated[str, typer.Argument(help="suite name (cgcbench list suites)")],
    models: Annotated[
        str | None,
        typer.Option(
            "--models",
            "-m",
            help="comma-separated model[:variant] names (may be omitted with --embedding-key or "
            "--gene-embeddings: the suite's controls run beside your embedding)",
        ),
    ] = None,
    datasets: Annotated[
        str | None,
        typer.Option(
            "--datasets",
            "--dataset",
            "-d",
            help="comma-separated card names or .h5ad paths (default: the suite's)",
        ),
    ] = None,
    seeds: Annotated[str, typer.Option(help="comma-separated seeds")] = "0",
    label_key: Annotated[str | None, typer.Option(help="obs column with cell types")] = None,
    batch_key: Annotated[str | None, typer.Option(help="obs column with batches")] = None,
    condition_key: Annotated[str | None, typer.Option(help="obs column with perturbation conditions")] = None,
    organism: Annotated[
        str | None, typer.Option(help="organism: human, mouse or drosophila (default: detected from ids)")
    ] = None,
    expression_kind: Annotated[
        str | None,
        typer.Option(
            help="value type (default: detected): counts | log1p_normalized | log2_normalized | "
            "linear_normalized (TPM/FPKM/CPM; aliases tpm, fpkm, cpm) | scaled"
        ),
    ] = None,
    layer: Annotated[
        str | None, typer.Option(help="matrix holding expression: X (default), raw (.raw.X) or a layer name")
    ] = None,
    gene_symbols_key: Annotated[
        str | None, typer.Option(help="var column with gene symbols (scanpy's gene_symbols)")
    ] = None,
    unseen_label: Annotated[
        list[str] | None,
        typer.Option(help="annotation: hold this label out of the reference (repeatable)"),
    ] = None,
    option: Annotated[
        list[str] | None, typer.Option("--set", help="suite option KEY=VALUE (repeatable)")
    ] = None,
    model_option: Annotated[
        list[str] | None,
        typer.Option("--model-set", help="model option MODEL.KEY=VALUE (repeatable)"),
    ] = None,
    embedding_key: Annotated[
        str | None,
        typer.Option(help="clustering/annotation: score your own cell embedding .obsm[KEY] as obsm:KEY"),
    ] = None,
    gene_embeddings: Annotated[
        Path | None,
        typer.Option(
            help="gene-classification/grn: score your own gene embedding table (.parquet or .csv, "
            "index = gene symbol or Ensembl id) as model genes:FILE_STEM"
        ),
    ] = None,
    quick: Annotated[bool, typer.Option(help="tiny settings that finish in about a minute")] = False,
    results_dir: Annotated[
        Path,
        typer.Option(
            envvar="CGCBENCH_RESULTS", help="where records, artifacts and the local MLflow store go"
        ),
    ] = Path("cgcbench-results"),
    tracking_uri: Annotated[
        str | None,
        typer.Option(
            help="MLflow tracking URI (default: sqlite store in --results-dir, or MLFLOW_TRACKING_URI)"
        ),
    ] = None,
    resume: Annotated[bool, typer.Option(help="skip cells already finished with the same config")] = False,
    timeout_per_run: Annotated[
        float | None,
        typer.Option(help="kill a cell after this many seconds and record it FAILED (implies --isolate)"),
    ] = None,
    isolate: Annotated[
        bool,
        typer.Option(
            help="run each cell in its own process: a crash or out-of-memory kill fails only that cell"
        ),
    ] = False,
    offline: Annotated[
        bool, typer.Option(help="write JSON records only; push them to MLflow later with `cgcbench sync`")
    ] = False,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="no progress, no per-cell lines: table and errors")
    ] = False,
    no_plots: Annotated[
        bool,
        typer.Option("--no-plots", help="write no plot artifacts (and skip UMAP and other work done only "
                     "for a picture); metrics are unchanged"),
    ] = False,
    verbose: Annotated[
        int, typer.Option("--verbose", "-v", count=True, help="log more: -v info, -vv debug")
    ] = 0,
    executor: Annotated[
        str, typer.Option(help="where cells run: local (this process) or dask (one task per cell)")
    ] = "local",
    workers: Annotated[
        int | None, typer.Option(help="dask: worker processes of a local cluster (or workers for --cluster)")
    ] = None,
    scheduler: Annotated[
        str | None, typer.Option(help="dask: address of a running scheduler, tcp://HOST:PORT")
    ] = None,
    cluster: Annotated[
        str | None,
        typer.Option(help="dask: batch-system cluster from Dask's jobqueue config (slurm, pbs, sge, lsf, …)"),
    ] = None,
    retries: Annotated[
        int, typer.Option(help="dask: resubmit a cell whose worker died this many times, then record FAILED")
    ] = 2,
    memory_per_cell: Annotated[
        str | None, typer.Option(help="dask: memory a cell may use, e.g. 8GiB (a local worker's limit)")
    ] = None,
) -> None:
    """Run SUITE for every model × dataset × seed and print a results table."""
    from benchmarks.api import expand_models
    from benchmarks.data.load import UserKeys
    from benchmarks.executors import ExecutorSpec, check_executor
    from benchmarks.registry import suite_class
    from benchmarks.runner import MatrixRunner, RunRequest

    keys = UserKeys(
        label_key, batch_key, condition_key, organism, expression_kind, layer, gene_symbols_key
    ).validated()  # a bad --expression-kind / --organism stops here, before any work
    suite_options = _parse_settings(option or [], "--set")
    if unseen_label:
        suite_options["unseen_labels"] = list(unseen_label)
    model_params: dict[str, dict[str, Any]] = {}
    for key, value in _parse_settings(model_option or [], "--model-set").items():
        model, sep, field = key.partition(".")
        if not sep:
            raise InputError(f"--model-set {key}: expected MODEL.KEY=VALUE, e.g. pca-logreg.n_pcs=30")
        model_params.setdefault(model, {})[field] = value
    model_list = expand_models(suite, _split_csv(models), embedding_key, gene_embeddings)
    if gene_embeddings is not None:
        model_params.setdefault("genes", {})["path"] = str(gene_embeddings.expanduser().resolve())
    request = RunRequest(
        suite=suite,
        models=model_list,
        datasets=_split_csv(datasets),
        seeds=_parse_seeds(seeds),
        keys=keys,
        quick=quick,
        results_dir=results_dir,
        tracking_uri=tracking_uri,
        suite_options=suite_options,
        model_params=model_params,
        resume=resume,
        timeout_per_run=timeout_per_run,
        isolate=isolate,
        offline=offline,
        executor=ExecutorSpec(executor, workers, scheduler, cluster, retries, memory_per_cell),
    )
    check_executor(request.executor)  # an unreachable scheduler: one line, before the progress bar
    if verbose:
        level = logging.INFO if verbose == 1 else logging.DEBUG
        for name in ("", "benchmarks", "baselines", "cgc"):
            logging.getLogger(name).setLevel(level)
    if no_plots:  # benchmarks.plots.NO_PLOTS_ENV, read by the suites (also in isolated cells, Dask workers)
        os.environ["CGCBENCH_NO_PLOTS"] = "1"
    if quiet:
        os.environ["CGCBENCH_QUIET"] = "1"  # adapters' own milestone lines too (also in isolated cells)
    plain = quiet or not err_console.is_terminal  # a log file gets lines, not a redrawn bar
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err_console,
        transient=False,
        disable=plain,
    ) as progress:
        task_id = progress.add_task("validating inputs", total=None)
        counts = {"total": 0, "done": 0}
        started: dict[str, float] = {}

        def say(text: str) -> None:
            if not quiet:
                err_console.print(f"{time.strftime('%H:%M:%S')} {text}", markup=False, highlight=False,
                                  soft_wrap=True)

        def on_progress(event: str, key: Any, record: dict[str, Any] | None) -> None:
            label = f"{key.dataset} · {key.model} · seed {key.seed}"
            if event == "start":
                progress.update(task_id, description=f"running {label}")
                started[key.record_id] = time.monotonic()
                if plain:
                    say(f"cell {counts['done'] + 1}/{counts['total']} start: {label}")
                return
            progress.advance(task_id)
            counts["done"] += 1
            status = str((record or {}).get("status", "SKIPPED" if event == "skip" else "?"))
            took = time.monotonic() - started.pop(key.record_id, time.monotonic())
            why = ""
            if record and record.get("error"):
                why = ": " + (str(record["error"].get("message") or "").splitlines() or [""])[0][:300]
            elif record and record.get("reason"):
                why = f": {record['reason']}"
            if plain:
                say(f"cell {counts['done']}/{counts['total']} {status.lower()}"
                    f"{'' if event == 'skip' else f' in {took:.1f} s'}: {label}{why}")
            elif status == "FAILED":
                progress.console.print(f"[red]FAILED[/red] {escape(label)}{escape(why)}", soft_wrap=True)

        def on_notice(message: str) -> None:
            if not quiet:
                progress.console.print(message, markup=False, highlight=False, soft_wrap=True)

        def on_total(n: int) -> None:
            counts["total"] = n
            progress.update(task_id, total=n, description="running")
            if plain:
                say(f"{n} cell(s) to run")

        from benchmarks.progress_display import NestedBars, PlainLines, Silent
        from cgc.progress import reporting_to

        sink = Silent() if quiet else PlainLines(say) if plain else NestedBars(progress)
        runner = MatrixRunner(request, on_progress, on_notice)
        with reporting_to(sink):  # pre-training, fine-tuning, text vectors … inside each cell
            records = runner.run(on_total)
    table = _results_table(records, suite_class(suite).headline_metrics, suite, console.width)
    console.print(table)
    store = (
        "not used (--offline; push the records with `cgcbench sync`)"
        if request.offline
        else request.tracking_uri
        or os.environ.get("MLFLOW_TRACKING_URI")
        or f"sqlite:///{results_dir.resolve()}/mlflow.db"
    )
    console.print(f"records: {results_dir.resolve() / 'records'}   MLflow: {store}")
    if any(r["status"] == "FAILED" for r in records):
        raise typer.Exit(1)


@app.command()
def sync(
    results_dir: Annotated[Path, typer.Option(envvar="CGCBENCH_RESULTS", help="results directory")] = Path(
        "cgcbench-results"
    ),
    tracking_uri: Annotated[
        str | None, typer.Option(help="MLflow tracking URI (default: the local store)")
    ] = None,
    all_records: Annotated[bool, typer.Option("--all", help="re-log records already in MLflow too")] = False,
) -> None:
    """Push records written with --offline (or all records) to an MLflow store."""
    from benchmarks.tracking.sync import sync_records
    from benchmarks.validate import check_tracking_uri

    check_tracking_uri(tracking_uri)  # a file: store is refused before anything is opened
    n, skipped = sync_records(results_dir, tracking_uri, include_logged=all_records)
    console.print(f"logged {n} record(s) to MLflow; {skipped} already there")


def _mount_cgc() -> None:
    """Mount ``cgcbench pretrain`` and ``cgcbench corpus`` from the cgc library when present."""
    try:
        from cgc.cli import app as cgc_app
    except ImportError as exc:  # cgc's optional dependencies missing: say so when used
        reason = str(exc)

        @app.command("pretrain", help="Pre-train CGC (unavailable: cgc could not be imported).")
        def _pretrain_unavailable() -> None:
            raise CgcbenchError(f"cgc could not be imported ({reason}); reinstall cgcbench")

        return
    for cmd in cgc_app.registered_commands:
        app.registered_commands.append(cmd)
    for group in cgc_app.registered_groups:
        app.registered_groups.append(group)


_mount_cgc()
for _sig, _handler in _STARTUP_HANDLERS.items():  # importing is done: give the signals back
    signal.signal(_sig, _handler)


EXIT_WITHIN_S = 4.0
"""After SIGINT/SIGTERM the process is gone within this many seconds, unwound or not."""
_interrupted = threading.Event()


def _exit_interrupted() -> None:
    """Kill isolated cells, print the resume line and leave at once (exit code 130).

    Records are written atomically and only after their artifacts, so leaving here loses at
    most the cells in flight; their staging directories are removed by the next run.
    """
    cell = sys.modules.get("benchmarks.cell")
    if cell is not None:
        cell.kill_live_children()
    with contextlib.suppress(Exception):
        sys.stdout.flush()
        sys.stderr.write(RESUME_LINE + "\n")
        sys.stderr.flush()
    os._exit(130)


def _terminate(signum: int, frame: object) -> None:
    """SIGTERM/SIGINT: unwind (staging removed, no record claims success), but within seconds.

    A watchdog leaves after :data:`EXIT_WITHIN_S` even if unwinding is stuck (a long native
    call, a worker pool joining); a second signal leaves at once.
    """
    if _interrupted.is_set():
        _exit_interrupted()
    _interrupted.set()
    watchdog = threading.Timer(EXIT_WITHIN_S, _exit_interrupted)
    watchdog.daemon = True
    watchdog.start()
    cell = sys.modules.get("benchmarks.cell")
    if cell is not None:
        cell.kill_live_children()
    raise KeyboardInterrupt(f"interrupted by signal {signum}")


def configure_caches() -> None:
    """Point numba's on-disk cache at the data cache unless ``NUMBA_CACHE_DIR`` is set.

    UMAP (pynndescent, umap-learn) compiles its kernels with numba; cached, a process reuses
    the previous compilation instead of spending minutes on it, also where site-packages is
    read-only (numba's default cache location). Runs before numba is imported.
    """
    if "NUMBA_CACHE_DIR" not in os.environ:
        # benchmarks.data.fetch.data_dir(), without importing the dataset modules (anndata)
        env = os.environ.get("CGCBENCH_DATA_DIR")
        if env:
            root = Path(env)
        else:
            from platformdirs import user_cache_dir

            root = Path(user_cache_dir("cgcbench")) / "data"
        os.environ["NUMBA_CACHE_DIR"] = str(root / "numba")


def main() -> None:
    """Entry point of the ``cgcbench`` console script."""
    configure_caches()
    logging.basicConfig(
        level=os.environ.get("CGCBENCH_LOG", "WARNING"),
        format="%(levelname)s %(name)s: %(message)s",
    )
    # third-party deprecation notices are not the user's business (also in spawned cells)
    os.environ.setdefault("PYTHONWARNINGS", "ignore::DeprecationWarning,ignore::FutureWarning")
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)
    for noisy in ("mlflow", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGINT, _terminate)
    try:
        rc = app(standalone_mode=False)  # typer returns 130 for a KeyboardInterrupt it caught
    except CgcbenchError as exc:
        err_console.print(f"[bold red]error:[/bold red] {exc}", soft_wrap=True, highlight=False)
        sys.exit(exc.exit_code)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        _exit_interrupted()
    finally:
        if _interrupted.is_set():  # also when typer swallowed the KeyboardInterrupt
            _exit_interrupted()
    sys.exit(rc if isinstance(rc, int) else 0)


if __name__ == "__main__":
    main()
