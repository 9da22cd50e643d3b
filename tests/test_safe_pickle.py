"""Pickles from users and cards are read as plain data only (issue 15)."""

from __future__ import annotations

import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest

from benchmarks.errors import InputError
from benchmarks.safe_pickle import load_plain_pickle


class _Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (os.system, (f"touch {self.marker}",))


def test_plain_data_round_trips(tmp_path: Path) -> None:
    data = {"a": np.float32(1.5), "b": {1, 2}, "c": (1, "x"), "d": [np.int64(3)], "e": None}
    for protocol in (2, 4, 5):
        f = tmp_path / f"p{protocol}.pkl"
        f.write_bytes(pickle.dumps(data, protocol=protocol))
        assert load_plain_pickle(f) == data


@pytest.mark.parametrize("hostile", ["system", "array", "class"])
def test_hostile_pickle_is_refused_without_running_code(tmp_path: Path, hostile: str) -> None:
    marker = tmp_path / "marker"
    payload = {
        "system": {"x": _Payload(marker)},
        "array": {"x": np.array([1, 2])},  # numpy._reconstruct is not on the allow-list
        "class": {"x": InputError},
    }[hostile]
    f = tmp_path / "evil.pkl"
    f.write_bytes(pickle.dumps(payload))
    with pytest.raises(InputError, match="refused to unpickle"):
        load_plain_pickle(f)
    assert not marker.exists()


def test_geneformer_vocabulary_dir_cannot_run_code(tmp_path: Path, shared_data: Path) -> None:
    from baselines.geneformer_model import GeneformerVocab

    src = shared_data / "vocab" / "geneformer"
    vocab = tmp_path / "vocab"
    vocab.mkdir()
    for name in ("token_dictionary.pkl", "gene_median_dictionary.pkl", "gene_name_id_dict.pkl"):
        shutil.copyfile(src / f"geneformer_{name}", vocab / name)
    real = GeneformerVocab.load(vocab)  # the official release loads through the allow-list
    assert real.token["<pad>"] == real.pad_id and len(real.median) > 20000
    marker = tmp_path / "marker"
    (vocab / "gene_median_dictionary.pkl").write_bytes(pickle.dumps({"ENSG1": _Payload(marker)}))
    with pytest.raises(InputError, match="gene_median_dictionary.pkl: refused"):
        GeneformerVocab.load(vocab)
    assert not marker.exists(), "a hostile Geneformer vocabulary executed code"


def test_gears_gene2go_card_file_cannot_run_code(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from baselines import gears_model
    from benchmarks.data import fetch

    marker = tmp_path / "marker"
    evil = tmp_path / "gene2go_all.pkl"
    evil.write_bytes(pickle.dumps({"TP53": _Payload(marker)}))
    monkeypatch.setattr(fetch, "resolve_file", lambda *a, **k: evil)
    adapter = gears_model.GEARSAdapter(seed=0, quick=True)
    with pytest.raises(InputError, match="refused to unpickle"):
        adapter._gene2go()
    assert not marker.exists()
