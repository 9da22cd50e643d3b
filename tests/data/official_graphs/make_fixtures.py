"""Write the official-format graph fixtures and what DGL itself reads back from them.

Run in a scratch virtualenv that has ``dgl`` (never the project's; see README.md here)::

    python make_fixtures.py OUT_DIR TFTG_EDGES.txt CHROMO_EDGES.tsv

``tf_tg_graph`` is written by the official ``data_util.save_graph`` (scData/data_util.py of
epang-ucas/Cell-Graph-Compass, copied verbatim below apart from the print calls).
The release ships no code that writes ``chromo_graph``; the official readers
(``scData/process_downstream.py``) unpickle the same 4-tuple from it and read
``g.edata['dis']`` (``data_util.sub_graph(..., return_attr=True)``), so it is written the
same way with a signed gene-order distance per edge. ``tf_tg_graph_csr`` is the TF graph
restricted to the CSR format, so that the reader's CSR branch is covered too.
``*.expected.json`` holds what ``pickle.load`` + DGL return for each file.
"""

from __future__ import annotations

import json
import pickle
import sys
from pathlib import Path

import dgl
import pandas as pd
import torch


def save_graph(edge_txt_path: str, graph_save_path: str) -> None:
    """``data_util.save_graph`` of the official release."""
    tf_tar_pairs_set = set()
    with open(edge_txt_path) as file:
        tf_tar_pairs = file.readlines()
    gene_dict: dict[str, int] = {}
    for i in range(1, len(tf_tar_pairs)):
        tf_gene, target_gene = tf_tar_pairs[i].strip().split("\t")
        tf_tar_pairs_set.add((tf_gene.upper(), target_gene.upper()))
        if gene_dict.get(tf_gene.upper()) is None:
            gene_dict[tf_gene.upper()] = len(gene_dict)
        if gene_dict.get(target_gene.upper()) is None:
            gene_dict[target_gene.upper()] = len(gene_dict)
    a = []
    b = []
    for i, j in tf_tar_pairs_set:
        a.append(gene_dict[i])
        b.append(gene_dict[j])
    a_t, b_t = torch.tensor(a), torch.tensor(b)
    g = dgl.graph((a_t, b_t))
    tf_s = pd.Series(index=gene_dict.keys(), data=gene_dict.values())
    tf_s_inv = pd.Series(index=gene_dict.values(), data=gene_dict.keys())
    tf_gene_set = set(gene_dict.keys())
    with open(graph_save_path, "wb") as graph_f:
        pickle.dump((g, tf_s, tf_s_inv, tf_gene_set), graph_f)


def save_chromo_graph(edge_tsv_path: str, graph_save_path: str) -> None:
    """The same 4-tuple, plus ``g.edata['dis']`` (signed distance in genes)."""
    gene_dict: dict[str, int] = {}
    a, b, dis = [], [], []
    with open(edge_tsv_path) as file:
        lines = file.readlines()
    for line in lines[1:]:
        src, dst, d = line.strip().split("\t")
        for gene in (src.upper(), dst.upper()):
            if gene_dict.get(gene) is None:
                gene_dict[gene] = len(gene_dict)
        a.append(gene_dict[src.upper()])
        b.append(gene_dict[dst.upper()])
        dis.append(int(d))
    g = dgl.graph((torch.tensor(a), torch.tensor(b)))
    g.edata["dis"] = torch.tensor(dis)
    s = pd.Series(index=gene_dict.keys(), data=gene_dict.values())
    s_inv = pd.Series(index=gene_dict.values(), data=gene_dict.keys())
    with open(graph_save_path, "wb") as graph_f:
        pickle.dump((g, s, s_inv, set(gene_dict.keys())), graph_f)


def save_csr_variant(src_path: Path, dst_path: Path) -> None:
    """Re-pickle a graph allowed only the CSR format (DGL then pickles indptr/indices/eids)."""
    with open(src_path, "rb") as f:
        g, s, s_inv, genes = pickle.load(f)
    with open(dst_path, "wb") as f:
        pickle.dump((g.formats("csr"), s, s_inv, genes), f)


