"""``cgcbench ablate``: run a model's ablation variants against the base model and compare them.

For a suite, its data sets and seeds, the run matrix holds the base model (``cgc``) and every
ablation variant it declares (``cgc:no-graph``, ``cgc:no-pretrain``, ``cgc:-edge=…``,
``cgc:-node=…``); the records are written like those of ``cgcbench run`` and then compared
with :func:`benchmarks.leaderboard.ablation.ablations`: per (data set, variant, headline
metric) the mean of the paired differences ``variant − base`` over seeds and its two-sided
t-interval.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from benchmarks.errors import InputError

if TYPE_CHECKING:
    from benchmarks.leaderboard.ablation import AblationResult

log = logging.getLogger(__name__)

DEFAULT_VARIANTS: tuple[str, ...] = (
    "no-graph",
    "no-pretrain",
    "-edge=tftg",
    "-edge=coexpr",
    "-edge=pos",
    "-node=text",
    "-node=token",
)
"""The paper's ablations, in the order they are reported."""


def ablation_models(base: str = "cgc", variants: Sequence[str] | None = None) -> list[str]:
    """Model strings of the base model and its ablation variants.

    Parameters
    ----------
    base
        A registered model name (no variant).
    variants
        Variant names; default: the ones of :data:`DEFAULT_VARIANTS` that ``base`` declares,
        else every variant it declares.

    Raises
    ------
    InputError
        If ``base`` carries a variant, declares none, or a requested variant is unknown.

    """
    from benchmarks.registry import model_class

    if ":" in base:
        raise InputError(f"--base {base!r}: give the base model without a variant (e.g. cgc)")
    declared = list(model_class(base).variants)
    if not declared:
        raise InputError(f"model {base!r} declares no variants; nothing to ablate")
    if variants is None:
        chosen = [v for v in DEFAULT_VARIANTS if v in declared] or declared
    else:
        unknown = [v for v in variants if v not in declared]
        if unknown:
            raise InputError(
                f"--variants {', '.join(unknown)}: not variants of {base}; choose from {', '.join(declared)}"
            )
        chosen = list(variants)
    return [base, *(f"{base}:{v}" for v in chosen)]


ZERO_SHOT_KINDS = frozenset({"gene_embedding"})
"""Task kinds scored on pre-trained weights without fine-tuning."""


def zero_shot_params(suite: str, base: str, model_params: dict[str, dict[str, Any]]
                     ) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """Add the base model's :attr:`~benchmarks.interface.ModelAdapter.zero_shot_seed_params`.

    Only on a zero-shot suite, and only keys the user did not set.

    Returns
    -------
    model_params : dict
        The updated per-model settings (a copy).
    added : dict
        The settings that were added (empty when none were).

    """
    from benchmarks.registry import model_class, suite_class

    out = {k: dict(v) for k, v in model_params.items()}
    if not {str(k) for k in suite_class(suite).required_kinds} <= ZERO_SHOT_KINDS:
        return out, {}
    own = out.setdefault(base, {})
    added = {k: v for k, v in model_class(base).zero_shot_seed_params.items() if k not in own}
    own.update(added)
    if not own:
        del out[base]
    return out, added


def compare(records: Sequence[dict[str, Any]], suite: str, confidence: float = 0.95) -> list[AblationResult]:
    """Paired differences of every variant against its base on the suite's headline metrics."""
    from benchmarks.registry import suite_class

    cls = suite_class(suite)
    from benchmarks.leaderboard.ablation import ablations

    return ablations(
        records,
        {suite: cls.headline_metrics},
        {suite: {m: bool(cls.higher_is_better.get(m, True)) for m in cls.headline_metrics}},
        confidence,
    )


def ablation_table(results: Sequence[AblationResult], title: str = "") -> Table:
    """A rich table: one row per (data set, variant, metric) with the difference and its interval."""
    table = Table(title=title or None)
    for col in ("dataset", "variant", "metric", "base", "variant mean", "Δ (variant − base)", "95% CI", "n",
                "verdict"):
        table.add_column(col, justify="right" if col in ("base", "variant mean", "n") else "left")
    for r in results:
        verdict = {True: "[green]better[/green]", False: "[red]worse[/red]", None: "n.s."}[r.improves]
        table.add_row(
            r.dataset,
            r.variant,
            r.metric + ("" if r.higher_is_better else " (↓)"),
            f"{r.base_mean:.4f}",
            f"{r.variant_mean:.4f}",
            f"{r.diff.mean:+.4f}",
            r.interval_text(4),
            str(r.diff.n),
            verdict,
        )
    return table


