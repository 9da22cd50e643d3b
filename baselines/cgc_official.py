"""Cell embeddings from the official CGCompass weights (``cgc.checkpoint=FILE``).

Inputs are prepared the way the official ``scData/process_downstream.py`` does:

* scGPT's ``Preprocessor`` as the official ``scPipeline`` calls it: total-count normalisation,
  ``log1p`` (raw counts only), ``n_hvg`` (1,200) highly variable genes (``seurat_v3`` on counts,
  ``cell_ranger`` otherwise), 51-bin per-cell value binning (``X_binned``);
* every cell gets the same gene list (``include_zero=True``): ``<cls>`` with value 0, then the
  highly variable genes that are in the official ``vocab.json``;
* edges (``graph_generate``): co-expression edges ``|corr| > 0.6`` of the binned matrix
  (``torch.corrcoef``, diagonal and NaN set to 0), TF → target edges and chromosome edges
  (distance ``d`` < 50 genes, index ``d + 51``), every gene → ``<cls>``; attributes
  ``[tftg flag, corr, chromosome index]``; when a cell has more than ``4·n`` edges the
  co-expression edges are sampled ``4·n`` by ``|corr|`` as the official dataset does (seeded);
* ``<cls>`` output = the cell embedding; the gene summary embeddings come from the official
  ``embeding.pickle`` (``official_text=``).

TF → target and chromosome edges come from the release's own graph files when
``official_graphs=DIR`` names its ``bioFeature_embs`` folder (``tf_tg_graph``, ``chromo_graph``:
DGL graph pickles read without DGL and without running code by :mod:`cgc.official_graphs`;
edges among the cell's genes as the official ``data_util.sub_graph`` selects them, chromosome
index ``dis + 51``). Without it — **a deviation stated in every record**
(``params.official_graph``) — the TF → target pairs (TRRUST, card ``trrust_human``) and genome
positions (card ``gene_positions_hg38``) of cgcbench's own priors stand in for them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anndata as ad
import numpy as np
import scipy.sparse as sp

from baselines.gene_ids import resource_path, var_gene_ids
from benchmarks.errors import InputError

N_HVG, N_BINS, CORR_THR, MAX_DIS, EDGE_RATIO = 1200, 51, 0.6, 50, 4


@dataclass(frozen=True)
class OfficialCells:
    """Cells prepared for the official model: bins, genes and the (shared) graph.

    Attributes
    ----------
    X
        ``[n_cells, n_genes]`` bins (0–50).
    ids
        ``[n_genes]`` vocabulary ids (``<cls>`` excluded).
    edge_index, attr, only_corr
        :meth:`OfficialCGCRunner.edges` of the genes (``<cls>`` at node 0).
    n_missing
        Genes of a reference the cells lack (zero columns).

    """

    X: np.ndarray
    ids: np.ndarray
    edge_index: np.ndarray
    attr: np.ndarray
    only_corr: np.ndarray
    n_missing: int = 0

    @property
    def n_cells(self) -> int:
        """Number of cells."""
        return int(self.X.shape[0])


def _cgc_error(exc: Exception) -> InputError:
    return InputError(str(exc))


def check_official_graphs_folder(folder: str) -> Path:
    """``folder`` (absolute) if it holds ``tf_tg_graph`` and ``chromo_graph``, else :class:`InputError`."""
    root = Path(folder).expanduser().resolve()
    missing = [n for n in ("tf_tg_graph", "chromo_graph") if not (root / n).is_file()]
    if missing:
        raise InputError(
            f"{root}: official_graphs= must be the release's bioFeature_embs folder holding tf_tg_graph "
            f"and chromo_graph ({', '.join(missing)} not found)"
        )
    return root


def _read_official_graphs(folder: str) -> tuple[Any, Any]:
    """``tf_tg_graph`` and ``chromo_graph`` of the release folder ``folder``."""
    from cgc.errors import CGCError
    from cgc.official_graphs import read_official_graph

    root = check_official_graphs_folder(folder)
    try:
        tf, ch = read_official_graph(root / "tf_tg_graph"), read_official_graph(root / "chromo_graph")
    except CGCError as exc:
        raise _cgc_error(exc) from exc
    if "dis" not in ch.edata or ch.edata["dis"].ndim != 1:
        raise InputError(f"{ch.path}: the chromosome graph has no 1-d edge attribute 'dis' (gene distance)")
    if np.abs(ch.edata["dis"]).max(initial=0) > MAX_DIS:
        raise InputError(f"{ch.path}: a chromosome distance beyond ±{MAX_DIS}; the model has "
                         f"{2 * MAX_DIS + 1} position rows")
    return tf, ch


def _official_prior_edges(graphs: tuple[Any, Any], sym: list[str]) -> tuple[set[tuple[int, int]],
                                                                             dict[tuple[int, int], int]]:
    """Edges of the official graphs among the genes ``sym`` (positions), as ``sub_graph`` selects them."""
    local = {s: k for k, s in enumerate(sym)}
    uniq = list(local)
    pos = np.array([local[s] for s in uniq], dtype=np.int64)
    tf, ch = graphs
    a, b, _ = tf.subgraph(uniq)
    tftg = {(int(x), int(y)) for x, y in zip(pos[a], pos[b], strict=True)}
    a, b, ed = ch.subgraph(uniq)
    chromo = {(int(x), int(y)): int(d) for x, y, d in zip(pos[a], pos[b], ed["dis"], strict=True)}
    return tftg, chromo


class OfficialCGCRunner:
    """The official model plus its input pipeline.

    Parameters
    ----------
    weights
        ``CGCompass_pretrain_weights.pt``.
    text
        ``embeding.pickle`` (needed when the weights have the summary-embedding encoder).
    vocab
        The official ``vocab.json`` (default: card ``cgc_vocab``, the same file).
    seed
        Seed of the co-expression edge sampling.
    graphs
        The release's ``bioFeature_embs`` folder holding ``tf_tg_graph`` and ``chromo_graph``
        (default: TRRUST / hg38 stand-ins, see the module docstring).

    """

    def __init__(self, weights: Path, text: str | None, vocab: str | None, seed: int = 0,
                 graphs: str | None = None) -> None:
        from cgc.errors import CGCError
        from cgc.official_weights import load_official, read_official_vocab, read_text_embeddings

        try:
            self.model, self.info = load_official(weights)
            vocab_path = Path(vocab) if vocab else resource_path("cgc_vocab")
            self.vocab = read_official_vocab(vocab_path)
        except CGCError as exc:
            raise _cgc_error(exc) from exc
        c = self.model.config
        if len(self.vocab) != c.ntoken:
            raise InputError(
                f"{vocab_path}: {len(self.vocab)} tokens, but the weights' gene embedding has {c.ntoken} "
                "rows; pass official_vocab= with the vocab.json released with these weights"
            )
        self.text: np.ndarray | None = None
        if c.use_embed:
            if not text:
                raise InputError(
                    f"{weights}: the official model adds gene summary embeddings; pass "
                    "--model-set cgc.official_text=PATH/embeding.pickle (bioFeature_embs of the release)"
                )
            try:
                table, _ = read_text_embeddings(text, c.ntoken)
            except CGCError as exc:
                raise _cgc_error(exc) from exc
            if table.shape[1] != c.text_dim:
                raise InputError(
                    f"{text}: embeddings are {table.shape[1]} wide, the weights expect {c.text_dim}"
                )
            self.text = table
        self.seed = seed
        self.last_missing = 0
        self.params: dict[str, Any] = {
            "official_config": self.info["config"],
            "official_vocab": str(vocab_path),
            "official_text": str(text) if text else None,
            "official_graph": "TF-target: TRRUST (trrust_human); chromosome: gene_positions_hg38 "
            "(stand-ins: no official_graphs= given); co-expression: |corr| > 0.6 of the data",
        }
        self.graphs = _read_official_graphs(graphs) if graphs else None
        if self.graphs is not None:
            tf, ch = self.graphs
            self.params["official_graph"] = (
                f"TF-target: official {tf.path} (sha256 {tf.sha256}, {tf.num_edges} edges); chromosome: "
                f"official {ch.path} (sha256 {ch.sha256}, {ch.num_edges} edges); co-expression: "
                "|corr| > 0.6 of the data"
            )
            self.params["official_graph_sha256"] = {"tf_tg_graph": tf.sha256, "chromo_graph": ch.sha256}

    # ------------------------------------------------------------------ inputs
    def preprocess(self, adata: ad.AnnData, genes: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Return the ``[n_cells, n_genes]`` binned matrix and the genes' vocabulary ids.

        ``genes`` (vocabulary ids, e.g. a reference's highly variable genes): bin these genes
        instead of choosing highly variable ones — normalisation over all vocabulary genes of
        the data as before, a gene the data lacks is a zero column (counted in
        ``self.last_missing``). Binning is per cell, so a cell gets the same numbers either way.
        """
        from baselines.preprocessing import expression_kind
        from baselines.scgpt_model import _scgpt

        scgpt = _scgpt()
        symbols = var_gene_ids(adata, "symbol")
        ids = np.array([self.vocab.get(s, -1) if s is not None else -1 for s in symbols])
        if (ids >= 0).sum() < 10:
            raise InputError(f"cgc (official): only {(ids >= 0).sum()} genes of the data are in vocab.json")
        sub = ad.AnnData(sp.csr_matrix(adata.X[:, ids >= 0], dtype=np.float32), obs=adata.obs[[]].copy())
        sub.var_names = [str(i) for i in ids[ids >= 0]]
        sub.obs["batch"] = "0"
        raw = expression_kind(adata) == "counts"  # official: log1p only for raw data
        common = {"filter_gene_by_counts": 0, "filter_cell_by_counts": False, "result_binned_key": "X_binned"}
        if genes is None:
            steps = [scgpt.preprocess.Preprocessor(
                use_key="X", normalize_total=True, result_normed_key="X_normed", log1p=raw,
                result_log1p_key="X_log1p",
                subset_hvg=min(N_HVG, sub.n_vars) if sub.n_vars > N_HVG else False,
                hvg_flavor="seurat_v3" if raw else "cell_ranger", binning=N_BINS, **common,
            )]
        else:
            steps = [
                scgpt.preprocess.Preprocessor(use_key="X", normalize_total=True, result_normed_key="X_normed",
                                              log1p=raw, result_log1p_key="X_log1p", binning=None, **common),
                scgpt.preprocess.Preprocessor(use_key="X", normalize_total=False, log1p=False, binning=N_BINS,
                                              **common),
            ]
        state = np.random.get_state()  # scGPT's binning spreads ties with np.random: seed it
        np.random.seed(self.seed)
        try:
            steps[0](sub, batch_key=None)
            if genes is not None:
                normed = sub.layers["X_log1p" if raw else "X_normed"]
                normed = normed.toarray() if sp.issparse(normed) else np.asarray(normed)
                where = {int(v): k for k, v in enumerate(sub.var_names.astype(int))}
                cols = np.array([where.get(int(g), -1) for g in genes])
                self.last_missing = int((cols < 0).sum())
                picked = np.where(cols >= 0, normed[:, np.maximum(cols, 0)], 0.0).astype(np.float32)
                sub = ad.AnnData(picked, obs=sub.obs)
                sub.var_names = [str(int(g)) for g in genes]
                steps[1](sub, batch_key=None)
        finally:
            np.random.set_state(state)
        return np.asarray(sub.layers["X_binned"], dtype=np.float32), sub.var_names.astype(int).to_numpy()

    def prior_edges(self, ids: np.ndarray) -> tuple[set[tuple[int, int]], dict[tuple[int, int], int]]:
        """TF → target pairs and chromosome edges (local positions) among the genes ``ids``."""
        from cgc.priors.positions import position_edges, read_positions
        from cgc.priors.tftg import read_trrust

        inv = {v: k for k, v in self.vocab.items()}
        sym = [inv[int(i)] for i in ids]
        if self.graphs is not None:
            return _official_prior_edges(self.graphs, sym)
        local = {s: k for k, s in enumerate(sym)}
        tf = read_trrust(resource_path("trrust_human"))
        tftg = {
            (local[a], local[b])
            for a, b in zip(tf["tf"], tf["target"], strict=True)
            if a in local and b in local and a != b
        }
        pos = read_positions(resource_path("gene_positions_hg38")).drop_duplicates("symbol")
        pos = pos[pos["symbol"].isin(self.vocab.keys())]
        vid = np.array([self.vocab[s] for s in pos["symbol"]])
        src, dst, off = position_edges(vid, pos["chrom"].to_numpy(), pos["start"].to_numpy(), MAX_DIS + 1)
        where = np.full(max(int(vid.max(initial=0)), int(ids.max(initial=0))) + 1, -1, np.int64)
        where[ids] = np.arange(len(ids))
        a, b = where[src], where[dst]
        ok = (a >= 0) & (b >= 0)
        chromo = {(int(x), int(y)): int(o) for x, y, o in zip(a[ok], b[ok], off[ok], strict=True)}
        return tftg, chromo

    def edges(self, X: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``graph_generate``: edge index (with ``<cls>`` at 0), attributes, co-expression-only mask."""
        import torch

        corr = torch.corrcoef(torch.from_numpy(X.T.astype(np.float64)))
        corr.fill_diagonal_(0)
        corr = torch.nan_to_num(corr, nan=0.0).numpy()
        tftg, chromo = self.prior_edges(ids)
        high = set(zip(*np.nonzero(np.abs(corr) > CORR_THR), strict=True))
        pairs = sorted({*tftg, *chromo, *((int(a), int(b)) for a, b in high)})
        n = len(ids)
        src = np.array([p[0] for p in pairs] + list(range(n)), dtype=np.int64) + 1
        dst = np.array([p[1] for p in pairs] + [-1] * n, dtype=np.int64) + 1
        attr = np.zeros((3, len(src)), np.float32)
        only_corr = np.zeros(len(src), bool)
        for k, p in enumerate(pairs):
            attr[0, k] = float(p in tftg)
            attr[1, k] = corr[p]
            attr[2, k] = chromo[p] + MAX_DIS + 1 if p in chromo else 0.0
            only_corr[k] = p not in tftg and p not in chromo
        return np.stack([src, dst]), attr, only_corr

    # ------------------------------------------------------------------ embeddings
    def embed_genes(self, genes: Any, id_type: str = "symbol") -> Any:
        """Gene encoder outputs ``LayerNorm(emb(token))`` of the genes in ``vocab.json``."""
        import pandas as pd
        import torch

        from baselines.gene_ids import default_mapper

        names = [str(g) for g in genes]
        symbols = default_mapper().to_symbol(names) if id_type == "ensembl" else names
        keep = [(n, self.vocab[s]) for n, s in zip(names, symbols, strict=True) if s in self.vocab]
        with torch.no_grad():
            ids = torch.as_tensor([i for _, i in keep], dtype=torch.long)
            emb = self.model.node.token(ids).numpy() if keep else np.zeros((0, self.model.config.d_model))
        out = pd.DataFrame(emb, index=pd.Index([n for n, _ in keep], name="gene"))
        return out[~out.index.duplicated()]

    def prepare(self, adata: ad.AnnData, reference: OfficialCells | None = None) -> OfficialCells:
        """Binned cells and their graph: chosen from ``adata``, or on a ``reference``'s genes and graph.

        A query (``reference`` given) is binned on the reference's genes and uses the
        reference's edges (co-expression measured on the reference only), so nothing of the
        query reaches the model's inputs of other cells.
        """
        if reference is None:
            X, ids = self.preprocess(adata)
            edge_index, attr, only_corr = self.edges(X, ids)
            return OfficialCells(X, ids, edge_index, attr, only_corr)
        X, ids = self.preprocess(adata, genes=reference.ids)
        return OfficialCells(X, ids, reference.edge_index, reference.attr, reference.only_corr,
                             n_missing=self.last_missing)

    def inputs(self, cells: OfficialCells) -> Any:
        """``inputs(rows, generator)``: :meth:`~cgc.nn.official.OfficialCGC.encode` arguments of ``rows``.

        Every cell gets ``<cls>`` + the genes (value 0 for ``<cls>``, the bins otherwise);
        when the graph has more than ``4·L`` edges its co-expression edges are sampled
        (``generator``) ``4·L`` by ``|corr|`` per cell, as the official dataset does.
        """
        import torch

        cls_id = self.vocab["<cls>"]
        gene = torch.as_tensor(np.concatenate([[cls_id], cells.ids]), dtype=torch.long)
        L = len(gene)
        cap = L * EDGE_RATIO
        edge_index = torch.as_tensor(cells.edge_index)
        attr = torch.as_tensor(cells.attr)
        keep_all = torch.as_tensor(~cells.only_corr)
        weight = torch.as_tensor(np.abs(cells.attr[1]) * cells.only_corr, dtype=torch.float32)
        sample = edge_index.shape[1] > cap and int((weight > 0).sum()) > cap
        text = None if self.text is None else torch.as_tensor(self.text[gene.numpy()])

        def make(rows: np.ndarray, gen: torch.Generator) -> dict[str, Any]:
            rows = np.asarray(rows)
            ei, ea = [], []
            for b in range(len(rows)):
                idx = torch.arange(edge_index.shape[1])
                if sample:
                    sampled = torch.multinomial(weight, cap, replacement=False, generator=gen)
                    idx = torch.unique(torch.cat([idx[keep_all], sampled]))
                ei.append(edge_index[:, idx] + b * L)
                ea.append(attr[:, idx])
            value = torch.zeros(len(rows), L)
            value[:, 1:] = torch.as_tensor(cells.X[rows])
            return {
                "gene": gene.expand(len(rows), L),
                "value": value,
                "text": None if text is None else text.expand(len(rows), *text.shape),
                "pad": None,
                "edge_index": torch.cat(ei, 1),
                "edge_attr": torch.cat(ea, 1),
            }

        return make

    def embed_cells(self, adata: ad.AnnData, batch_size: int = 8, model: Any = None,
                    reference: OfficialCells | None = None) -> np.ndarray:
        """``<cls>`` outputs of the official model (or of a fine-tuned ``model``), ``[n_cells, d_model]``."""
        from cgc.finetune.official import official_cell_outputs

        cells = self.prepare(adata, reference)
        return official_cell_outputs(model if model is not None else self.model, self.inputs(cells),
                                     cells.n_cells, seed=self.seed, batch_size=batch_size)

    # ------------------------------------------------------------------ annotation
    def fit_classifier(self, reference: ad.AnnData, labels: np.ndarray, settings: Any,
                       mask_ratio: float) -> tuple[Any, Any, Any, OfficialCells]:
        """Fine-tune a copy of the official model with the official ``ClsDecoder`` (official recipe).

        Returns the fine-tuned model, its head, the :class:`~cgc.finetune.TrainLog` and the
        reference cells (their genes and graph serve the query). See
        :mod:`cgc.finetune.official`.
        """
        import copy

        import torch

        from cgc.finetune.official import train_official_classifier
        from cgc.nn.official import official_cls_decoder

        cells = self.prepare(reference)
        torch.manual_seed(self.seed)  # head initialisation and dropout
        model = copy.deepcopy(self.model)
        head = official_cls_decoder(model.config.d_model, int(labels.max()) + 1)
        log = train_official_classifier(model, head, self.inputs(cells), labels, settings, seed=self.seed,
                                        mask_ratio=mask_ratio)
        return model, head, log, cells

    def predict_logits(self, query: ad.AnnData, model: Any, head: Any,
                       reference: OfficialCells) -> np.ndarray:
        """Class logits of the query cells (binned on the reference's genes, its graph)."""
        from cgc.finetune.official import official_cell_outputs

        cells = self.prepare(query, reference)
        return official_cell_outputs(model, self.inputs(cells), cells.n_cells, seed=self.seed, fn=head)
