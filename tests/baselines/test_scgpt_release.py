"""scGPT release directory → adapter, proven against the ``scgpt`` package's own code.

The whole-human release is ``args.json`` + ``vocab.json`` + ``best_model.pt`` (a state dict
saved from flash-attn layers, hence ``self_attn.Wqkv.*``). Here a ``scgpt.model.TransformerModel``
is built from the release's own ``args.json`` and ``vocab.json`` (``../shared/data/vocab/scgpt``;
widths as in the file, 2 instead of 12 layers, random weights), saved in exactly that layout,
loaded through :class:`~baselines.scgpt_model.ScGPTAdapter` and compared with
``scgpt.tasks.embed_data`` and the package model's ``encoder`` on the same cells.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import anndata as ad
import numpy as np
import pytest
import torch

from baselines.gene_ids import var_gene_ids
from baselines.scgpt_model import ScGPTAdapter, _scgpt
from benchmarks.data.fetch import sha256_file
from benchmarks.errors import InputError

pytestmark = pytest.mark.filterwarnings("ignore")
N_LAYERS = 2


def _release_dir(tmp: Path, mirror: Path) -> tuple[Path, torch.nn.Module]:
    """Build the package's model from the release args/vocab and save it as released."""
    scgpt = _scgpt()
    src = mirror / "vocab" / "scgpt"
    args = json.loads((src / "finetuned_model_args.json").read_text())
    args["nlayers"] = N_LAYERS
    out = tmp / "scGPT_human"
    out.mkdir()
    (out / "args.json").write_text(json.dumps(args))
    shutil.copy(src / "finetuned_model_vocab.json", out / "vocab.json")
    vocab = scgpt.tokenizer.GeneVocab.from_file(out / "vocab.json")
    torch.manual_seed(1)
    model = scgpt.model.TransformerModel(
        ntoken=len(vocab),
        d_model=args["embsize"],
        nhead=args["nheads"],
        d_hid=args["d_hid"],
        nlayers=args["nlayers"],
        nlayers_cls=args["n_layers_cls"],
        n_cls=1,
        vocab=vocab,
        dropout=args["dropout"],
        pad_token=args["pad_token"],
        pad_value=args["pad_value"],
        do_mvc=True,
        do_dab=False,
        use_batch_labels=False,
        domain_spec_batchnorm=False,
        explicit_zero_prob=False,
        use_fast_transformer=False,
        pre_norm=False,
    ).eval()
    with torch.no_grad():  # non-trivial norms, so a skipped LayerNorm would show
        for name, p in model.named_parameters():
            if "norm" in name:
                p.add_(0.1 * torch.randn_like(p))
    # released weights come from flash-attn's FlashMHA: in_proj_* is stored as Wqkv.*
    state = {k.replace("self_attn.in_proj_", "self_attn.Wqkv."): v for k, v in model.state_dict().items()}
    assert any(".Wqkv.weight" in k for k in state)
    torch.save(state, out / "best_model.pt")
    return out, model


@pytest.fixture(scope="module")
def release(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> tuple[Path, torch.nn.Module]:
    return _release_dir(tmp_path_factory.mktemp("scgpt_release"), shared_data)


def test_scgpt_release_matches_package_embed_data(release, kang_small, monkeypatch) -> None:
    directory, package_model = release
    scgpt = _scgpt()
    cells = kang_small[:12].copy()
    cells.var["feature_name"] = [s or "" for s in var_gene_ids(cells, "symbol")]

    adapter = ScGPTAdapter(seed=0, checkpoint=str(directory), batch_size=5)
    assert adapter.init == "pretrained"
    assert adapter.checkpoint_sha256 == sha256_file(directory / "best_model.pt")
    np.random.seed(0)
    ours = adapter.embed_cells(cells)
    assert adapter.max_seq_len == 1200  # the release's own args.json
    assert adapter.params["release"] == "scGPT_human"  # vocab.json sha256 = the release's

    # scGPT spreads values tied on a bin edge with np.random: run the package's DataLoader in
    # this process (num_workers = min(#cpus, batch_size) = 0) so both use the same NumPy stream
    monkeypatch.setattr(scgpt.tasks.cell_emb.os, "sched_getaffinity", lambda pid: set())
    np.random.seed(0)
    theirs = scgpt.tasks.embed_data(
        ad.AnnData(cells.X.copy(), obs=cells.obs.copy(), var=cells.var.copy()),
        directory,
        gene_col="feature_name",
        max_length=1200,
        batch_size=5,
        device="cpu",
        use_fast_transformer=False,
    ).obsm["X_scGPT"]
    assert ours.shape == theirs.shape == (12, 512)
    np.testing.assert_allclose(ours, theirs, atol=1e-5)

    # gene embeddings: the package model's encoder on the same ids (scGPT's GRN tutorial)
    genes = ["CD3E", "MS4A1", "LYZ", "NKG7", "NOT_A_GENE"]
    emb = adapter.embed_genes(genes)
    assert list(emb.index) == genes[:4]
    vocab = scgpt.tokenizer.GeneVocab.from_file(directory / "vocab.json")
    with torch.no_grad():
        ref = package_model.encoder(torch.tensor([[vocab[g] for g in genes[:4]]]))[0].numpy()
    np.testing.assert_allclose(emb.to_numpy(), ref, atol=1e-6)


def test_scgpt_release_refuses_bad_files(release, tmp_path: Path) -> None:
    directory, _ = release
    bad = tmp_path / "bad"
    shutil.copytree(directory, bad)
    weights = bad / "best_model.pt"

    weights.write_bytes((directory / "best_model.pt").read_bytes()[:4096])  # truncated download
    with pytest.raises(InputError, match="best_model.pt.*(truncated|not a PyTorch)"):
        ScGPTAdapter(seed=0, checkpoint=str(bad)).base()

    torch.save({"model": "not weights", "epoch": 3}, weights)  # loads, but holds no tensors
    with pytest.raises(InputError, match="best_model.pt.*no tensor"):
        ScGPTAdapter(seed=0, checkpoint=str(bad)).base()

    class Hostile:
        def __reduce__(self):  # pragma: no cover - never executed by the loader
            return (print, ("pwned",))

    torch.save({"encoder.embedding.weight": Hostile()}, weights)
    with pytest.raises(InputError, match="best_model.pt.*weights_only"):
        ScGPTAdapter(seed=0, checkpoint=str(bad)).base()

    shutil.copy(directory / "best_model.pt", weights)
    vocab = json.loads((bad / "vocab.json").read_text())
    vocab["EXTRA_GENE"] = len(vocab)  # a vocabulary that is not the weights' one
    (bad / "vocab.json").write_text(json.dumps(vocab))
    with pytest.raises(InputError, match="encoder.embedding.weight"):
        ScGPTAdapter(seed=0, checkpoint=str(bad)).base()
