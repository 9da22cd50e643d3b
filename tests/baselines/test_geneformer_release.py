"""Geneformer V1 and V2 model directories: version detection, tokenisation, refusal of mixes.

Model directories are made with ``transformers.BertForMaskedLM`` from the shipped V1 configs
(``../shared/data/vocab/geneformer``; 2 layers instead of 6/12 to stay fast). The V2 series'
dictionaries are not shipped here, so the V2 directory carries dictionaries in the V2 format
(``<pad>``, ``<mask>``, ``<cls>``, ``<eos>`` = 0-3, then the genes with their V1 medians), named
as released (``token_dictionary_gc104M.pkl`` …) and a config with V2's 4,096 input size.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from baselines.geneformer_model import GeneformerAdapter, GeneformerVocab
from benchmarks.data.fetch import sha256_file
from benchmarks.errors import InputError

pytestmark = pytest.mark.filterwarnings("ignore")
N_LAYERS = 2


@pytest.fixture(scope="module")
def v1_vocab() -> GeneformerVocab:
    return GeneformerVocab.load()


def _bert_dir(directory: Path, config: dict, seed: int) -> Path:
    from transformers import BertConfig, BertForMaskedLM

    directory.mkdir(parents=True)
    torch.manual_seed(seed)
    model = BertForMaskedLM(BertConfig(**{**config, "num_hidden_layers": N_LAYERS}))
    model.save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def v1_dir(tmp_path_factory, shared_data: Path) -> Path:
    config = json.loads((shared_data / "vocab" / "geneformer" / "config.json").read_text())
    return _bert_dir(tmp_path_factory.mktemp("gf") / "Geneformer-V1-10M", config, 0)


def _v2_dictionaries(v1: GeneformerVocab, directory: Path) -> dict[str, int]:
    genes = [g for g in v1.token if not g.startswith("<")]
    token = {"<pad>": 0, "<mask>": 1, "<cls>": 2, "<eos>": 3} | {g: i + 4 for i, g in enumerate(genes)}
    for name, obj in {
        "token_dictionary_gc104M.pkl": token,
        "gene_median_dictionary_gc104M.pkl": v1.median,
        "gene_name_id_dict_gc104M.pkl": v1.name_to_id,
    }.items():
        with open(directory / name, "wb") as fh:
            pickle.dump(obj, fh)
    return token


@pytest.fixture(scope="module")
def v2_dir(tmp_path_factory, shared_data: Path, v1_vocab) -> Path:
    config = json.loads((shared_data / "vocab" / "geneformer" / "geneformer-12L-30M_config.json").read_text())
    root = tmp_path_factory.mktemp("gf2")
    dicts = root / "dicts"
    dicts.mkdir()
    token = _v2_dictionaries(v1_vocab, dicts)
    config |= {"max_position_embeddings": 4096, "vocab_size": len(token)}
    directory = _bert_dir(root / "Geneformer-V2-104M", config, 1)
    for f in dicts.iterdir():
        (directory / f.name).write_bytes(f.read_bytes())
    return directory


def test_rank_value_encoding_of_three_cells_by_hand(v1_vocab) -> None:
    # four real genes of the V1 dictionaries; the 5th column maps to the 1st gene's id again
    genes = ["ENSG00000000003", "ENSG00000000005", "ENSG00000000419", "ENSG00000000457"]
    med = [v1_vocab.median[g] for g in genes]
    tok = [v1_vocab.token[g] for g in genes]
    X = np.array(
        [
            [4.0, 1.0, 0.0, 6.0, 0.0, 9.0],  # last column: a gene outside the dictionaries
            [0.0, 3.0, 3.0, 0.0, 0.0, 0.0],
            [2.0, 0.0, 5.0, 1.0, 2.0, 40.0],  # columns 0 and 4 are the same gene: summed
        ]
    )
    ids = [*genes, genes[0], None]
    # by hand: value = count / cell total * 10,000 / gene median, sorted high to low
    expected = []
    for row in X:
        total = row.sum()
        counts = {0: row[0] + row[4], 1: row[1], 2: row[2], 3: row[3]}
        value = {g: counts[g] / total * 10_000 / med[g] for g in counts if counts[g] > 0}
        expected.append([tok[g] for g in sorted(value, key=lambda g: -value[g])])
    # cell 2 by eye: equal counts, so the gene with the smaller median (…419: 2.22 < …005: 3.23) leads
    assert med[2] < med[1] and expected[1] == [tok[2], tok[1]]
    got = v1_vocab.rank_encode(sp.csr_matrix(X), ids, max_len=2048)
    assert [g.tolist() for g in got] == expected
    assert all(len(set(g)) == len(g) for g in got)  # the duplicated gene appears once
    assert [g.tolist() for g in v1_vocab.rank_encode(X, ids, max_len=2)] == [e[:2] for e in expected]

    v2 = GeneformerVocab(
        {"<pad>": 0, "<mask>": 1, "<cls>": 2, "<eos>": 3} | {g: 10 + i for i, g in enumerate(genes)},
        v1_vocab.median,
        {},
    )
    assert v2.version == "V2" and v1_vocab.version == "V1"
    remap = {t: 10 + i for i, t in enumerate(tok)}
    got2 = v2.rank_encode(sp.csr_matrix(X), ids, max_len=4)  # 4 = <cls> + 2 genes + <eos>
    assert [g.tolist() for g in got2] == [[2, *[remap[t] for t in e[:2]], 3] for e in expected]


def _mean_gene_state(model, seqs, layer, special) -> np.ndarray:
    out = []
    with torch.no_grad():
        for s in seqs:
            h = model.bert(input_ids=torch.as_tensor(s)[None], output_hidden_states=True).hidden_states[
                layer
            ][0]
            out.append(h[0].numpy() if special else h.mean(0).numpy())
    return np.stack(out)


def test_geneformer_v1_directory(v1_dir: Path, v1_vocab, kang_small) -> None:
    from transformers import BertForMaskedLM

    cells = kang_small[:6].copy()
    adapter = GeneformerAdapter(seed=0, checkpoint=str(v1_dir), batch_size=4)
    seqs = adapter.tokenize(cells)
    assert adapter.params["geneformer_version"] == "V1" and adapter.model_input_size == 2048
    assert adapter.params["release"] == "Geneformer V1 (Geneformer-V1-10M)" and adapter.init == "pretrained"
    assert adapter.checkpoint_sha256 == sha256_file(v1_dir / "model.safetensors")
    assert all(2 not in s[:1] or v1_vocab.token.get("<cls>") is None for s in seqs)
    z = adapter.embed_cells(cells)
    ref = BertForMaskedLM.from_pretrained(v1_dir).eval()
    # EmbExtractor: emb_layer=-1 → hidden_states[n_layers - 1], mean over the cell's genes
    np.testing.assert_allclose(z, _mean_gene_state(ref, seqs, N_LAYERS - 1, False), atol=1e-5)


def test_geneformer_v2_directory(v2_dir: Path, kang_small) -> None:
    from transformers import BertForMaskedLM

    cells = kang_small[:6].copy()
    adapter = GeneformerAdapter(seed=0, checkpoint=str(v2_dir), batch_size=4)
    seqs = adapter.tokenize(cells)
    assert adapter.params["geneformer_version"] == "V2" and adapter.model_input_size == 4096
    assert adapter.vocab().version == "V2" and adapter.vocab().source == str(v2_dir)
    assert all(s[0] == 2 and s[-1] == 3 and len(s) > 2 for s in seqs)  # <cls> … <eos>
    z = adapter.embed_cells(cells)
    ref = BertForMaskedLM.from_pretrained(v2_dir).eval()
    np.testing.assert_allclose(z, _mean_gene_state(ref, seqs, N_LAYERS - 1, True), atol=1e-5)
    # "cell" mode leaves <cls>/<eos> out of the mean
    mean = GeneformerAdapter(seed=0, checkpoint=str(v2_dir), emb_mode="cell").embed_cells(cells)
    ref_mean = _mean_gene_state(ref, [s[1:-1] for s in seqs], N_LAYERS - 1, False)
    assert not np.allclose(mean, ref_mean, atol=1e-5)  # context differs: <cls>/<eos> were attended
    full = []
    with torch.no_grad():
        for s in seqs:
            h = ref.bert(input_ids=torch.as_tensor(s)[None], output_hidden_states=True).hidden_states[
                N_LAYERS - 1
            ]
            full.append(h[0, 1:-1].mean(0).numpy())
    np.testing.assert_allclose(mean, np.stack(full), atol=1e-5)


def test_v2_model_with_v1_dictionaries_is_refused(
    v2_dir: Path, tmp_path: Path, kang_small, shared_data
) -> None:
    with pytest.raises(
        InputError, match=r"V2 model .*4096.*dictionaries .* are V1 \(25426 tokens, lacks <cls>/<eos>\)"
    ):
        GeneformerAdapter(
            seed=0, checkpoint=str(v2_dir), vocab_dir=str(shared_data / "vocab" / "geneformer")
        ).tokenize(kang_small[:3])
    bare = tmp_path / "Geneformer-V2-104M"  # weights without their dictionaries: card = V1
    bare.mkdir()
    for f in ("config.json", "model.safetensors"):
        (bare / f).write_bytes((v2_dir / f).read_bytes())
    with pytest.raises(InputError, match="V2 model.*pass vocab_dir="):
        GeneformerAdapter(seed=0, checkpoint=str(bare)).embed_cells(kang_small[:3])


def test_geneformer_bad_weight_files(v1_dir: Path, tmp_path: Path, kang_small) -> None:
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "config.json").write_text((v1_dir / "config.json").read_text())
    (bad / "model.safetensors").write_bytes((v1_dir / "model.safetensors").read_bytes()[:5000])
    with pytest.raises(InputError, match="model.safetensors.*truncated"):
        GeneformerAdapter(seed=0, checkpoint=str(bad)).embed_cells(kang_small[:3])
    (bad / "model.safetensors").unlink()

    class Hostile:
        def __reduce__(self):  # pragma: no cover - never executed by the loader
            return (print, ("pwned",))

    torch.save({"bert.embeddings.word_embeddings.weight": Hostile()}, bad / "pytorch_model.bin")
    with pytest.raises(InputError, match="pytorch_model.bin.*weights_only"):
        GeneformerAdapter(seed=0, checkpoint=str(bad)).embed_cells(kang_small[:3])
