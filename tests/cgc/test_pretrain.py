"""Pre-training: loss goes down, kill-and-resume is exact, DDP ranks agree, transfer works."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import anndata as ad
import pytest
import scipy.sparse as sp
from typer.testing import CliRunner

from cgc import CGCConfig, GenePriors, NoOverlapError, build_corpus, load_checkpoint, pretrain
from cgc.cli import app
from cgc.config import RunConfig, TrainConfig
from cgc.errors import CorpusError, PriorsMismatchError

REPO = Path(__file__).resolve().parents[2]


def tiny_run(**train: object) -> RunConfig:
    model = CGCConfig.small(d_model=32, n_heads=4, d_ff=64, max_genes=96,
                            n_transformer_layers=1, n_gnn_layers=2)
    base = TrainConfig.small(batch_size=8, lr=2e-3, warmup_steps=5, eval_every=10,
                             checkpoint_every=10, val_batches=4)
    return RunConfig(model, base.replace(**train))


def _write_toml(path: Path) -> Path:
    path.write_text('base = "small"\n[model]\nd_model = 32\nn_heads = 4\nd_ff = 64\n'
                    "max_genes = 96\nn_transformer_layers = 1\nn_gnn_layers = 2\n"
                    "[train]\nbatch_size = 8\nlr = 0.002\nwarmup_steps = 5\n"
                    "val_batches = 4\nlog_every = 1\n")
    return path


def test_short_pretraining_records_its_losses_and_the_per_gene_mean_control(corpus_dir: Path,
                                                                            tmp_path: Path) -> None:
    run = tiny_run(checkpoint_every=30, val_batches=3)
    res = pretrain(corpus_dir, tmp_path / "run", run, steps=30, seed=0, progress=False, log=None)
    vl = res.val_losses
    assert res.step == 30 and len(vl) == 3 and all(v == v for v in vl)
    # z-scored targets: predicting each gene's mean costs about 1 per loss term (2 in all)
    assert 1.0 < res.mean_predictor_val_loss < 4.0
    info = json.loads((tmp_path / "run" / "run.json").read_text())
    assert info["mean_predictor_val_loss"] == res.mean_predictor_val_loss
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 30 and "cells_per_s" in json.loads(lines[0])
    model, priors, meta = load_checkpoint(tmp_path / "run")
    assert meta["step"] == 30


def _cli(args: list[str], env: dict[str, str] | None = None, torchrun: int = 0
         ) -> subprocess.CompletedProcess:
    e = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", **(env or {})}
    if torchrun:
        cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={torchrun}",
               "--standalone", "-m", "cgc.train.pretrain", *args]
    else:
        cmd = [sys.executable, "-m", "cgc.train.pretrain", *args]
    return subprocess.run(cmd, env=e, capture_output=True, text=True, timeout=300)


def test_kill_and_resume_is_exact(corpus_dir: Path, tmp_path: Path) -> None:
    cfg = _write_toml(tmp_path / "c.toml")
    common = ["--corpus", str(corpus_dir), "--config", str(cfg), "--steps", "8",
              "--checkpoint-every", "4", "--eval-every", "4", "--no-progress", "--seed", "3"]
    ref = _cli([*common, "--out", str(tmp_path / "ref")])
    assert ref.returncode == 0, ref.stderr[-3000:]
    killed = _cli([*common, "--out", str(tmp_path / "kr")], env={"CGC_TEST_KILL_AT_STEP": "4"})
    assert killed.returncode == -9, killed.stderr[-3000:]
    assert (tmp_path / "kr/checkpoints/LATEST").read_text() == "step-00000004"
    resumed = _cli([*common, "--out", str(tmp_path / "kr"), "--resume"])
    assert resumed.returncode == 0, resumed.stderr[-3000:]

    def losses(run: Path) -> dict[int, dict]:
        return {d["step"]: d for d in map(json.loads, (run / "metrics.jsonl").open())}

    a, b = losses(tmp_path / "ref"), losses(tmp_path / "kr")
    assert sorted(b) == list(range(1, 9))
    for s in range(1, 9):
        assert a[s]["loss"] == b[s]["loss"], s
    assert a[8]["val_loss"] == b[8]["val_loss"]
    ra = json.loads((tmp_path / "ref/ranks.json").read_text())["weights_sha256"]
    rb = json.loads((tmp_path / "kr/ranks.json").read_text())["weights_sha256"]
    assert ra == rb


def test_ddp_two_ranks_gloo(corpus_dir: Path, tmp_path: Path) -> None:
    cfg = _write_toml(tmp_path / "c.toml")
    out = tmp_path / "ddp"
    r = _cli(["--corpus", str(corpus_dir), "--config", str(cfg), "--steps", "4",
              "--checkpoint-every", "4", "--eval-every", "4", "--no-progress", "--out", str(out),
              "--device", "cpu"], torchrun=2)
    assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]
    digests = json.loads((out / "ranks.json").read_text())["weights_sha256"]
    assert len(digests) == 2 and digests[0] == digests[1]
    meta = json.loads((out / "checkpoints/step-00000004/meta.json").read_text())
    assert meta["world_size"] == 2


@pytest.mark.slow
def test_two_step_transfer(corpus_dir: Path, tmp_path: Path, pbmc_small: ad.AnnData,
                           priors: GenePriors) -> None:
    first = pretrain(corpus_dir, tmp_path / "s1", tiny_run(), steps=3, progress=False, log=None)
    # second step on a new corpus built with the first checkpoint's priors
    c2 = build_corpus([pbmc_small[:400]], tmp_path / "c2", priors, shard_size=200,
                      val_fraction=0.05, min_genes=100, seed=1)
    second = pretrain(c2, tmp_path / "s2", tiny_run(), steps=3, progress=False, log=None,
                      init_checkpoint=first.checkpoint)
    assert second.step == 3
    run = json.loads((tmp_path / "s2/run.json").read_text())
    assert run["init_checkpoint"] == str(first.checkpoint)
    # a corpus built with different priors is refused
    other = GenePriors(priors.vocab, {**priors.arrays, "corr": priors.arrays["corr"] * 0},
                       priors.meta)
    c3 = build_corpus([pbmc_small[:200]], tmp_path / "c3", other, val_fraction=0.05,
                      min_genes=100)
    with pytest.raises(PriorsMismatchError, match="rebuild the corpus"):
        pretrain(c3, tmp_path / "s3", tiny_run(), steps=1, progress=False, log=None,
                 init_checkpoint=first.checkpoint)


def test_corpus_bad_inputs(priors: GenePriors, tmp_path: Path) -> None:
    bad = ad.AnnData(sp.csr_matrix([[1.0, 2.0], [3.0, 0.0]]))
    bad.var_names = ["NOT_A_GENE_1", "NOT_A_GENE_2"]
    with pytest.raises(NoOverlapError, match="none of the 2 genes"):
        build_corpus([bad], tmp_path / "c", priors)
    with pytest.raises(CorpusError, match="corpus"):
        pretrain(tmp_path, tmp_path / "r", tiny_run(), steps=1, progress=False, log=None)


def test_cli_corpus_build(pbmc_small: ad.AnnData, priors: GenePriors, tmp_path: Path) -> None:
    priors.save(tmp_path / "bundle")
    pbmc_small[:150].write_h5ad(tmp_path / "x.h5ad")
    runner = CliRunner()
    r = runner.invoke(app, ["corpus", "build", "--inputs", str(tmp_path / "x.h5ad"),
                            "--out", str(tmp_path / "c"), "--priors", str(tmp_path / "bundle"),
                            "--shard-size", "50", "--seed", "1", "--min-genes", "100"])
    assert r.exit_code == 0, r.output
    man = json.loads((tmp_path / "c/corpus.json").read_text())
    assert man["n_train"] + man["n_val"] == man["sources"][0]["n_kept"]
    assert len(man["shards"]) >= 2
    r = runner.invoke(app, ["corpus", "build", "--inputs", str(tmp_path / "x.h5ad"),
                            "--out", str(tmp_path / "c"), "--priors", str(tmp_path / "bundle")])
    assert r.exit_code == 2 and "not empty" in r.output


def test_corpus_hvg_and_reader(pbmc_small: ad.AnnData, priors: GenePriors, tmp_path: Path
                               ) -> None:
    from cgc.train.corpus import CorpusReader

    c = build_corpus([pbmc_small[:300]], tmp_path / "c", priors, shard_size=100, n_hvg=200,
                     min_genes=100, val_fraction=0.1, save_priors=False)
    r0, r1 = CorpusReader(c, rank=0, world_size=2), CorpusReader(c, rank=1, world_size=2)
    full = CorpusReader(c)
    assert len(r0) + len(r1) == len(full)
    genes = set()
    for i in range(len(full)):
        g, v = full[i]
        assert (v > 0).all() and len(g) == len(set(g.tolist()))
        genes |= set(g.tolist())
    assert len(genes) <= 200


@pytest.mark.slow
def test_pretraining_on_real_cells_beats_the_per_gene_mean_predictor(tmp_path: Path) -> None:
    """Masked pre-training learns about cells: its validation loss beats predicting gene means.

    Real corpus: 1,500 PBMC 3k cells (raw counts), panel of the 128 most variable genes with
    zeros, standardised targets; the control is each gene's mean target over the validation
    cells themselves (an oracle mean). Fails when the model learns nothing about the cell.
    """
    from baselines.gene_ids import resource_path
    from benchmarks.data.load import load_dataset
    from cgc.priors import HashingTextEncoder

    _, a = load_dataset("pbmc3k_raw")
    a = a[:1500].copy()
    a.var_names_make_unique()
    a.X = sp.csr_matrix(a.X)
    priors = GenePriors.build(vocab_path=resource_path("cgc_vocab"),
                              positions_path=resource_path("gene_positions_hg38"),
                              trrust_path=resource_path("trrust_human"),
                              gene_info_path=resource_path("gene_info_hs"),
                              text_encoder=HashingTextEncoder(16), text_cache_dir=tmp_path / "t",
                              extend_vocab=False)
    cdir = build_corpus([a], tmp_path / "corpus", priors, seed=0, val_fraction=0.05, min_genes=50,
                        panel_size=128, n_hvg=128)
    model = CGCConfig.small(d_model=32, n_heads=4, d_ff=64, max_genes=128, n_transformer_layers=1,
                            n_gnn_layers=1)
    train = TrainConfig.small(batch_size=16, lr=2e-3, warmup_steps=20, decay_every=100,
                              eval_every=200, checkpoint_every=200, val_batches=8)
    res = pretrain(cdir, tmp_path / "run", RunConfig(model, train), steps=200, seed=0,
                   progress=False, log=None)
    control = res.mean_predictor_val_loss
    assert res.val_losses[-1] < 0.9 * control, (res.val_losses, control)


def test_pretraining_reports_steps_and_validation_not_per_step_json(corpus_dir: Path, tmp_path: Path) -> None:
    from cgc.progress import RecordingSink, reporting_to

    said: list[str] = []
    rec = RecordingSink()
    with reporting_to(rec):
        pretrain(corpus_dir, tmp_path / "run", tiny_run(checkpoint_every=20, eval_every=10,
                                                        log_every=1), steps=20,
                 seed=0, progress=False, log=said.append)
    assert rec.events[0] == ("open", "pre-training", "20")
    assert [int(e[2]) for e in rec.events if e[0] == "update"] == list(range(0, 21))
    assert not [s for s in said if s.lstrip().startswith("{")], said  # no JSON flood
    assert [s.split(":")[0] for s in said if s.startswith("step ")] == ["step 10/20", "step 20/20"]
    assert len((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()) == 20
