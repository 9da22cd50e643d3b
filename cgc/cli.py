"""Command-line interface: ``pretrain``, ``corpus build`` and ``priors build``.

The :data:`app` object is a :class:`typer.Typer`; cgcbench mounts it as
``cgcbench pretrain`` and ``cgcbench corpus build``. ``python -m cgc.train.pretrain``
(also under ``torchrun``) runs the ``pretrain`` command.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

import typer

from cgc.errors import CGCError

app = typer.Typer(help="Cell-Graph Compass: priors, corpus and pre-training.",
                  no_args_is_help=True, add_completion=False)
corpus_app = typer.Typer(help="Pre-processed pre-training corpora.", no_args_is_help=True)
priors_app = typer.Typer(help="Gene priors bundles.", no_args_is_help=True)
app.add_typer(corpus_app, name="corpus")
app.add_typer(priors_app, name="priors")

PathOpt = Annotated[Path | None, typer.Option()]


def _fail(exc: Exception) -> typer.Exit:
    from rich.console import Console
    from rich.markup import escape

    # one line whatever the terminal width (soft_wrap), the message printed as written
    Console(stderr=True).print("[bold red]error:[/] " + escape(str(exc)), soft_wrap=True,
                               highlight=False)
    return typer.Exit(code=2)


def _text_encoder(spec: str) -> Any:
    from cgc.priors.text import HashingTextEncoder, SentenceTransformerEncoder

    if spec == "default":
        return "default"
    if spec == "none":
        return None
    if spec.startswith("hashing"):
        _, _, dim = spec.partition(":")
        return HashingTextEncoder(int(dim or 64))
    return SentenceTransformerEncoder(spec)


def _sources(priors_dir: Path | None, **paths: Path | None) -> Any:
    from cgc.priors.sources import PriorSources

    if priors_dir is not None:
        return PriorSources.from_dir(priors_dir, **paths)
    return PriorSources(**paths)


def _priors_kwargs(text_encoder: str, text_cache: Path | None, id_type: str) -> dict[str, Any]:
    return {"text_encoder": _text_encoder(text_encoder), "text_cache_dir": text_cache,
            "corpus_id_type": id_type}


# Options shared by commands that may build priors.
PriorsDir = Annotated[Path | None, typer.Option(
    help="Folder with the standard prior files (vocab.json, trrust_rawdata.human.tsv, "
         "gene_positions_hg38.parquet, gene_info_hs.tsv.gz, gene2go_hs.tsv.gz, "
         "go_terms.tsv.gz), directly or under priors/ and vocab/cgc/.")]
TextOpt = Annotated[str, typer.Option(
    help="'default' (offline MiniLM), 'none', 'hashing[:DIM]' or a local model folder "
         "(e.g. BioBERT).")]


@priors_app.command("build")
def priors_build(
    out: Annotated[Path, typer.Option(help="Output bundle directory.")],
    corpus: Annotated[list[Path] | None, typer.Option(help="h5ad file(s) for co-expression.")]
    = None,
    priors_dir: PriorsDir = None,
    vocab: PathOpt = None, trrust: PathOpt = None, positions: PathOpt = None,
    gene_info: PathOpt = None, gene2go: PathOpt = None, go_terms: PathOpt = None,
    dorothea: PathOpt = None, collectri: PathOpt = None,
    text_encoder: TextOpt = "default",
    text_cache: PathOpt = None,
    id_type: Annotated[str, typer.Option(help="'symbol' or 'ensembl'.")] = "symbol",
) -> None:
    """Build a gene priors bundle."""
    from cgc.priors.bundle import GenePriors

    try:
        src = _sources(priors_dir, vocab_path=vocab, trrust_path=trrust,
                       positions_path=positions, gene_info_path=gene_info,
                       gene2go_path=gene2go, go_terms_path=go_terms,
                       dorothea_path=dorothea, collectri_path=collectri)
        p = GenePriors.build(corpus=list(corpus or []), **src.as_kwargs(),
                             **_priors_kwargs(text_encoder, text_cache, id_type))
        p.save(out)
    except CGCError as exc:
        raise _fail(exc) from exc
    typer.echo(f"{p} -> {out}")


@corpus_app.command("build")
def corpus_build(
    out: Annotated[Path, typer.Option(help="Output corpus directory.")],
    inputs: Annotated[list[Path] | None, typer.Option(
        help="Input h5ad file(s); repeat the option.")] = None,
    soma: Annotated[list[str] | None, typer.Option(
        help="TileDB-SOMA experiment URI(s) (local folder, s3://…); needs --priors.")] = None,
    obs_filter: Annotated[str | None, typer.Option(
        help="SOMA obs value_filter, e.g. \"cell_type == 'B cell'\" (default: every cell).")] = None,
    soma_measurement: Annotated[str, typer.Option(help="SOMA measurement.")] = "RNA",
    soma_layer: Annotated[str, typer.Option(
        help="SOMA X layer (from_h5ad: data; CELLxGENE Census: raw).")] = "data",
    soma_var_column: Annotated[str, typer.Option(
        help="SOMA var column with gene ids (from_h5ad: var_id; Census: feature_name).")] = "var_id",
    shard_size: Annotated[int, typer.Option(help="Cells per shard.")] = 100_000,
    chunk_size: Annotated[int, typer.Option(help="Cells read and processed at once.")] = 4096,
    seed: Annotated[int, typer.Option(help="Seed of the train/validation split.")] = 0,
    val_fraction: Annotated[float, typer.Option()] = 0.01,
    min_genes: Annotated[int, typer.Option(help="QC: minimum detected genes.")] = 200,
    min_mapped_fraction: Annotated[float, typer.Option(
        help="Fail if a smaller fraction of an input's genes maps to the vocabulary.")] = 0.5,
    id_type: Annotated[str, typer.Option(help="'symbol' or 'ensembl'.")] = "symbol",
    normalize: Annotated[str, typer.Option(help="auto|total|log1p|none")] = "auto",
    n_hvg: Annotated[int | None, typer.Option(
        help="Keep the N most variable genes per input (paper: 10000).")] = None,
    priors: Annotated[Path | None, typer.Option(
        help="Existing priors bundle (or checkpoint) to map genes with.")] = None,
    priors_dir: PriorsDir = None,
    vocab: PathOpt = None, trrust: PathOpt = None, positions: PathOpt = None,
    gene_info: PathOpt = None, gene2go: PathOpt = None, go_terms: PathOpt = None,
    text_encoder: TextOpt = "default",
    text_cache: PathOpt = None,
    executor: Annotated[str, typer.Option(
        help="Where chunks are processed: local (this process) or dask.")] = "local",
    workers: Annotated[int | None, typer.Option(
        help="dask: worker processes of a local cluster (or workers for --cluster).")] = None,
    scheduler: Annotated[str | None, typer.Option(
        help="dask: address of a running scheduler, tcp://HOST:PORT.")] = None,
    cluster: Annotated[str | None, typer.Option(
        help="dask: batch-system cluster from Dask's jobqueue config (slurm, pbs, …).")] = None,
) -> None:
    """Pre-process h5ad files or SOMA experiments into a sharded corpus (builds priors unless --priors).

    With ``--executor dask`` the chunks of every input are read and normalised on Dask workers
    while this process writes the shards in order: the corpus is the same as a serial build.
    """
    from cgc.priors.bundle import GenePriors
    from cgc.train.corpus import build_corpus
    from cgc.train.parallel import check_executor, executor_map
    from cgc.train.sources import SomaInput, open_source

    inputs, soma = list(inputs or []), list(soma or [])
    opened: list[Any] = []
    try:
        if not inputs and not soma:
            raise CGCError("no input: pass --inputs FILE.h5ad and/or --soma URI")
        if soma and priors is None:
            raise CGCError("--soma needs --priors BUNDLE (priors are built from h5ad files only); "
                           "build them with `cgcbench priors build` or use a checkpoint's priors")
        if obs_filter is not None and not soma:
            raise CGCError("--obs-filter applies to --soma inputs; add --soma URI")
        if out.exists() and out.is_dir() and any(out.iterdir()):
            raise CGCError(f"corpus output {out} exists and is not empty; choose a new --out")
        check_executor(executor, workers, scheduler, cluster)
        # every input opened (SOMA filters evaluated) before priors or workers start
        opened = [open_source(p) for p in inputs]
        opened += [open_source(SomaInput(uri, obs_filter, soma_measurement, soma_layer, soma_var_column))
                   for uri in soma]
        if priors is not None:
            pdir = priors / "priors" if (priors / "priors").is_dir() else priors
            bundle = GenePriors.load(pdir)
        else:
            src = _sources(priors_dir, vocab_path=vocab, trrust_path=trrust,
                           positions_path=positions, gene_info_path=gene_info,
                           gene2go_path=gene2go, go_terms_path=go_terms)
            bundle = GenePriors.build(corpus=list(inputs), **src.as_kwargs(),
                                      **_priors_kwargs(text_encoder, text_cache, id_type))
        with executor_map(executor, workers, scheduler, cluster, on_notice=typer.echo) as map_fn:
            path = build_corpus(opened, out, bundle, shard_size=shard_size, seed=seed,
                                val_fraction=val_fraction, id_type=id_type, normalize=normalize,
                                min_genes=min_genes, min_mapped_fraction=min_mapped_fraction,
                                n_hvg=n_hvg, chunk_size=chunk_size, map_fn=map_fn)
    except CGCError as exc:
        raise _fail(exc) from exc
    finally:
        for o in opened:
            o.close()
    typer.echo(f"corpus written to {path}")


@app.command("pretrain")
def pretrain_cmd(
    corpus: Annotated[list[Path], typer.Option(
        help="A built corpus directory, or h5ad file(s); repeat the option.")],
    out: Annotated[Path, typer.Option(help="Run directory.")],
    config: Annotated[str, typer.Option(help="small | paper | path.toml")] = "small",
    steps: Annotated[int | None, typer.Option(help="Optimiser steps.")] = None,
    seed: Annotated[int, typer.Option()] = 0,
    resume: Annotated[bool, typer.Option(help="Continue from the latest checkpoint.")] = False,
    init_checkpoint: Annotated[Path | None, typer.Option(
        help="Start from this checkpoint (two-step transfer).")] = None,
    checkpoint_every: Annotated[int | None, typer.Option()] = None,
    eval_every: Annotated[int | None, typer.Option()] = None,
    priors: Annotated[Path | None, typer.Option(help="Priors bundle directory.")] = None,
    priors_dir: PriorsDir = None,
    vocab: PathOpt = None, trrust: PathOpt = None, positions: PathOpt = None,
    gene_info: PathOpt = None, gene2go: PathOpt = None, go_terms: PathOpt = None,
    text_encoder: TextOpt = "default",
    text_cache: PathOpt = None,
    id_type: Annotated[str, typer.Option(help="'symbol' or 'ensembl'.")] = "symbol",
    shard_size: Annotated[int, typer.Option()] = 100_000,
    min_genes: Annotated[int, typer.Option(help="QC: minimum detected genes.")] = 200,
    min_mapped_fraction: Annotated[float, typer.Option(
        help="Fail if a smaller fraction of an input's genes maps to the vocabulary.")] = 0.5,
    device: Annotated[str | None, typer.Option(help="cpu | cuda (default: auto)")] = None,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """Pre-train CGC by masked expression prediction (works under torchrun)."""
    from cgc.train.pretrain import pretrain

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        src = _sources(priors_dir, vocab_path=vocab, trrust_path=trrust,
                       positions_path=positions, gene_info_path=gene_info,
                       gene2go_path=gene2go, go_terms_path=go_terms)
        res = pretrain(
            [str(c) for c in corpus], out, config, steps=steps, seed=seed, resume=resume,
            init_checkpoint=init_checkpoint, checkpoint_every=checkpoint_every,
            eval_every=eval_every, priors=priors,
            sources=src if src.vocab_path is not None else None,
            priors_kwargs=_priors_kwargs(text_encoder, text_cache, id_type),
            corpus_kwargs={"shard_size": shard_size, "id_type": id_type,
                           "min_genes": min_genes, "min_mapped_fraction": min_mapped_fraction},
            device=device, progress=progress,
        )
    except CGCError as exc:
        raise _fail(exc) from exc
    if int(os.environ.get("RANK", "0")) == 0:
        vl = res.val_losses
        typer.echo(f"done: step {res.step}, checkpoint {res.checkpoint}"
                   + (f", val loss {vl[-1]:.4f}" if vl else ""))


def main() -> None:
    """Run the CLI."""
    app()
