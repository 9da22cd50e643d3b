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

    Console(stderr=True).print(f"[bold red]error:[/] {exc}")
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
    inputs: Annotated[list[Path], typer.Option(help="Input h5ad file(s); repeat the option.")],
    out: Annotated[Path, typer.Option(help="Output corpus directory.")],
    shard_size: Annotated[int, typer.Option(help="Cells per shard.")] = 100_000,
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
) -> None:
    """Pre-process h5ad files into a sharded corpus (builds priors unless --priors)."""
    from cgc.priors.bundle import GenePriors
    from cgc.train.corpus import build_corpus

    try:
        if priors is not None:
            pdir = priors / "priors" if (priors / "priors").is_dir() else priors
            bundle = GenePriors.load(pdir)
        else:
            src = _sources(priors_dir, vocab_path=vocab, trrust_path=trrust,
                           positions_path=positions, gene_info_path=gene_info,
                           gene2go_path=gene2go, go_terms_path=go_terms)
            bundle = GenePriors.build(corpus=list(inputs), **src.as_kwargs(),
                                      **_priors_kwargs(text_encoder, text_cache, id_type))
        path = build_corpus(list(inputs), out, bundle, shard_size=shard_size, seed=seed,
                            val_fraction=val_fraction, id_type=id_type, normalize=normalize,
                            min_genes=min_genes, min_mapped_fraction=min_mapped_fraction,
                            n_hvg=n_hvg)
    except CGCError as exc:
        raise _fail(exc) from exc
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
