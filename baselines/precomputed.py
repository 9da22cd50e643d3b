"""Bring your own method: embeddings computed elsewhere, scored like any model.

* ``obsm:KEY`` (:class:`ObsmEmbeddingAdapter`) — cell embeddings already in the data set's
  ``.obsm[KEY]`` (``cgcbench run clustering|annotation --embedding-key KEY``). Cells keep their
  rows through the harness's QC and splits, so every suite sees exactly the user's vectors.
  For annotation, the classifier on top is the one ``pca-logreg`` uses: a standard-scaled
  multinomial logistic regression (scikit-learn, ``C`` = 1, seeded), fitted on the reference
  cells' embedding and applied to the query's.
* ``genes:NAME`` (:class:`GeneTableAdapter`) — a gene embedding table (``.parquet`` or
  ``.csv``; one row per gene, index = gene symbol or Ensembl id, numeric columns)
  (``cgcbench run gene-classification|grn --gene-embeddings FILE``). The id type is detected
  from the index; the file's sha256 is recorded as the model's checkpoint hash.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd

from benchmarks.errors import InputError
from benchmarks.interface import (
    AnnotationMixin,
    Capabilities,
    CellEmbeddingMixin,
    GeneEmbeddingMixin,
    Init,
    ModelAdapter,
    TaskKind,
)

ALL_KINDS = frozenset({"counts", "log1p_normalized", "log2_normalized", "linear_normalized", "scaled"})


def obsm_matrix(adata: ad.AnnData, key: str, where: str = "the data set") -> np.ndarray:
    """``adata.obsm[key]`` as a finite float32 ``(n_cells, d)`` array.

    Raises
    ------
    InputError
        If the key is absent, the array is not 2-D numeric with one row per cell, or holds
        non-finite values (the message names the key and the fix).

    """
    if key not in adata.obsm:
        keys = ", ".join(map(str, adata.obsm.keys())) or "none"
        raise InputError(
            f"{where}: obsm has no key {key!r} (obsm keys: {keys}); pass --embedding-key with one of them"
        )
    value = adata.obsm[key]
    arr = value.to_numpy() if isinstance(value, pd.DataFrame) else value
    if hasattr(arr, "toarray"):
        arr = arr.toarray()
    arr = np.asarray(arr)
    if arr.ndim != 2 or arr.shape[0] != adata.n_obs or arr.shape[1] < 1:
        raise InputError(f"{where}: obsm[{key!r}] has shape {arr.shape}; expected (n_cells, d) with d >= 1")
    if not np.issubdtype(arr.dtype, np.number) or np.iscomplexobj(arr):
        raise InputError(
            f"{where}: obsm[{key!r}] holds {arr.dtype} values; a cell embedding must be real numbers"
        )
    arr = arr.astype(np.float32)
    bad = int((~np.isfinite(arr)).any(axis=1).sum())
    if bad:
        raise InputError(
            f"{where}: obsm[{key!r}] has {bad} cells with NaN or infinite values; fix or drop them"
        )
    return arr


class ObsmEmbeddingAdapter(ModelAdapter, CellEmbeddingMixin, AnnotationMixin):
    """A user's cell embedding read from ``.obsm[variant]`` (model string ``obsm:KEY``).

    Parameters
    ----------
    C
        Inverse L2 regularisation of the annotation classifier (logistic regression).

    """

    name = "obsm"
    description = "Your own cell embedding from .obsm[KEY] (obsm:KEY); annotation via logistic regression."
    free_variant = "obsm key"
    capabilities = Capabilities(
        task_kinds=frozenset({TaskKind.CELL_EMBEDDING, TaskKind.ANNOTATION}), expression_kinds=ALL_KINDS
    )

    def __init__(self, *, C: float = 1.0, **kwargs: Any) -> None:
        super().__init__(C=C, **kwargs)
        self.C = float(C)
        self.params["obsm_key"] = self.variant
        self.params["source"] = "the data set file's obsm (pinned by the data set's sha256)"
        self._clf: Any = None

    @property
    def init(self) -> Init:
        """The vectors were computed by the user, outside this harness."""
        return "pretrained"

    def embed_cells(self, adata: ad.AnnData) -> np.ndarray:
        """The rows of ``adata.obsm[key]`` (one per cell of ``adata``)."""
        return obsm_matrix(adata, self.variant)

    def fit_classifier(self, reference: ad.AnnData, label_key: str) -> None:
        """Scale the reference cells' embedding and fit a logistic regression on their labels."""
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        self._clf = make_pipeline(
            StandardScaler(), LogisticRegression(C=self.C, max_iter=2000, random_state=self.seed)
        )
        self._clf.fit(self.embed_cells(reference), reference.obs[label_key].astype(str).to_numpy())

    def predict_labels(self, query: ad.AnnData) -> np.ndarray:
        """Predict the query cells' labels from their embedding."""
        if self._clf is None:
            raise RuntimeError("obsm adapter: predict_labels called before fit_classifier")
        return np.asarray(self._clf.predict(self.embed_cells(query)))


