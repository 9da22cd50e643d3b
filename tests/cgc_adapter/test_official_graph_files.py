"""``cgc.official_graphs=DIR``: the release's tf_tg_graph / chromo_graph give the prior edges.

The graph files are the official-format fixtures of ``tests/data/official_graphs`` (written by
the official ``save_graph`` under DGL; ``*.expected.json`` = what DGL reads from them).
"""

from __future__ import annotations

import json
import os
import pickle
import sys
from pathlib import Path

import numpy as np
import pytest

from baselines.cgc_model import CGCAdapter
from benchmarks.data.fetch import sha256_file
from benchmarks.errors import InputError

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_official_checkpoint import release  # noqa: E402,F401  (module fixture: weights + text)

GRAPHS = Path(__file__).resolve().parents[1] / "data" / "official_graphs" / "pandas1"


def _dgl_edges(name: str) -> list[tuple[str, str, int | None]]:
    exp = json.loads((GRAPHS / f"{name}.expected.json").read_text())
    dis = exp["edata"].get("dis", [None] * len(exp["src"]))
    keep = set(exp["gene_set"])
    return [(a, b, d) for a, b, d in zip(exp["src_gene"], exp["dst_gene"], dis, strict=True)
            if a in keep and b in keep]


def test_official_graph_files_give_the_prior_edges(release) -> None:  # noqa: F811
    weights, text = release
    adapter = CGCAdapter(seed=0, checkpoint=str(weights), official_text=str(text),
                         official_graphs=str(GRAPHS))
    runner = adapter.official()
    assert adapter.params["official_graph_sha256"] == {
        "tf_tg_graph": sha256_file(GRAPHS / "tf_tg_graph"),
        "chromo_graph": sha256_file(GRAPHS / "chromo_graph"),
    }
    assert "official" in adapter.params["official_graph"] and "TRRUST" not in adapter.params["official_graph"]

    tf_edges, ch_edges = _dgl_edges("tf_tg_graph"), _dgl_edges("chromo_graph")
    graph_genes = sorted({g for a, b, _ in tf_edges + ch_edges for g in (a, b)} & runner.vocab.keys())
    others = [g for g in ("CD3E", "LYZ", "MS4A1", "NKG7") if g in runner.vocab]
    rng = np.random.default_rng(0)
    sym = list(rng.permutation(graph_genes[::2] + others))  # half the graph genes, shuffled
    ids = np.array([runner.vocab[g] for g in sym])
    pos = {g: k for k, g in enumerate(sym)}

    tftg, chromo = runner.prior_edges(ids)
    assert tftg == {(pos[a], pos[b]) for a, b, _ in tf_edges if a in pos and b in pos}
    assert chromo == {(pos[a], pos[b]): d for a, b, d in ch_edges if a in pos and b in pos}
    assert len(tftg) >= 20 and len(chromo) >= 4

    # graph_generate on top: flags and chromosome index (dis + 51) come from the files
    X = rng.integers(0, 51, size=(40, len(ids))).astype(np.float32)
    edge_index, attr, _ = runner.edges(X, ids)
    pairs = [tuple(p) for p in (edge_index[:, edge_index[1] > 0] - 1).T.tolist()]
    for k, p in enumerate(pairs):
        assert attr[0, k] == float(p in tftg)
        assert attr[2, k] == (chromo[p] + 51 if p in chromo else 0)

    stand_in = CGCAdapter(seed=0, checkpoint=str(weights), official_text=str(text)).official()
    assert "TRRUST" in stand_in.params["official_graph"] and stand_in.prior_edges(ids) != (tftg, chromo)


class _System:
    def __reduce__(self) -> tuple[object, tuple[str]]:
        return os.system, ("touch PWNED",)


def test_bad_official_graph_folder_is_an_input_error(release, tmp_path: Path, monkeypatch) -> None:  # noqa: F811
    weights, text = release
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "bioFeature_embs"
    folder.mkdir()
    (folder / "chromo_graph").write_bytes((GRAPHS / "chromo_graph").read_bytes())
    (folder / "tf_tg_graph").write_bytes(pickle.dumps(_System()))
    adapter = CGCAdapter(seed=0, checkpoint=str(weights), official_text=str(text),
                         official_graphs=str(folder))
    with pytest.raises(InputError, match=r"tf_tg_graph: refused to unpickle (posix|os|nt)\.system"):
        adapter.official()
    assert not (tmp_path / "PWNED").exists()
    with pytest.raises(InputError, match="bioFeature_embs folder .*tf_tg_graph, chromo_graph not found"):
        CGCAdapter(seed=0, checkpoint=str(weights), official_text=str(text),
                   official_graphs=str(tmp_path / "nope"))  # refused when the adapter is made
    # a TF graph in the chromosome slot: no distances
    (folder / "tf_tg_graph").write_bytes((GRAPHS / "tf_tg_graph").read_bytes())
    (folder / "chromo_graph").write_bytes((GRAPHS / "tf_tg_graph").read_bytes())
    with pytest.raises(InputError, match="no 1-d edge attribute 'dis'"):
        CGCAdapter(seed=0, checkpoint=str(weights), official_text=str(text),
                   official_graphs=str(folder)).official()


def test_weights_verify_names_an_official_graph_file(tmp_path: Path) -> None:
    from benchmarks.weights import verify

    found = verify(GRAPHS / "chromo_graph")
    assert found.format.startswith("CGCompass official prior graph") and found.release == "CGCompass"
    assert found.files == {"chromo_graph": sha256_file(GRAPHS / "chromo_graph")}
    assert "380 edges (coo), edge attribute 'dis'" in found.checks[0]
    bad = tmp_path / "tf_tg_graph"
    bad.write_bytes(pickle.dumps(_System()))
    with pytest.raises(InputError, match="refused to unpickle"):
        verify(bad)