def run_ablation(
    suite: str,
    datasets: Sequence[str] = (),
    seeds: Sequence[int] = (0, 1, 2),
    base: str = "cgc",
    variants: Sequence[str] | None = None,
    *,
    quick: bool = False,
    results_dir: Path = Path("cgcbench-results"),
    model_params: dict[str, dict[str, Any]] | None = None,
    suite_options: dict[str, Any] | None = None,
    resume: bool = False,
    offline: bool = False,
    tracking_uri: str | None = None,
    confidence: float = 0.95,
    say: Callable[[str], Any] = log.info,
) -> tuple[list[dict[str, Any]], list[AblationResult]]:
    """Run the base model and its variants on ``suite`` and compare them.

    On a zero-shot suite the base model's ``zero_shot_seed_params`` are added (see
    :func:`zero_shot_params`) and announced through ``say``.

    Returns
    -------
    records : list of dict
        One record per (data set, model, seed), as ``cgcbench run`` writes them.
    results : list of AblationResult
        The paired comparisons (see :func:`compare`).

    """
    from benchmarks.runner import MatrixRunner, RunRequest

    if len(seeds) < 2:
        given = ",".join(map(str, seeds))
        raise InputError(f"--seeds {given}: intervals need at least two seeds, e.g. 0,1,2")
    model_params, added = zero_shot_params(suite, base, dict(model_params or {}))
    if added:
        settings = " ".join(f"--model-set {base}.{k}={v}" for k, v in added.items())
        say(f"{suite} scores pre-trained weights as they are (zero-shot): using {settings} so that "
            "every seed has its own pre-training (set it yourself to override)")
    request = RunRequest(
        suite=suite,
        models=ablation_models(base, variants),
        datasets=list(datasets),
        seeds=list(seeds),
        quick=quick,
        results_dir=results_dir,
        tracking_uri=tracking_uri,
        suite_options=dict(suite_options or {}),
        model_params=model_params,
        resume=resume,
        offline=offline,
    )
    records = MatrixRunner(request).run()
    return records, compare(records, suite, confidence)


def ablate_command(
    suite: Annotated[str, typer.Argument(help="suite name (cgcbench list suites)")],
    datasets: Annotated[
        str | None, typer.Option("--datasets", "--dataset", "-d", help="comma-separated card names")
    ] = None,
    seeds: Annotated[str, typer.Option(help="comma-separated seeds (at least two)")] = "0,1,2",
    base: Annotated[str, typer.Option(help="base model whose variants are ablated")] = "cgc",
    variants: Annotated[
        str | None, typer.Option(help="comma-separated variants (default: all of the paper's ablations)")
    ] = None,
    model_option: Annotated[
        list[str] | None,
        typer.Option("--model-set", help="model option MODEL.KEY=VALUE for every variant (repeatable)"),
    ] = None,
    option: Annotated[
        list[str] | None, typer.Option("--set", help="suite option KEY=VALUE (repeatable)")
    ] = None,
    quick: Annotated[bool, typer.Option(help="tiny settings")] = False,
    results_dir: Annotated[
        Path, typer.Option(envvar="CGCBENCH_RESULTS", help="where records, artifacts and MLflow go")
    ] = Path("cgcbench-results"),
    resume: Annotated[bool, typer.Option(help="skip cells already finished with the same config")] = False,
    offline: Annotated[bool, typer.Option(help="write JSON records only (no MLflow)")] = False,
    confidence: Annotated[float, typer.Option(help="coverage of the intervals")] = 0.95,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="also write the comparisons as JSON")
    ] = None,
) -> None:
    """Run SUITE with the base model and all its ablations over seeds; print differences + intervals."""
    from benchmarks.cli import _parse_seeds, _parse_settings, _split_csv

    model_params: dict[str, dict[str, Any]] = {}
    for key, value in _parse_settings(model_option or [], "--model-set").items():
        model, sep, field = key.partition(".")
        if not sep:
            raise InputError(f"--model-set {key}: expected MODEL.KEY=VALUE, e.g. cgc.pretrain_steps=100")
        model_params.setdefault(model, {})[field] = value
    console = Console()
    records, results = run_ablation(
        suite,
        _split_csv(datasets),
        _parse_seeds(seeds),
        base,
        _split_csv(variants) or None,
        quick=quick,
        results_dir=results_dir,
        model_params=model_params,
        suite_options=_parse_settings(option or [], "--set"),
        resume=resume,
        offline=offline,
        confidence=confidence,
        say=console.print,
    )
    failed = [r for r in records if r.get("status") != "FINISHED"]
    for r in failed:
        msg = (r.get("error") or {}).get("message", r.get("reason", ""))
        console.print(f"[yellow]{r['status']}[/yellow] {r['dataset']['name']} · {r['model']['label']} · "
                      f"seed {r['seed']}: {str(msg)[:200]}")
    console.print(ablation_table(results, f"{suite}: ablations of {base} (Δ = variant − base, "
                                          f"{confidence:.0%} t-interval over seeds)"))
    if json_out is not None:
        json_out.write_text(json.dumps([r.to_json() for r in results], indent=2))
        console.print(f"comparisons written to {json_out}")
    if any(r.get("status") == "FAILED" for r in records):
        raise typer.Exit(1)
