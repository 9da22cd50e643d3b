"""Geneformer: rank-value encoding, scratch MLM pre-training, embeddings, annotation, checkpoint."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from baselines.geneformer_model import GeneformerAdapter, GeneformerVocab
from benchmarks.data.fetch import sha256_file

TINY = {
    "architecture": {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
                     "intermediate_size": 64},
    "model_input_size": 128, "pretrain_epochs": 1, "batch_size": 32,
}


def test_rank_value_encoding_matches_geneformer_rule() -> None:
    vocab = GeneformerVocab(
        token={"<pad>": 0, "<mask>": 1, "ENSG_A": 2, "ENSG_B": 3, "ENSG_C": 4},
        median={"ENSG_A": 1.0, "ENSG_B": 10.0, "ENSG_C": 0.5},
        name_to_id={},
    )
    X = sp.csr_matrix(np.array([[5.0, 20.0, 0.0, 7.0], [0.0, 0.0, 1.0, 3.0]]))
    ids = ["ENSG_A", "ENSG_B", "ENSG_C", None]  # the unknown gene counts in the total only
    seqs = vocab.rank_encode(X, ids, max_len=8)
    # cell 0: A 5/1=5, B 20/10=2 -> [A, B]; cell 1: C 1/0.5=2 -> [C]
    assert [s.tolist() for s in seqs] == [[2, 3], [4]]
    assert vocab.rank_encode(X, ids, max_len=1)[0].tolist() == [2]


@pytest.fixture(scope="module")
def scratch(kang_small) -> GeneformerAdapter:
    model = GeneformerAdapter(seed=0, quick=True, **TINY)
    model.fit(kang_small, batch_key="batch")
    return model


def test_geneformer_scratch_cell_and_gene_embeddings(scratch, kang_small) -> None:
    assert scratch.init == "scratch" and scratch.checkpoint_sha256 is None
    z = scratch.embed_cells(kang_small)
    assert z.shape == (kang_small.n_obs, 32) and np.isfinite(z).all()
    assert scratch.extra_metrics()["gene_coverage_cells"] > 0.8
    assert np.isfinite(scratch.extra_metrics()["final_mlm_loss"])
    emb = scratch.embed_genes(["TP53", "GATA1", "NOT_A_GENE"])
    assert list(emb.index) == ["TP53", "GATA1"] and emb.shape[1] == 32
    by_ens = scratch.embed_genes(["ENSG00000141510"], id_type="ensembl")
    np.testing.assert_array_equal(by_ens.iloc[0].to_numpy(), emb.loc["TP53"].to_numpy())


def test_geneformer_checkpoint_layout_round_trip(scratch, kang_small, tmp_path: Path) -> None:
    # the released layout: config.json + pytorch_model.bin of a BertForMaskedLM
    ckpt = tmp_path / "geneformer-6L-30M"
    ckpt.mkdir()
    scratch.mlm_.config.save_pretrained(ckpt)
    torch.save(scratch.mlm_.state_dict(), ckpt / "pytorch_model.bin")
    loaded = GeneformerAdapter(seed=0, quick=True, checkpoint=str(ckpt), **TINY)
    assert loaded.init == "pretrained"
    assert loaded.checkpoint_sha256 == sha256_file(ckpt / "pytorch_model.bin")
    loaded.fit(kang_small)  # zero-shot: no training
    np.testing.assert_allclose(loaded.embed_cells(kang_small), scratch.embed_cells(kang_small),
                               rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(loaded.embed_genes(["TP53"]).to_numpy(),
                                  scratch.embed_genes(["TP53"]).to_numpy())


def test_geneformer_annotation(pbmc_labelled, determinism_probe) -> None:
    rng = np.random.default_rng(0)
    cells = rng.permutation(pbmc_labelled.n_obs)
    ref, query = pbmc_labelled[cells[:200]].copy(), pbmc_labelled[cells[200:280]].copy()
    model = GeneformerAdapter(seed=0, quick=True, finetune_epochs=1, **TINY)
    model.fit_classifier(ref, "bulk_labels")
    pred = model.predict_labels(query)
    assert pred.shape == (query.n_obs,) and set(pred) <= set(ref.obs["bulk_labels"])
    assert model.embed_cells(query).shape == (query.n_obs, 32)
    assert determinism_probe and all(determinism_probe)  # CPU training on deterministic kernels
