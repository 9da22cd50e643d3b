"""Masked-expression pre-training (SPEC §4), single process or under ``torchrun``.

Run as a module for distributed training::

    torchrun --nproc-per-node 2 -m cgc.train.pretrain --corpus CORPUS --out runs/x

Each rank reads its own shards; gradients are averaged by DDP (gloo on CPU, NCCL on CUDA).
Checkpoints hold optimiser, scheduler, scaler and per-rank RNG state and the data position
is a function of the step, so a killed run resumed with ``resume=True`` continues exactly.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import logging
import math
import os
import signal
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anndata as ad
import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from torch_geometric.data import Batch

from cgc.config import CGCConfig, RunConfig, load_config
from cgc.determinism import deterministic_cpu
from cgc.errors import CGCError, ConfigError, CorpusError
from cgc.graph import CellGraphBuilder
from cgc.model import CGCModel
from cgc.priors.bundle import GenePriors
from cgc.priors.sources import PriorSources
from cgc.progress import task as progress_task
from cgc.train import ddp
from cgc.train.checkpoint import (
    load_checkpoint,
    load_train_state,
    mark_latest,
    resolve_checkpoint,
    save_checkpoint,
)
from cgc.train.corpus import (
    CorpusReader,
    build_corpus,
    check_corpus_priors,
    is_corpus_dir,
    read_manifest,
)
from cgc.train.data import EvalSet, GraphCollator, InputView, PretrainStream
from cgc.train.memory import check_fits
from cgc.train.optim import RowSparseAdam, clip_grad_norm, use_sparse_gene_table
from cgc.train.schedule import make_scheduler

_log = logging.getLogger(__name__)

KILL_ENV = "CGC_TEST_KILL_AT_STEP"  # test hook: SIGKILL this process after that step
CorpusArg = str | Path | ad.AnnData | Sequence[str | Path | ad.AnnData]


@dataclass
class PretrainResult:
    """Summary of a pre-training run."""

    out_dir: Path
    step: int
    checkpoint: Path | None
    history: list[dict[str, Any]] = field(default_factory=list)
    mean_predictor_val_loss: float | None = None

    @property
    def val_losses(self) -> list[float]:
        """Validation losses in the order they were computed."""
        return [h["val_loss"] for h in self.history if "val_loss" in h]


def _as_list(corpus: CorpusArg) -> list[str | Path | ad.AnnData]:
    if isinstance(corpus, str | Path | ad.AnnData):
        return [corpus]
    return list(corpus)


def _prepare_corpus(
    corpus: CorpusArg, out: Path, priors: GenePriors | None, info: ddp.DistInfo,
    sources: PriorSources | None, build_kwargs: dict[str, Any],
    priors_kwargs: dict[str, Any],
) -> tuple[Path, GenePriors]:
    """Return a built corpus directory and the priors to use (building them if needed)."""
    items = _as_list(corpus)
    if len(items) == 1 and not isinstance(items[0], ad.AnnData) and is_corpus_dir(items[0]):
        cdir = Path(items[0])
        if priors is None:
            if not (cdir / "priors").is_dir():
                raise CorpusError(f"corpus {cdir} has no priors/; pass priors= explicitly")
            priors = GenePriors.load(cdir / "priors")
        check_corpus_priors(cdir, priors)
        return cdir, priors
    for it in items:
        if not isinstance(it, ad.AnnData) and Path(it).is_dir():
            raise CorpusError(f"{it} is a directory without corpus.json; build it first")
    cdir = out / "corpus"
    if info.is_main and not is_corpus_dir(cdir):
        if priors is None:
            if sources is None:
                raise CGCError(
                    "pre-training from .h5ad files needs prior-knowledge files to build the "
                    "gene priors: pass priors= (a bundle) or sources= (PriorSources)"
                )
            priors = GenePriors.build(corpus=items, **sources.as_kwargs(), **priors_kwargs)
        build_corpus(items, cdir, priors, **build_kwargs)
    ddp.barrier(info)
    if priors is None:
        priors = GenePriors.load(cdir / "priors")
    check_corpus_priors(cdir, priors)
    return cdir, priors


def _rng_state() -> dict[str, Any]:
    st: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        st["cuda"] = torch.cuda.get_rng_state()
    return st


def _set_rng_state(st: dict[str, Any]) -> None:
    torch.set_rng_state(st["torch"])
    if "cuda" in st and torch.cuda.is_available():
        torch.cuda.set_rng_state(st["cuda"])


def _loader(dataset: Any, indices: Sequence[int], batch_size: int, workers: int
            ) -> DataLoader:
    # Cells are prepared one by one, their graphs built per batch at once (build_batch).
    return DataLoader(InputView(dataset), batch_size=batch_size,
                      sampler=indices,  # type: ignore[arg-type]
                      collate_fn=GraphCollator(dataset.builder), num_workers=workers,
                      persistent_workers=False)


def _progress(enabled: bool, total: int, start: int) -> Any:
    if not enabled:
        return contextlib.nullcontext(None)
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    p = Progress(TextColumn("pre-training"), BarColumn(), MofNCompleteColumn(),
                 TextColumn("{task.fields[cps]:>8.1f} cells/s  loss {task.fields[loss]:.4f}"),
                 TimeRemainingColumn(), transient=False)
    p.add_task("train", total=total, completed=start, cps=0.0, loss=float("nan"))
    return p


@torch.no_grad()
def evaluate(model: CGCModel, loader: DataLoader, device: torch.device, info: ddp.DistInfo,
             autocast: Callable[[], Any]) -> float:
    """Return the mean validation loss over all ranks (weighted by cells)."""
    was = model.training
    model.eval()
    tot = n = 0.0
    for batch in loader:
        batch = batch.to(device)
        with autocast():
            loss, _ = model.pretrain_loss(batch)
        tot += float(loss) * batch.num_graphs
        n += batch.num_graphs
    tot, n = ddp.all_reduce_sum([tot, n], info)
    model.train(was)
    return tot / max(n, 1.0)


def mean_predictor_loss(val_set: EvalSet, config: CGCConfig) -> float:
    """Validation loss of the per-gene-mean predictor (the control pre-training must beat).

    Every gene's target is predicted by its mean target over the validation cells
    themselves (an oracle mean, so beating it is a conservative claim), for both terms of
    the loss (eq. 10 on masked genes, eq. 11 on all genes), weighted as in the model.
    """
    genes, targets, masked = [], [], []
    for i in range(len(val_set)):
        g = val_set[i]
        keep = ~g.is_cell
        genes.append(g.gene[keep].numpy())
        targets.append(g.target[keep].numpy().astype(np.float64))
        masked.append(g.mask[keep].numpy())
    if not genes:
        return float("nan")
    gene, target, mask = np.concatenate(genes), np.concatenate(targets), np.concatenate(masked)
    n = np.bincount(gene)
    mean = np.bincount(gene, weights=target) / np.maximum(n, 1)
    err = (target - mean[gene]) ** 2
    l_gene = float(err[mask].mean()) if mask.any() else 0.0
    l_cell = float(err.mean())  # the model averages each term over the nodes of a batch
    return config.gene_loss_weight * l_gene + config.cell_loss_weight * l_cell


def pretrain(
    corpus: CorpusArg,
    out_dir: str | Path,
    config: str | Path | RunConfig = "small",
    *,
    steps: int | None = None,
    seed: int = 0,
    resume: bool = False,
    init_checkpoint: str | Path | None = None,
    checkpoint_every: int | None = None,
    eval_every: int | None = None,
    priors: GenePriors | str | Path | None = None,
    sources: PriorSources | None = None,
    priors_kwargs: dict[str, Any] | None = None,
    corpus_kwargs: dict[str, Any] | None = None,
    device: str | None = None,
    progress: bool = True,
    log: Callable[[str], None] | None = print,
) -> PretrainResult:
    """Pre-train a CGC model by masked expression prediction.

    Parameters
    ----------
    corpus
        A corpus directory built by :func:`cgc.train.corpus.build_corpus`, or ``.h5ad``
        paths / AnnData objects (a corpus is then built under ``out_dir/corpus``).
    out_dir
        Run directory: ``checkpoints/``, ``metrics.jsonl``, ``run.json``.
    config
        ``"small"``, ``"paper"``, a TOML path or a :class:`~cgc.config.RunConfig`.
    steps
        Optimiser steps (overrides the config).
    seed
        Seed of model initialisation, data order, gene sampling and masking.
    resume
        Continue from the latest checkpoint in ``out_dir`` (exact: same data, RNG, state).
    init_checkpoint
        Start from these weights and priors with a fresh optimiser (two-step transfer).
    checkpoint_every, eval_every
        Override the intervals of the config (optimiser steps).
    priors
        A :class:`GenePriors` or a bundle directory; default: the corpus's bundle.
    sources
        Prior-knowledge files used to build priors when training from ``.h5ad`` files.
    priors_kwargs, corpus_kwargs
        Extra arguments of :meth:`GenePriors.build` and :func:`build_corpus`.
    device
        ``"cpu"``, ``"cuda"`` or ``None`` (automatic).
    progress
        Show a progress bar (rank 0).
    log
        Function receiving log lines (rank 0); ``None`` silences them.

    Returns
    -------
    PretrainResult
        Final step, last checkpoint and the metrics history.

    """
    info = ddp.init_distributed(device)
    say = log if (log is not None and info.is_main) else (lambda _m: None)
    try:
        return _pretrain(corpus, Path(out_dir), config, steps, seed, resume, init_checkpoint,
                         checkpoint_every, eval_every, priors, sources, priors_kwargs or {},
                         corpus_kwargs or {}, info, progress and info.is_main, say)
    finally:
        ddp.cleanup(info)


def _pretrain(corpus: CorpusArg, out: Path, config: str | Path | RunConfig, steps: int | None,
              seed: int, resume: bool, init_checkpoint: str | Path | None,
              checkpoint_every: int | None, eval_every: int | None,
              priors_arg: GenePriors | str | Path | None, sources: PriorSources | None,
              priors_kwargs: dict[str, Any], corpus_kwargs: dict[str, Any],
              info: ddp.DistInfo, show: bool, say: Callable[[str], None]) -> PretrainResult:
    run = config if isinstance(config, RunConfig) else load_config(config)
    mcfg, tcfg = run.model, run.train
    over: dict[str, Any] = {}
    if steps is not None:
        over["max_steps"] = steps
    if checkpoint_every is not None:
        over["checkpoint_every"] = checkpoint_every
    if eval_every is not None:
        over["eval_every"] = eval_every
    tcfg = tcfg.replace(**over)
    if info.is_main:
        out.mkdir(parents=True, exist_ok=True)
    ddp.barrier(info)
    ckdir = out / "checkpoints"
    priors = GenePriors.load(priors_arg) if isinstance(priors_arg, str | Path) else priors_arg

    # Where do weights and priors come from?
    resume_from = None
    if resume and (ckdir / "LATEST").is_file():
        resume_from = resolve_checkpoint(ckdir)
    init_model = None
    if resume_from is not None:
        init_model, priors, meta = load_checkpoint(resume_from, priors)
        mcfg = init_model.config
        say(f"resuming from {resume_from} (step {meta['step']})")
    elif init_checkpoint is not None:
        init_model, priors, meta = load_checkpoint(init_checkpoint, priors)
        mcfg = init_model.config
        say(f"initialising from {meta['path']} (two-step transfer)")
    cdir, priors = _prepare_corpus(corpus, out, priors, info, sources,
                                   {"seed": seed, **corpus_kwargs}, priors_kwargs)
    manifest = read_manifest(cdir)
    say(f"corpus {cdir}: {manifest['n_train']} train / {manifest['n_val']} val cells")
    for src in manifest["sources"]:
        m = src["mapping"]
        say(f"  {src['source']}: {src['n_kept']}/{src['n_cells']} cells kept, "
            f"{m['n_mapped']}/{m['n_input']} genes mapped ({m['n_unmapped']} unmapped)")

    torch.manual_seed(seed)
    model = init_model if init_model is not None else CGCModel(mcfg, priors)
    model.train().to(info.device)
    check_fits(model.num_parameters(), mcfg, tcfg, info.device,
               model.text_table.numel() * model.text_table.element_size())
    if tcfg.sparse_gene_table:
        if info.world_size > 1:
            raise ConfigError("TrainConfig.sparse_gene_table works in a single process; set it "
                              "to false for torchrun/DDP training")
        use_sparse_gene_table(model)
        opt: torch.optim.Optimizer = RowSparseAdam(
            model.parameters(), lr=tcfg.lr, betas=tcfg.betas, eps=tcfg.eps,
            weight_decay=tcfg.weight_decay)
    else:
        opt = torch.optim.Adam(model.parameters(), lr=tcfg.lr, betas=tcfg.betas, eps=tcfg.eps,
                               weight_decay=tcfg.weight_decay)
    sched = make_scheduler(opt, tcfg.warmup_steps, tcfg.decay_gamma, tcfg.decay_every)
    use_amp = tcfg.amp and info.device.type == "cuda"
    amp_dtype = (torch.bfloat16 if use_amp and torch.cuda.is_bf16_supported()
                 else torch.float16)
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp and amp_dtype == torch.float16)

    def autocast() -> Any:
        if not use_amp:
            return contextlib.nullcontext()
        return torch.autocast("cuda", dtype=amp_dtype)

    step = 0
    history: list[dict[str, Any]] = []
    if resume_from is not None:
        st = load_train_state(resume_from)
        opt.load_state_dict(st["optimizer"])
        sched.load_state_dict(st["scheduler"])
        scaler.load_state_dict(st["scaler"])
        step = int(st["step"])
        rng = st["rng"]
        if len(rng) != info.world_size:
            raise CGCError(f"checkpoint was written by {len(rng)} processes; resume with "
                           f"the same number (got {info.world_size})")
        _set_rng_state(rng[info.rank])

    train_reader = CorpusReader(cdir, "train", info.rank, info.world_size)
    if len(train_reader) == 0:
        raise CorpusError(f"rank {info.rank} got no training cells from {cdir}; use more "
                          "shards (smaller --shard-size) or fewer processes")
    val_reader = CorpusReader(cdir, "val", info.rank, info.world_size)
    builder = CellGraphBuilder(priors, mcfg)
    per_step = tcfg.batch_size * tcfg.grad_accum
    total = tcfg.max_steps
    if total is None:
        cells = manifest["n_train"]
        total = tcfg.epochs * math.ceil(cells / (per_step * info.world_size))
    stream = PretrainStream(train_reader, builder, mcfg, seed, info.rank)
    limit = None if tcfg.val_batches is None else tcfg.val_batches * tcfg.batch_size
    val_set = EvalSet(val_reader, builder, mcfg, seed, limit)
    val_loader = _loader(val_set, range(len(val_set)), tcfg.batch_size, tcfg.num_workers)
    baseline = mean_predictor_loss(val_set, mcfg) if len(val_set) and info.is_main else None
    if baseline is not None:
        say(f"validation loss of the per-gene-mean predictor: {baseline:.4f}")
    net: torch.nn.Module = model
    if info.distributed:
        # The text table buffer is identical on every rank: never re-broadcast it.
        sync_kw = ({"forward_sync_buffers": False} if "forward_sync_buffers" in
                   inspect.signature(DistributedDataParallel).parameters
                   else {"broadcast_buffers": False})
        net = DistributedDataParallel(
            model, device_ids=[info.device] if info.device.type == "cuda" else None, **sync_kw
        )
    train_loader = _loader(stream, range(step * per_step, total * per_step), tcfg.batch_size,
                           tcfg.num_workers)
    metrics_f = out / "metrics.jsonl"
    if info.is_main:
        (out / "run.json").write_text(json.dumps(
            {"model": mcfg.to_dict(), "train": tcfg.to_dict(), "seed": seed,
             "world_size": info.world_size, "corpus": str(cdir),
             "priors_hash": priors.content_hash,
             "init_checkpoint": str(init_checkpoint) if init_checkpoint else None,
             "mean_predictor_val_loss": baseline}, indent=2))
    kill_at = int(os.environ.get(KILL_ENV, "-1"))
    last_ckpt: Path | None = resume_from

    def record(entry: dict[str, Any]) -> None:
        history.append(entry)
        if info.is_main:
            with metrics_f.open("a") as f:
                f.write(json.dumps(entry) + "\n")

    def checkpoint() -> Path | None:
        rng = ddp.gather_objects(_rng_state(), info)
        path = None
        if info.is_main:
            state = {"optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                     "scaler": scaler.state_dict(), "step": step, "rng": rng, "seed": seed}
            name = f"step-{step:08d}"
            path = save_checkpoint(ckdir / name, model, priors, step=step, train_state=state,
                                   meta={"train": tcfg.to_dict(), "seed": seed,
                                         "corpus": str(cdir),
                                         "world_size": info.world_size})
            mark_latest(ckdir, name)
        ddp.barrier(info)
        return path if path is not None else ckdir / f"step-{step:08d}"

    micro = 0
    acc_loss = acc_cells = 0.0
    t0 = time.perf_counter()
    it: Iterator[Batch] = iter(train_loader)
    host_task = (contextlib.nullcontext(None) if show or not info.is_main
                 else progress_task("pre-training", total))
    with _progress(show, total, step) as bar, host_task as host, deterministic_cpu(info.device):
        if host is not None:
            host.update(step)
        while step < total:
            batch = next(it).to(info.device)
            micro += 1
            sync = micro % tcfg.grad_accum == 0
            ctx = (net.no_sync() if info.distributed and not sync  # type: ignore[operator]
                   else contextlib.nullcontext())
            with ctx:
                with autocast():
                    out_ = net(batch)
                    loss, _ = model.pretrain_loss(batch, out_)
                scaler.scale(loss / tcfg.grad_accum).backward()
            acc_loss += float(loss.detach()) * batch.num_graphs
            acc_cells += batch.num_graphs
            if not sync:
                continue
            if tcfg.grad_clip is not None:
                scaler.unscale_(opt)
                if tcfg.sparse_gene_table:
                    clip_grad_norm(model.parameters(), tcfg.grad_clip)
                else:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), tcfg.grad_clip)
            scaler.step(opt)
            scaler.update()
            opt.zero_grad(set_to_none=True)
            lr = sched.get_last_lr()[0]
            sched.step()
            step += 1
            tot_loss, tot_cells = ddp.all_reduce_sum([acc_loss, acc_cells], info)
            dt = time.perf_counter() - t0
            t0 = time.perf_counter()
            entry = {"step": step, "loss": tot_loss / tot_cells, "lr": lr,
                     "cells_per_s": tot_cells / max(dt, 1e-9)}
            acc_loss = acc_cells = 0.0
            if bar is not None:
                bar.update(bar.task_ids[0], completed=step, cps=entry["cells_per_s"],
                           loss=entry["loss"])
            elif host is not None:
                host.update(step, f"loss {entry['loss']:.4f} · {entry['cells_per_s']:.0f} cells/s")
            if len(val_set) and (step % tcfg.eval_every == 0 or step == total):
                entry["val_loss"] = evaluate(model, val_loader, info.device, info, autocast)
                if baseline is not None:
                    entry["mean_predictor_val_loss"] = baseline
                    if not show:
                        say(f"step {step}/{total}: validation loss {entry['val_loss']:.4f} "
                            f"(per-gene-mean predictor {baseline:.4f})")
            record(entry)
            if step % tcfg.log_every == 0 and not show:
                _log.debug(json.dumps(entry))  # every entry is in metrics.jsonl
            if step % tcfg.checkpoint_every == 0 or step == total:
                last_ckpt = checkpoint()
            t0 = time.perf_counter()  # exclude evaluation/checkpoint time from cells/s
            if step == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)
    digests = ddp.gather_objects(weights_digest(model), info)
    if info.is_main:
        (out / "ranks.json").write_text(json.dumps({"step": step, "weights_sha256": digests}))
        if len(set(digests)) > 1:
            say("warning: ranks ended with different weights")
    return PretrainResult(out, step, last_ckpt, history, baseline)


def weights_digest(model: torch.nn.Module) -> str:
    """Return a sha256 over all parameters (to check that DDP ranks agree)."""
    import hashlib

    h = hashlib.sha256()
    for name, p in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(p.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def main(argv: list[str] | None = None) -> None:
    """Entry point of ``python -m cgc.train.pretrain`` (same options as the CLI)."""
    from cgc.cli import app

    app(["pretrain", *(argv if argv is not None else __import__("sys").argv[1:])])


if __name__ == "__main__":
    main()
