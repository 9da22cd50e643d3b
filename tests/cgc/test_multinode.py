"""Multi-node pre-training: two ``torchrun --nnodes 2`` agents on loopback (c10d rendezvous, gloo).

Each agent is one "node" with one rank, as on two machines; the corpus and checkpoints are the
ordinary ones. One node is killed right after the step-4 checkpoint (SIGKILL of its rank), the
other then fails; rerunning both with ``--resume`` finishes with the weights and per-step losses
of an uninterrupted two-node run.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CONFIG = ('base = "small"\n[model]\nd_model = 32\nn_heads = 4\nd_ff = 64\nmax_genes = 96\n'
          "n_transformer_layers = 1\nn_gnn_layers = 2\n[train]\nbatch_size = 8\nlr = 0.002\n"
          "warmup_steps = 5\nval_batches = 4\nlog_every = 1\n")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _two_nodes(corpus: Path, out: Path, cfg: Path, kill_node1_at: int | None = None,
               resume: bool = False) -> list[subprocess.CompletedProcess]:
    port = _free_port()
    procs = []
    for node in (0, 1):
        env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
        env.pop("CGC_TEST_KILL_AT_STEP", None)
        if node == 1 and kill_node1_at is not None:
            env["CGC_TEST_KILL_AT_STEP"] = str(kill_node1_at)
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc-per-node", "1",
               "--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{port}",
               "--rdzv-id", f"{out.name}-{port}", "--local-addr", "127.0.0.1", "--max-restarts", "0",
               "-m", "cgc.train.pretrain", "--corpus", str(corpus), "--config", str(cfg),
               "--steps", "8", "--checkpoint-every", "4", "--eval-every", "4", "--no-progress",
               "--seed", "3", "--out", str(out), "--device", "cpu", *(["--resume"] if resume else [])]
        procs.append(subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                      text=True))
    done = []
    for p in procs:
        stdout, _ = p.communicate(timeout=600)
        done.append(subprocess.CompletedProcess(p.args, p.returncode, stdout, ""))
    return done


def _losses(run: Path) -> dict[int, dict]:
    return {d["step"]: d for d in map(json.loads, (run / "metrics.jsonl").open())}


@pytest.mark.slow
def test_two_nodes_on_loopback_kill_and_resume_is_exact(corpus_dir: Path, tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text(CONFIG)
    ref = _two_nodes(corpus_dir, tmp_path / "ref", cfg)
    assert all(r.returncode == 0 for r in ref), ref[0].stdout[-3000:] + ref[1].stdout[-3000:]
    digests = json.loads((tmp_path / "ref/ranks.json").read_text())["weights_sha256"]
    assert len(digests) == 2 and digests[0] == digests[1]
    meta = json.loads((tmp_path / "ref/checkpoints/step-00000008/meta.json").read_text())
    assert meta["world_size"] == 2

    killed = _two_nodes(corpus_dir, tmp_path / "kr", cfg, kill_node1_at=4)
    assert all(r.returncode != 0 for r in killed)  # node 1 died; node 0 lost its peer
    assert (tmp_path / "kr/checkpoints/LATEST").read_text() == "step-00000004"
    assert not (tmp_path / "kr/ranks.json").exists()
    resumed = _two_nodes(corpus_dir, tmp_path / "kr", cfg, resume=True)
    assert all(r.returncode == 0 for r in resumed), resumed[0].stdout[-3000:]
    assert "resuming from" in resumed[0].stdout
    assert json.loads((tmp_path / "kr/ranks.json").read_text())["weights_sha256"] == digests
    a, b = _losses(tmp_path / "ref"), _losses(tmp_path / "kr")
    assert sorted(b) == list(range(1, 9))
    for step in range(1, 9):
        assert a[step]["loss"] == b[step]["loss"], step
    assert a[8]["val_loss"] == b[8]["val_loss"]