def sub_graph(tf_s, tf_s_inv, g_tftg, tf_gene_set, data_gene, gene_series, return_attr=False):  # noqa: ANN001, ANN201
    """``data_util.sub_graph`` of the official release.

    Verbatim, except ``list(...)`` around the set indexer: pandas 1.x indexed with the set as
    a list (FutureWarning); pandas 2 refuses a set.
    """
    import numpy as np

    node_l = tf_s[list(set(data_gene) & tf_gene_set)].values
    tf_edge = dgl.node_subgraph(g_tftg, node_l)
    tf_node = tf_edge.ndata[dgl.NID]
    tftg = tf_edge.edges()
    r_0 = torch.gather(tf_node, 0, tftg[0])
    r_1 = torch.gather(tf_node, 0, tftg[1])
    i_0 = gene_series[tf_s_inv[r_0.tolist()].values].values
    i_1 = gene_series[tf_s_inv[r_1.tolist()].values].values
    tftg_idx = torch.from_numpy(np.stack((i_0, i_1)))
    if not return_attr:
        return tftg_idx
    return tftg_idx, tf_edge.edata["dis"]


def save_states_v1_variant(src_path: Path, dst_path: Path) -> None:
    """Re-pickle a COO graph with ``HeteroPickleStates`` version 1, as DGL 0.5–0.8.0 wrote it.

    Version 1 ``meta`` lacks the ``is_pinned`` byte that DGL 0.8.1 added (src/graph/pickle.cc,
    commit adb3a7c); for one COO edge type it is the 7th byte from the end (then the int32
    format code and the two sorted flags). DGL still reads version 1 (``HeteroUnpickle``).
    """
    from dgl.heterograph_index import HeteroPickleStates

    with open(src_path, "rb") as f:
        g, s, s_inv, genes = pickle.load(f)
    original = HeteroPickleStates.__getstate__

    def v1(self):  # noqa: ANN001, ANN202
        version, meta, arrays = original(self)
        assert version == 2 and len(arrays) == 2 and meta[-7] == 0
        return 1, meta[:-7] + meta[-6:], arrays

    HeteroPickleStates.__getstate__ = v1
    try:
        with open(dst_path, "wb") as f:
            pickle.dump((g, s, s_inv, genes), f)
    finally:
        HeteroPickleStates.__getstate__ = original


def expected(path: Path) -> dict:
    """What DGL and pandas read from ``path`` (our own file: the stock unpickler is fine here)."""
    with open(path, "rb") as f:
        g, s, s_inv, genes = pickle.load(f)
    src, dst = g.edges(order="eid")
    out = {
        "dgl": dgl.__version__,
        "torch": torch.__version__,
        "pandas": pd.__version__,
        "formats": g.formats(),
        "num_nodes": int(g.num_nodes()),
        "src": src.tolist(),
        "dst": dst.tolist(),
        "src_gene": [str(s_inv[i]) for i in src.tolist()],
        "dst_gene": [str(s_inv[i]) for i in dst.tolist()],
        "gene_to_node": {str(k): int(v) for k, v in s.items()},
        "node_to_gene": {int(k): str(v) for k, v in s_inv.items()},
        "gene_set": sorted(genes),
        "edata": {k: v.tolist() for k, v in g.edata.items()},
        "edata_dtype": {k: str(v.dtype).replace("torch.", "") for k, v in g.edata.items()},
    }
    # the official per-cell selection on a gene list: every third node's gene, reversed, plus
    # two genes the graph does not have
    data_gene = [str(s_inv[i]) for i in range(0, g.num_nodes(), 3)][::-1] + ["NOT_A_GENE", "TP53X"]
    gene_series = pd.Series(index=data_gene, data=range(len(data_gene)))
    has_dis = "dis" in g.edata
    res = sub_graph(s, s_inv, g, genes, data_gene, gene_series, return_attr=has_dis)
    idx, dis = res if has_dis else (res, None)
    out["subgraph"] = {
        "genes": data_gene,
        "src": idx[0].tolist(),
        "dst": idx[1].tolist(),
        "dis": dis.tolist() if dis is not None else None,
    }
    return out


def main() -> None:
    out, tftg, chromo = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
    out.mkdir(parents=True, exist_ok=True)
    save_graph(tftg, str(out / "tf_tg_graph"))
    save_chromo_graph(chromo, str(out / "chromo_graph"))
    save_csr_variant(out / "tf_tg_graph", out / "tf_tg_graph_csr")
    save_states_v1_variant(out / "chromo_graph", out / "chromo_graph_v1")
    for name in ("tf_tg_graph", "chromo_graph", "tf_tg_graph_csr", "chromo_graph_v1"):
        (out / f"{name}.expected.json").write_text(json.dumps(expected(out / name)) + "\n")


if __name__ == "__main__":
    main()
