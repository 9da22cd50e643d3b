"""``gene2vec``: Gene2vec gene embeddings (Du et al. 2019) with gensim ``Word2Vec``.

Two sources, recorded as ``params["source"]``:

* ``official`` — the released 200-d ``gene2vec_dim_200_iter_9.txt`` (one gene per line: the
  symbol, a tab, 200 space-separated values) or its ``_w2v.txt`` twin (word2vec text format
  with an ``n 200`` header), from ``checkpoint=``, ``$GENE2VEC_PATH`` or the ``gene2vec``
  dataset card once ``cgcbench datasets fetch gene2vec`` has cached it.
* ``trained`` — Gene2vec's own recipe on the local corpus: per data set, the Pearson
  correlation of log-normalised expression between highly variable genes, computed on
  metacells (about ``metacell_size`` similar cells pooled, so that single-cell dropout does not
  hide co-expression); every pair above ``min_corr`` (at most ``max_pairs`` per data set,
  strongest first) plus each gene's ``top_k`` strongest partners becomes a two-word
  "sentence"; ``Word2Vec(sg=1, window=1, min_count=1)`` is trained for ``iterations`` rounds,
  shuffling the pairs before each round, as in ``src/gene2vec.py`` of the Gene2vec repository.
  GEO microarray compendia (the paper's 984 data sets) are not available offline; the corpus is
  the human scRNA-seq cards named in ``corpus``.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from baselines.checkpoints import UserCheckpointMixin
from baselines.gene_ids import Coverage, checkpoint_setting, default_mapper
from baselines.preprocessing import highly_variable_genes, log_normalized
from benchmarks.errors import CgcbenchError, InputError
from benchmarks.interface import Capabilities, GeneEmbeddingMixin, ModelAdapter, TaskKind

log = logging.getLogger(__name__)

DEFAULT_CORPUS = ("pbmc3k_raw", "kang_pbmc_ctrl_stim")
"""Human scRNA-seq count sets available from the shared mirror."""


def read_gene2vec(path: str | Path) -> Any:
    """Read Gene2vec vectors (the ``.txt`` matrix layout or word2vec text format).

    Parameters
    ----------
    path
        ``gene2vec_dim_200_iter_9.txt`` (``GENE<TAB>v1 v2 …``) or ``…_w2v.txt`` (header line
        ``n_genes dim``, then ``GENE v1 v2 …``).

    Returns
    -------
    gensim.models.KeyedVectors
        One vector per gene symbol.

    """
    from gensim.models import KeyedVectors

    genes: list[str] = []
    rows: list[np.ndarray] = []
    with open(path, encoding="utf-8", errors="replace") as fh:
        for k, line in enumerate(fh):
            parts = line.split()
            if not parts:
                continue
            if k == 0 and len(parts) == 2 and all(p.isdigit() for p in parts):
                continue  # word2vec header
            genes.append(parts[0])
            rows.append(np.asarray(parts[1:], dtype=np.float32))
    if not rows:
        raise InputError(f"{path}: no vectors found; pass a Gene2vec .txt file")
    dims = {len(r) for r in rows}
    if len(dims) != 1:
        raise InputError(f"{path}: rows have different widths {sorted(dims)}; file is damaged")
    kv = KeyedVectors(vector_size=dims.pop())
    kv.add_vectors(genes, np.stack(rows))
    return kv


def write_gene2vec(kv: Any, path: str | Path) -> None:
    """Write vectors in the released ``gene2vec_dim_200_iter_9.txt`` layout.

    Each line is the gene, a tab, then the values each followed by a space (as
    ``generateMatrix.outputTxt`` of the Gene2vec repository writes them).
    """
    with open(path, "w", encoding="utf-8") as out:
        for gene in kv.index_to_key:
            out.write(f"{gene}\t" + "".join(f"{float(v)!r} " for v in kv[gene]) + "\n")


def coexpression_pairs(
    expr: np.ndarray, genes: Sequence[str], min_corr: float, max_pairs: int, top_k: int = 0
) -> list[list[str]]:
    """Return co-expressed gene pairs: Pearson r >= ``min_corr``, plus each gene's top partners.

    Parameters
    ----------
    expr
        ``(n_samples, n_genes)`` log-normalised expression (cells or metacells).
    genes
        Gene names of the columns.
    min_corr
        Correlation threshold.
    max_pairs
        Keep at most this many threshold pairs, strongest first.
    top_k
        Also pair every gene with its ``top_k`` most correlated genes (with positive r), so that
        no selected gene is left without a context.

    """
    x = expr - expr.mean(0, keepdims=True)
    sd = np.sqrt((x**2).sum(0))
    keep = sd > 0
    x, names = x[:, keep] / sd[keep], np.asarray(genes)[keep]
    corr = x.T @ x
    np.fill_diagonal(corr, -np.inf)
    iu, ju = np.triu_indices(len(names), k=1)
    r = corr[iu, ju]
    sel = np.flatnonzero(r >= min_corr)
    sel = sel[np.argsort(-r[sel], kind="stable")][:max_pairs]
    found = {(int(iu[s]), int(ju[s])) for s in sel}
    ordered = [(int(iu[s]), int(ju[s])) for s in sel]
    if top_k > 0 and len(names) > 1:
        k = min(top_k, len(names) - 1)
        best = np.argsort(-corr, axis=1, kind="stable")[:, :k]
        for i in range(len(names)):
            for j in best[i]:
                if corr[i, j] <= 0:
                    continue
                pair = (min(i, int(j)), max(i, int(j)))
                if pair not in found:
                    found.add(pair)
                    ordered.append(pair)
    return [[str(names[i]), str(names[j])] for i, j in ordered]


def metacells(expr: np.ndarray, size: int, seed: int) -> np.ndarray:
    """Average ``expr`` over k-means groups of about ``size`` cells (on 30 PCs).

    Pooling neighbouring cells makes correlations robust to single-cell dropout, so they
    resemble the bulk co-expression Gene2vec was built on. ``size <= 1`` returns ``expr``.
    """
    if size <= 1 or expr.shape[0] < 4 * size:
        return expr
    from sklearn.cluster import KMeans
    from sklearn.decomposition import PCA

    n_comps = min(30, expr.shape[1] - 1, expr.shape[0] - 1)
    pcs = PCA(n_components=n_comps, random_state=seed).fit_transform(expr)
    k = expr.shape[0] // size
    labels = KMeans(k, n_init=1, random_state=seed).fit_predict(pcs)
    sums = np.zeros((k, expr.shape[1]))
    np.add.at(sums, labels, expr)
    counts = np.bincount(labels, minlength=k)[:, None]
    return sums[counts[:, 0] > 0] / counts[counts[:, 0] > 0]


class Gene2vecAdapter(UserCheckpointMixin, ModelAdapter, GeneEmbeddingMixin):
    """Gene2vec embeddings: the released vectors, or trained here the Gene2vec way.

    Parameters
    ----------
    checkpoint
        Path of ``gene2vec_dim_200_iter_9.txt`` (or ``_w2v.txt``); default
        ``$GENE2VEC_PATH``, then the cached ``gene2vec`` dataset card. Makes
        ``init="pretrained"``.
    source
        ``"auto"`` (the released vectors when found, else train), ``"official"`` (fail without
        them) or ``"trained"`` (always train here).
    corpus
        Dataset cards (human scRNA-seq counts, symbols) to build co-expression pairs from.
    dim
        Embedding width (Gene2vec: 200).
    iterations
        Training rounds, one epoch each over freshly shuffled pairs (Gene2vec: 10). *quick*: 5.
    n_hvg
        Highly variable genes per data set entering the correlation (5000; *quick*: 1000).
    min_corr, max_pairs
        Pair threshold and per-data-set cap.
    top_k
        Each gene is also paired with its ``top_k`` most correlated genes.
    metacell_size
        Cells pooled (k-means on PCs) into one metacell before the correlations; 1 = none.
    max_cells
        Cells sampled per data set (seeded) for the correlations.

    """

    name = "gene2vec"
    requires = ("gensim",)
    install_hint = "pip install 'cgcbench[baselines]' (gensim)"
    description = "Gene2vec (gensim Word2Vec skip-gram over co-expressed gene pairs)."
    capabilities = Capabilities(
        task_kinds=frozenset({TaskKind.GENE_EMBEDDING}),
        organisms=frozenset({"human"}),
        gene_id_type="symbol",
    )

    def __init__(
        self,
        *,
        checkpoint: str | None = None,
        source: str = "auto",
        corpus: Sequence[str] = DEFAULT_CORPUS,
        dim: int = 200,
        iterations: int | None = None,
        n_hvg: int | None = None,
        min_corr: float = 0.5,
        max_pairs: int = 200_000,
        top_k: int = 5,
        metacell_size: int = 10,
        max_cells: int = 20_000,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            checkpoint=checkpoint, source=source, corpus=list(corpus), dim=dim, iterations=iterations,
            n_hvg=n_hvg, min_corr=min_corr, max_pairs=max_pairs, top_k=top_k,
            metacell_size=metacell_size, max_cells=max_cells, **kwargs,
        )
        if source not in ("auto", "official", "trained"):
            raise ValueError(f"source={source!r}; use 'auto', 'official' or 'trained'")
        self.checkpoint_path = None
        if source != "trained":
            self.checkpoint_path = checkpoint_setting(checkpoint, "GENE2VEC_PATH")
            if self.checkpoint_path is None:
                self.checkpoint_path = self._cached_card_file()
            if self.checkpoint_path is None and source == "official":
                raise InputError(
                    "gene2vec source='official' but no vectors: pass checkpoint=PATH to "
                    "gene2vec_dim_200_iter_9.txt, set $GENE2VEC_PATH or run `cgcbench datasets "
                    "fetch gene2vec`"
                )
        self.corpus = tuple(corpus)
        self.dim = int(dim)
        self.iterations = int(iterations if iterations is not None else (5 if self.quick else 10))
        self.n_hvg = int(n_hvg if n_hvg is not None else (1000 if self.quick else 5000))
        self.min_corr, self.max_pairs, self.top_k = float(min_corr), int(max_pairs), int(top_k)
        self.metacell_size, self.max_cells = int(metacell_size), int(max_cells)
        self.vectors_: Any = None
        self.coverage_: Coverage | None = None
        self.params["source"] = "official" if self.checkpoint_path is not None else "trained"

    @staticmethod
    def _cached_card_file() -> Path | None:
        try:
            from benchmarks.data.cards import get_card
            from benchmarks.data.fetch import resolve_file

            card = get_card("gene2vec")
            return resolve_file(card, card.files[0], allow_download=False)
        except (CgcbenchError, IndexError, OSError):
            return None

    def checkpoint_weights(self) -> Path:
        """The released vectors file."""
        assert self.checkpoint_path is not None
        return self.checkpoint_path

    # -- training ------------------------------------------------------------------------
    def corpus_pairs(self) -> list[list[str]]:
        """Co-expressed gene pairs of every corpus data set (Gene2vec's training "sentences")."""
        from benchmarks.data.load import load_dataset

        pairs: list[list[str]] = []
        rng = np.random.default_rng(self.seed)
        for name in self.corpus:
            card, adata = load_dataset(name)
            if card.organism != "human":
                raise InputError(f"gene2vec corpus {name}: organism {card.organism}, need human")
            if adata.n_obs > self.max_cells:
                adata = adata[np.sort(rng.choice(adata.n_obs, self.max_cells, replace=False))]
            norm = log_normalized(adata)
            symbols = np.asarray(norm.var["gene_symbol"] if "gene_symbol" in norm.var
                                 else norm.var_names, dtype=str)
            expressed = np.asarray((norm.X > 0).sum(0)).ravel() >= max(3, 0.01 * norm.n_obs)
            norm, symbols = norm[:, expressed], symbols[expressed]
            genes = highly_variable_genes(norm, self.n_hvg)
            sub = norm[:, genes]
            X = sub.X.toarray() if hasattr(sub.X, "toarray") else np.asarray(sub.X)
            X = metacells(X.astype(np.float64), self.metacell_size, self.seed)
            names = symbols[norm.var_names.get_indexer(genes)].tolist()
            found = coexpression_pairs(X, names, self.min_corr, self.max_pairs, self.top_k)
            log.info("gene2vec: %d co-expressed pairs in %s", len(found), name)
            pairs += found
        if not pairs:
            raise InputError(
                f"gene2vec: no gene pair reaches r >= {self.min_corr} in {list(self.corpus)}; "
                "lower min_corr or add corpus data sets"
            )
        return pairs

    def train(self, pairs: list[list[str]]) -> Any:
        """Train Word2Vec on ``pairs`` the Gene2vec way; return its ``KeyedVectors``."""
        from gensim.models import Word2Vec

        shuffler = random.Random(self.seed)
        pairs = list(pairs)
        shuffler.shuffle(pairs)
        model = Word2Vec(pairs, vector_size=self.dim, window=1, min_count=1, sg=1, epochs=1,
                         workers=1, seed=self.seed)
        for _ in range(1, self.iterations):
            shuffler.shuffle(pairs)
            model.train(pairs, total_examples=len(pairs), epochs=1)
        self.params["n_pairs"] = len(pairs)
        return model.wv

    def vectors(self) -> Any:
        """Return the gene vectors, loading or training them on first use."""
        if self.vectors_ is None:
            if self.checkpoint_path is not None:
                self.vectors_ = read_gene2vec(self.checkpoint_path)
            else:
                self.vectors_ = self.train(self.corpus_pairs())
            self.params["n_genes_in_model"] = len(self.vectors_.index_to_key)
        return self.vectors_

    def embed_genes(self, genes: Sequence[str], id_type: str = "symbol") -> pd.DataFrame:
        """Return the Gene2vec vector of every known gene (Ensembl ids are mapped to symbols)."""
        kv = self.vectors()
        names = [str(g) for g in genes]
        symbols = default_mapper().to_symbol(names) if id_type == "ensembl" else names
        upper = {k.upper(): k for k in kv.index_to_key}
        rows, index, unmapped = [], [], []
        for name, sym in zip(names, symbols, strict=True):
            key = sym if sym is not None and sym in kv.key_to_index else (
                upper.get(sym.upper()) if sym is not None else None)
            if key is None:
                unmapped.append(name)
                continue
            rows.append(kv[key])
            index.append(name)
        self.coverage_ = Coverage(len(names), len(index), unmapped)
        mat = np.stack(rows) if rows else np.zeros((0, kv.vector_size), np.float32)
        return pd.DataFrame(mat, index=pd.Index(index, name="gene"))

    def extra_metrics(self) -> dict[str, float]:
        """Return the share of the last queried genes Gene2vec knows."""
        return {"gene_coverage": self.coverage_.fraction} if self.coverage_ else {}
