"""Progress inside a cell: pre-training steps, fine-tuning epochs and text vectors are reported
to the host's sink (nested bars on a terminal, a few plain lines in a log), never as a flood of
per-step JSON; text vectors are stored chunk by chunk so an interrupted build resumes."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from rich.console import Console
from rich.progress import Progress

from benchmarks.progress_display import NestedBars, PlainLines
from cgc.finetune.train import TrainSettings, run_loop
from cgc.priors.text import HashingTextEncoder, TextEmbeddingCache
from cgc.progress import RecordingSink, is_hosted, note, reporting_to, task

REPO = Path(__file__).resolve().parents[1]


def _regression_loop(settings: TrainSettings, description: str = "fine-tuning",
                     val_sign: float = 1.0) -> None:
    """A real (tiny) least-squares fit through ``run_loop``, with validation.

    ``val_sign=-1`` flips the held-out targets, so fitting the training items makes the
    validation loss worse after the first epoch (early stopping must fire).
    """
    rng = np.random.default_rng(0)
    X = torch.as_tensor(rng.normal(size=(64, 4)), dtype=torch.float32)
    y = X @ torch.tensor([1.0, -2.0, 0.5, 0.0])
    lin = torch.nn.Linear(4, 1)

    def step(idx: np.ndarray, _rng: np.random.Generator) -> torch.Tensor:
        return torch.mean((lin(X[idx]).squeeze(-1) - y[idx]) ** 2)

    def validate() -> float:
        return float(torch.mean((lin(X[48:]).squeeze(-1) - val_sign * y[48:]) ** 2))

    run_loop(lin.parameters(), 48, settings, 0, step, [lin], validate=validate, description=description)


def test_fine_tuning_reports_steps_and_early_stop_to_the_installed_sink() -> None:
    rec = RecordingSink()
    settings = TrainSettings(epochs=40, batch_size=16, grad_accum=1, lr=3e-2, patience=2)
    assert not is_hosted()
    with reporting_to(rec):
        assert is_hosted()
        _regression_loop(settings, "fine-tuning (test)", val_sign=-1.0)
    kinds = [e[0] for e in rec.events]
    assert rec.events[0] == ("open", "fine-tuning (test)", "120")  # 40 epochs × 3 batches
    assert kinds[-1] == "close" and kinds.count("open") == 1
    updates = [int(e[2]) for e in rec.events if e[0] == "update"]
    assert updates == list(range(1, len(updates) + 1)) and len(updates) < 120
    stops = [e[2] for e in rec.events if e[0] == "milestone"]
    assert len(stops) == 1 and stops[0].startswith("stopped early after epoch")


def test_plain_lines_print_start_quarters_and_end_not_every_step() -> None:
    lines: list[str] = []
    with reporting_to(PlainLines(lines.append)):
        _regression_loop(TrainSettings(epochs=8, batch_size=16, grad_accum=1, lr=1e-2, patience=None))
        note("a note of the host")
    assert lines[0] == "  fine-tuning: started (total 24)"
    assert [ln.split(":")[1].split("·")[0].strip() for ln in lines[1:4]] == ["6/24", "12/24", "18/24"]
    assert lines[4].startswith("  fine-tuning: ended at 24/24 · epoch 8/8 · loss ")
    assert lines[5] == "a note of the host" and len(lines) == 6


def test_nested_bars_are_added_under_the_matrix_bar_and_removed_when_done() -> None:
    console = Console(file=io.StringIO(), force_terminal=True, width=120)
    with Progress(console=console, auto_refresh=False) as progress:
        progress.add_task("running", total=2)
        sink = NestedBars(progress)
        with reporting_to(sink), task("pre-training", 10) as outer:
            outer.update(3, "loss 1.0")
            with task("text vectors", 5) as inner:
                inner.update(5)
                descs = [t.description for t in progress.tasks]
                assert descs[1].startswith("  └ pre-training · loss 1.0")
                assert descs[2] == "    └ text vectors"  # one level deeper
            assert len(progress.tasks) == 2
        assert [t.description for t in progress.tasks] == ["running"]


def test_text_vectors_are_stored_per_chunk_and_an_interrupted_build_resumes(tmp_path: Path) -> None:
    texts = [f"GENE{i}: a gene with function number {i}." for i in range(10)]

    class Failing(HashingTextEncoder):
        def __init__(self, fail_on_call: int | None) -> None:
            super().__init__(16)
            self.calls: list[int] = []
            self.fail_on_call = fail_on_call

        def encode(self, batch):  # type: ignore[no-untyped-def]
            self.calls.append(len(batch))
            if len(self.calls) == self.fail_on_call:
                raise KeyboardInterrupt
            return super().encode(batch)

    cache = TextEmbeddingCache(tmp_path, chunk_size=3)
    with pytest.raises(KeyboardInterrupt):
        cache.embed(Failing(fail_on_call=3), texts)
    rec = RecordingSink()
    again = Failing(fail_on_call=None)
    with reporting_to(rec):
        vecs = cache.embed(again, texts)
    assert again.calls == [3, 1]  # the two chunks stored before the interruption are reused
    assert np.allclose(vecs, HashingTextEncoder(16).encode(texts))
    assert rec.events[0] == ("open", "text vectors (hashing-16)", "4")
    assert [e[2] for e in rec.events if e[0] == "update"] == ["3", "4"]
    assert len(list(next(tmp_path.iterdir()).glob("*.npz"))) == 4


@pytest.mark.slow
def test_cli_log_file_shows_the_cgc_cell_inside(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-m", "benchmarks.cli", "run", "annotation", "--models", "cgc",
                           "--datasets", "pbmc68k_reduced", "--quick", "--offline",
                           "--results-dir", str(tmp_path / "res")],
                          capture_output=True, text=True, cwd=tmp_path, env=env, timeout=1500)
    assert proc.returncode == 0, proc.stderr[-3000:]
    err = proc.stderr
    for line in ("cell 1/1 start", "  pre-training: started (total 30)", "  pre-training: ended at 30/30",
                 "  fine-tuning (cell-type classifier): started"):
        assert line in err, err[-3000:]
    assert '{"step"' not in err and "Loading weights" not in err

