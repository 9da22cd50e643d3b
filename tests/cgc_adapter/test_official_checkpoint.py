"""``cgc.checkpoint=FILE``: the official CGCompass weights run through the adapter.

The weights file has every official parameter (names/shapes from the official source, see
``tests/cgc/test_official_weights.py``) with the release's vocabulary size, so the real
``vocab.json`` of the release (card ``cgc_vocab``) fits it.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from baselines.cgc_model import CGCAdapter
from benchmarks.data.fetch import sha256_file
from benchmarks.errors import InputError

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "cgc"))
import test_official_weights as ow  # noqa: E402


@pytest.fixture(scope="module")
def release(tmp_path_factory, shared_data: Path) -> tuple[Path, Path]:
    import json

    n_vocab = len(json.loads((shared_data / "vocab" / "cgc" / "vocab.json").read_text()))
    old = ow.NTOKEN
    ow.NTOKEN = n_vocab
    try:
        state = ow.official_state(2)
    finally:
        ow.NTOKEN = old
    root = tmp_path_factory.mktemp("cgc_release")
    weights = root / "CGCompass_pretrain_weights.pt"
    torch.save(state, weights)
    rng = np.random.default_rng(0)
    text = pd.Series({i: rng.normal(size=ow.TEXT).astype(np.float32) for i in range(3, n_vocab, 7)})
    text.to_pickle(root / "embeding.pickle")
    return weights, root / "embeding.pickle"


def test_official_weights_give_cell_embeddings(release, pbmc68k_raw) -> None:
    weights, text = release
    cells = pbmc68k_raw[:16].copy()
    cells.uns["cgcbench"] = {"dataset": {"name": "pbmc68k_reduced", "expression_kind": "log1p_normalized"}}
    adapter = CGCAdapter(seed=0, checkpoint=str(weights), official_text=str(text))
    assert adapter.init == "pretrained"
    adapter.fit(cells)
    z = adapter.embed_cells(cells)
    assert z.shape == (16, ow.D) and np.isfinite(z).all()
    assert adapter.checkpoint_sha256 == sha256_file(weights)
    assert adapter.params["release"].startswith("CGCompass") and "TRRUST" in adapter.params["official_graph"]
    # different cells, different embeddings; same seed, same numbers
    assert np.linalg.norm(z[0] - z[1]) > 1e-4
    again = CGCAdapter(seed=0, checkpoint=str(weights), official_text=str(text)).embed_cells(cells)
    np.testing.assert_array_equal(z, again)
    genes = adapter.embed_genes(["CD3E", "LYZ", "NOT_A_GENE"])
    assert list(genes.index) == ["CD3E", "LYZ"]
    with pytest.raises(InputError, match="perturbation fine-tuning with the official CGCompass weights"):
        adapter.fit_perturbation(cells, "condition")


def test_official_graph_follows_graph_generate(release, pbmc68k_raw) -> None:
    weights, text = release
    cells = pbmc68k_raw[:60].copy()
    cells.uns["cgcbench"] = {"dataset": {"name": "x", "expression_kind": "log1p_normalized"}}
    runner = CGCAdapter(seed=0, checkpoint=str(weights), official_text=str(text)).official()
    X, ids = runner.preprocess(cells)
    assert X.shape[1] == len(ids) and X.max() <= 50 and X.min() >= 0  # 51 bins
    edge_index, attr, only_corr = runner.edges(X, ids)
    n = len(ids)
    to_cls = edge_index[1] == 0
    assert sorted(edge_index[0, to_cls].tolist()) == list(range(1, n + 1))  # every gene → <cls>
    assert not attr[:, to_cls].any()
    corr = np.corrcoef(X.T)
    np.fill_diagonal(corr, 0)
    corr = np.nan_to_num(corr)
    src, dst = edge_index[:, ~to_cls] - 1
    np.testing.assert_allclose(attr[1, ~to_cls], corr[src, dst], atol=1e-5)
    assert (np.abs(corr[src, dst])[only_corr[~to_cls]] > 0.6).all()
    chromo = attr[2, ~to_cls]
    assert ((chromo == 0) | ((chromo >= 1) & (chromo <= 101))).all()


def test_official_weights_need_their_text_embeddings(release) -> None:
    weights, _ = release
    with pytest.raises(InputError, match="official_text"):
        CGCAdapter(seed=0, checkpoint=str(weights)).official()


def test_weights_verify_tells_a_cgcbench_checkpoint_from_a_geneformer_dir(tiny_checkpoint: Path) -> None:
    from benchmarks.weights import verify

    found = verify(tiny_checkpoint)  # it has a config.json too; it is not a BERT directory
    assert found.format == "cgcbench CGC checkpoint directory" and "model.pt" in found.files