def read_gene_table(path: str | Path) -> tuple[pd.DataFrame, str]:
    """Read and check a gene embedding table; return it (float32) and its id type.

    The index is the first column of a CSV, or the parquet file's index (its first column
    when the stored index is a plain range). Ensembl version suffixes (``ENSG….12``) are
    dropped.

    Raises
    ------
    InputError
        If the file is missing or unreadable, has no numeric columns, non-numeric or
        non-finite values, duplicated genes, or an index that is neither symbols nor Ensembl
        ids.

    """
    from benchmarks.data.identifiers import classify_ids

    path = Path(path).expanduser()
    if not path.is_file():
        raise InputError(f"{path}: no such file; pass --gene-embeddings a .parquet or .csv gene table")
    suffix = path.suffix.lower()
    try:
        if suffix == ".parquet":
            table = pd.read_parquet(path)
            if isinstance(table.index, pd.RangeIndex) and table.shape[1] and table.iloc[:, 0].dtype == object:
                table = table.set_index(table.columns[0])
        elif suffix in (".csv", ".tsv"):
            table = pd.read_csv(path, index_col=0, sep="\t" if suffix == ".tsv" else ",")
        else:
            raise InputError(f"{path}: unknown table format {suffix!r}; write the table as .parquet or .csv")
    except InputError:
        raise
    except Exception as exc:
        raise InputError(f"{path}: cannot be read as a gene table ({type(exc).__name__}: {exc})") from exc
    if table.shape[0] < 2 or table.shape[1] < 1:
        raise InputError(f"{path}: the table has shape {table.shape}; expected one row per gene, >= 1 column")
    non_numeric = [str(c) for c in table.columns if not pd.api.types.is_numeric_dtype(table[c])]
    if non_numeric:
        raise InputError(
            f"{path}: columns {', '.join(non_numeric[:5])} are not numeric; the index holds the gene ids "
            "(first CSV column) and every other column one embedding dimension"
        )
    values = table.to_numpy(dtype=np.float32)
    bad = int((~np.isfinite(values)).any(axis=1).sum())
    if bad:
        raise InputError(f"{path}: {bad} genes have NaN or infinite values; fix or drop those rows")
    ids = pd.Index([str(i) for i in table.index])
    ids = pd.Index([i.split(".")[0] if i.startswith("ENS") else i for i in ids], name="gene")
    dup = ids[ids.duplicated()]
    if len(dup):
        raise InputError(
            f"{path}: {len(dup)} duplicated gene ids (e.g. {', '.join(sorted(set(dup))[:5])}); "
            "keep one row per gene"
        )
    report = classify_ids(list(ids))
    if report.id_type not in ("symbol", "ensembl"):
        raise InputError(
            f"{path}: the index looks like {report.id_type} ids ({report.rule}; e.g. "
            f"{', '.join(report.examples)}); index the table by gene symbol or Ensembl id"
        )
    return pd.DataFrame(values, index=ids, columns=[str(c) for c in table.columns]), report.id_type


class GeneTableAdapter(ModelAdapter, GeneEmbeddingMixin):
    """A user's gene embedding table (model string ``genes:NAME``, file in ``path``).

    Parameters
    ----------
    path
        The ``.parquet`` or ``.csv`` table (see :func:`read_gene_table`).

    """

    name = "genes"
    description = "Your own gene embedding table (.parquet/.csv, index = symbol or Ensembl id)."
    free_variant = "table name"
    capabilities = Capabilities(task_kinds=frozenset({TaskKind.GENE_EMBEDDING}), expression_kinds=ALL_KINDS)

    def __init__(self, *, path: str | None = None, **kwargs: Any) -> None:
        if not path:
            raise InputError("model genes: needs the table's path (--gene-embeddings FILE)")
        from benchmarks.data.fetch import sha256_file

        resolved = Path(path).expanduser().resolve()
        super().__init__(path=str(resolved), **kwargs)
        self.table, self.id_type = read_gene_table(resolved)
        self._sha = sha256_file(resolved)
        n_genes, dim = self.table.shape
        self.params |= {"id_type": self.id_type, "n_genes": int(n_genes), "dim": int(dim)}
        # the suites convert their gene ids to the type the table is indexed by
        self.capabilities = Capabilities(
            task_kinds=type(self).capabilities.task_kinds,
            gene_id_type=self.id_type,
            expression_kinds=ALL_KINDS,
        )

    @property
    def init(self) -> Init:
        """The vectors were computed by the user, outside this harness."""
        return "pretrained"

    @property
    def checkpoint_sha256(self) -> str | None:
        """sha256 of the table file."""
        return self._sha

    def bind_dataset(self, dataset: Mapping[str, Any]) -> None:
        """Nothing to exclude: the table is fixed."""

    def embed_genes(self, genes: Sequence[str], id_type: str = "symbol") -> pd.DataFrame:
        """The table's rows for the genes it has (absent genes are left out)."""
        want = [str(g).split(".")[0] if str(g).startswith("ENS") else str(g) for g in genes]
        known = [g for g in want if g in self.table.index]
        return self.table.loc[known]
