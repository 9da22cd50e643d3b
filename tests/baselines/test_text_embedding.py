"""Text-description gene embeddings: default MiniLM and a BioBERT-layout checkpoint."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from baselines.text_embedding import TextEmbeddingAdapter
from benchmarks.data.fetch import sha256_file


def test_default_model_is_minilm_and_recorded_as_such() -> None:
    model = TextEmbeddingAdapter(seed=0, quick=True, cache=False)
    emb = model.embed_genes(["TP53", "MDM2", "GATA1", "NOT_A_GENE"])
    assert model.params["text_model"] == "all-MiniLM-L6-v2"
    assert "biobert" not in model.params["text_model"].lower()
    assert list(emb.index) == ["TP53", "MDM2", "GATA1"] and emb.shape[1] == 384
    assert model.extra_metrics()["gene_coverage"] == pytest.approx(0.75)
    np.testing.assert_allclose(np.linalg.norm(emb.to_numpy(), axis=1), 1.0, rtol=1e-5)
    assert model.init == "pretrained" and len(model.checkpoint_sha256 or "") == 64
    by_ens = model.embed_genes(["ENSG00000141510"], id_type="ensembl")
    np.testing.assert_allclose(by_ens.iloc[0].to_numpy(), emb.loc["TP53"].to_numpy(), atol=1e-5)


def _tiny_bert_dir(path: Path) -> tuple[object, object]:
    """Write a random-weight BERT in the Hugging Face layout BioBERT is published in."""
    from transformers import BertConfig, BertModel, BertTokenizerFast

    chars = "abcdefghijklmnopqrstuvwxyz0123456789"
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *chars, *".:;,-"]
    words += ["##" + c for c in chars]
    path.mkdir()
    (path / "vocab.txt").write_text("\n".join(words) + "\n")
    tok = BertTokenizerFast(vocab_file=str(path / "vocab.txt"), do_lower_case=True)
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=len(words), hidden_size=32, num_hidden_layers=2,
                     num_attention_heads=2, intermediate_size=64, max_position_embeddings=512)
    bert = BertModel(cfg).eval()
    bert.save_pretrained(path)
    tok.save_pretrained(path)
    return bert, tok


def test_biobert_layout_checkpoint_matches_in_memory_model(tmp_path: Path) -> None:
    bert, tok = _tiny_bert_dir(tmp_path / "biobert")
    model = TextEmbeddingAdapter(seed=0, checkpoint=str(tmp_path / "biobert"), cache=False)
    assert model.params["text_model"] == "local:biobert"
    assert model.checkpoint_sha256 == sha256_file(tmp_path / "biobert" / "model.safetensors")
    emb = model.embed_genes(["TP53", "GATA1"])
    texts = model.gene_texts(["TP53", "GATA1"])
    with torch.no_grad():
        batch = tok([texts["TP53"], texts["GATA1"]], padding=True, truncation=True,
                    max_length=512, return_tensors="pt")
        hidden = bert(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).float()
        mean = (hidden * mask).sum(1) / mask.sum(1)
        ref = torch.nn.functional.normalize(mean, dim=1).numpy()
    np.testing.assert_allclose(emb.to_numpy(), ref, atol=1e-5)
