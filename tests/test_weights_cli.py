"""``cgcbench weights list|verify``: release table, format detection, bad input → one line, exit 2."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]


def cgcbench(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, COLUMNS="200", PYTHONPATH=str(REPO))
    return subprocess.run(
        [sys.executable, "-m", "benchmarks.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def _one_line_error(proc: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), proc.stderr
    for n in needles:
        assert n in lines[0], lines[0]


def test_weights_list_names_every_release(tmp_path: Path) -> None:
    proc = cgcbench("weights", "list", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    for name in (
        "scGPT_human",
        "Geneformer-V1-10M",
        "Geneformer-V2-104M",
        "CGCompass",
        "acca93d114ca62c3f0f50debbd23e8c87f0714f4737764454f6b2b13f2e8580f",
    ):
        assert name in proc.stdout
    assert list(tmp_path.iterdir()) == []


@pytest.fixture(scope="module")
def scgpt_dir(tmp_path_factory, shared_data: Path) -> Path:
    """A small scGPT release directory: whole-human vocab, 64-wide model saved with Wqkv names."""
    from baselines.scgpt_model import _scgpt

    scgpt = _scgpt()
    src = shared_data / "vocab" / "scgpt"
    out = tmp_path_factory.mktemp("w") / "scGPT_human"
    out.mkdir()
    shutil.copy(src / "finetuned_model_vocab.json", out / "vocab.json")
    args = json.loads((src / "finetuned_model_args.json").read_text()) | {
        "embsize": 16,
        "d_hid": 16,
        "nheads": 2,
        "nlayers": 1,
    }
    (out / "args.json").write_text(json.dumps(args))
    vocab = scgpt.tokenizer.GeneVocab.from_file(out / "vocab.json")
    model = scgpt.model.TransformerModel(
        ntoken=len(vocab),
        d_model=16,
        nhead=2,
        d_hid=16,
        nlayers=1,
        vocab=vocab,
        pad_token="<pad>",
        do_mvc=True,
        use_fast_transformer=False,
    )
    torch.save(
        {k.replace("in_proj_", "Wqkv."): v for k, v in model.state_dict().items()}, out / "best_model.pt"
    )
    return out


def test_weights_verify_scgpt_release(scgpt_dir: Path, tmp_path: Path) -> None:
    proc = cgcbench("weights", "verify", str(scgpt_dir), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "scGPT release directory" in proc.stdout and "release scGPT_human" in proc.stdout
    assert "vocab.json matches scGPT_human" in proc.stdout and "sha256 best_model.pt" in proc.stdout


def _refused(path: Path, *needles: str) -> None:
    from benchmarks.errors import InputError
    from benchmarks.weights import verify

    with pytest.raises(InputError) as info:
        verify(path)
    msg = str(info.value)
    assert "\n" not in msg, msg
    for n in needles:
        assert n in msg, msg


def test_weights_verify_bad_inputs(scgpt_dir: Path, tmp_path: Path) -> None:
    work = tmp_path / "cwd"
    work.mkdir()
    bad = tmp_path / "bad"
    shutil.copytree(scgpt_dir, bad)
    # truncated weights: through the CLI (one line on stderr, exit 2, nothing written)
    (bad / "best_model.pt").write_bytes((scgpt_dir / "best_model.pt").read_bytes()[:2000])
    _one_line_error(cgcbench("weights", "verify", str(bad), cwd=work), "best_model.pt", "truncated")
    assert list(work.iterdir()) == []
    # vocabulary that does not belong to the weights
    shutil.copy(scgpt_dir / "best_model.pt", bad / "best_model.pt")
    vocab = json.loads((bad / "vocab.json").read_text())
    vocab["EXTRA"] = len(vocab)
    (bad / "vocab.json").write_text(json.dumps(vocab))
    _refused(bad, "do not belong together")
    # a pickle that is not weights
    junk = tmp_path / "model.pt"
    junk.write_bytes(pickle.dumps({"weights": [1, 2, 3]}))
    _refused(junk, "model.pt", "pickle")
    # a tensor file of another format
    other = tmp_path / "other.pt"
    torch.save({"fc.weight": torch.zeros(2, 2)}, other)
    _refused(other, "no supported release")


def test_weights_verify_official_cgc_file(tmp_path: Path) -> None:
    sys.path.insert(0, str(REPO / "tests" / "cgc"))
    from test_official_weights import official_state  # the official names and shapes

    path = tmp_path / "CGCompass_pretrain_weights.pt"
    torch.save(official_state(), path)
    from benchmarks.weights import verify

    found = verify(path)
    assert found.format.startswith("CGCompass official weights") and found.release == "CGCompass"
    assert "every parameter mapped" in found.checks[0]
    state = official_state()
    state.pop("model.bn.running_var")
    torch.save(state, path)
    _refused(path, "model.bn.running_var")
