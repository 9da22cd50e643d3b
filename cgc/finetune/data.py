"""Expression matrices → cell graphs for fine-tuning and inference.

Two kinds of cell graphs are built:

* **cell graphs** (cell embeddings, annotation, masked fine-tuning): exactly what
  pre-training saw (:func:`cgc.cells.cell_example`): the cell's expressed genes, or the data
  set's gene panel with zeros when the model was trained with ``input_genes="panel"``;
* **panel graphs** (perturbation, bulk knockout): a fixed panel of genes including the zeros
  (the decoder must predict every gene), plus the perturbed / knocked-out genes marked with
  special token 1 (added as nodes when absent from the panel). Node fields ``base`` (the
  input value before binning), ``target`` and ``loss_mask`` feed the per-gene decoder.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch
from torch_geometric.data import Data

from cgc.cells import GeneStats, cell_example, column_moments, prepare_example
from cgc.config import CGCConfig
from cgc.graph import CellGraphBuilder, CellInput
from cgc.preprocess import Seed, bin_values, first_mapped_columns, highly_variable, normalize_as
from cgc.priors.bundle import GenePriors
from cgc.priors.vocab import MappingReport

PERTURBED_TOKEN = 1
"""Special token ``s_i`` of perturbed / knocked-out genes (0 = ordinary gene)."""


@dataclass
class CellMatrix:
    """Expression restricted to the genes a priors bundle knows.

    Attributes
    ----------
    x
        ``cells × k`` CSR matrix of normalised, log-transformed values.
    gene_ids
        ``[k]`` vocabulary ids of the columns (distinct).
    columns
        ``[k]`` positions of these columns among the input genes.
    report
        How many input genes mapped to the vocabulary.
    stats
        Per-gene mean/std of these cells (standardised targets of masked fine-tuning).

    """

    x: sp.csr_matrix
    gene_ids: np.ndarray
    columns: np.ndarray
    report: MappingReport
    stats: GeneStats | None = None

    def subset(self, rows: np.ndarray) -> CellMatrix:
        """The same genes for a subset of the cells (statistics kept)."""
        return CellMatrix(self.x[rows], self.gene_ids, self.columns, self.report, self.stats)

    @property
    def n_cells(self) -> int:
        """Number of cells (rows)."""
        return int(self.x.shape[0])


def map_matrix(priors: GenePriors, X: sp.spmatrix | np.ndarray, symbols: Sequence[str | None],
               normalize: str = "auto", panel_size: int | None = None,
               panel_ids: np.ndarray | None = None, id_type: str = "symbol") -> CellMatrix:
    """Map the columns of ``X`` to the vocabulary and normalise the values.

    Parameters
    ----------
    priors
        Bundle whose vocabulary is used.
    X
        ``cells × genes`` expression.
    symbols
        Gene identifier of each column (``None`` or ``""`` when unknown).
    normalize
        ``"auto"`` (total-count + ``log1p`` when ``X`` holds counts, else as is), ``"total"``,
        ``"log1p"`` or ``"none"``.
    panel_size
        Keep only the ``panel_size`` most variable mapped genes (a model's gene panel).
    panel_ids
        Keep exactly these vocabulary ids, in this order (a panel chosen on other cells,
        e.g. the reference of an annotation task); ids the data lacks are dropped.
    id_type
        ``"symbol"`` or ``"ensembl"``: the type of ``symbols``.

    Returns
    -------
    CellMatrix
        The mapped matrix (duplicated symbols keep their first column) with per-gene
        statistics of these cells.

    """
    names = [s if s else "" for s in symbols]
    ids, report = priors.map_genes(names, id_type)
    cols = first_mapped_columns(ids)
    x = normalize_as(X, normalize)[:, cols].tocsr()
    gene_ids = ids[cols]
    s1, s2 = column_moments(x)
    keep = None
    if panel_ids is not None:
        where = {int(g): i for i, g in enumerate(gene_ids)}
        keep = np.array([where[int(g)] for g in panel_ids if int(g) in where], dtype=np.int64)
    elif panel_size is not None and len(cols) > panel_size:
        keep = highly_variable(s1, s2, x.shape[0], panel_size)
    if keep is not None:
        x, gene_ids, cols, s1, s2 = x[:, keep].tocsr(), gene_ids[keep], cols[keep], s1[keep], s2[keep]
    stats = GeneStats.from_moments(priors.n_genes, gene_ids, s1, s2, x.shape[0])
    return CellMatrix(x, gene_ids, cols, report, stats)


def _row(cm: CellMatrix, r: int) -> tuple[np.ndarray, np.ndarray]:
    lo, hi = cm.x.indptr[r], cm.x.indptr[r + 1]
    vals = cm.x.data[lo:hi]
    keep = vals > 0
    return cm.gene_ids[cm.x.indices[lo:hi][keep]], vals[keep]


def _dense_row(cm: CellMatrix, r: int) -> tuple[np.ndarray, np.ndarray]:
    return cm.gene_ids, np.asarray(cm.x[r].toarray(), dtype=np.float32).ravel()


def batch_stats(cm: CellMatrix, batch_labels: np.ndarray, n_vocab: int) -> dict[int, GeneStats]:
    """Per-gene statistics of each batch's cells (batch-standardised masked targets).

    Standardising targets within a batch removes the batch's own shifts (library size,
    dropout level) from what the model is asked to predict, so the cell loss (eq. 11) no
    longer rewards a cell embedding that encodes the batch.
    """
    return {int(b): GeneStats.from_matrix(n_vocab, cm.gene_ids, cm.x[np.flatnonzero(batch_labels == b)])
            for b in np.unique(batch_labels)}


def expressed_graph(builder: CellGraphBuilder, config: CGCConfig, cm: CellMatrix, r: int,
                    seed: Seed = 0, mask: bool = False, stats: GeneStats | None = None) -> Data:
    """Graph of cell ``r`` as pre-training built it; masked as in pre-training if ``mask``.

    ``input_genes="expressed"``: the cell's non-zero genes (the ``max_genes`` highest
    without masking, sampled by ``config.sample_mode`` with it). ``"panel"``: every column
    of ``cm`` (the panel), zeros included. Targets are standardised with ``stats`` (default
    ``cm.stats``).
    """
    genes, vals = _dense_row(cm, r) if config.input_genes == "panel" else _row(cm, r)
    return cell_example(builder, config, genes, vals, seed, mask=mask,
                        stats=stats if stats is not None else cm.stats)


def expressed_input(config: CGCConfig, cm: CellMatrix, r: int, seed: Seed = 0,
                    mask: bool = False, stats: GeneStats | None = None
                    ) -> tuple[CellInput, np.random.Generator]:
    """:func:`expressed_graph` without the graph: node inputs and the edge-budget Generator.

    ``builder.build_batch`` of many of these equals collating their :func:`expressed_graph`.
    """
    genes, vals = _dense_row(cm, r) if config.input_genes == "panel" else _row(cm, r)
    return prepare_example(config, genes, vals, seed, mask=mask,
                           stats=stats if stats is not None else cm.stats)


def choose_panel(gene_ids: np.ndarray, mean_values: np.ndarray, max_genes: int) -> np.ndarray:
    """Positions of the panel genes: all of them, or the ``max_genes`` highest mean values.

    Returns sorted positions into ``gene_ids``.
    """
    if len(gene_ids) <= max_genes:
        return np.arange(len(gene_ids))
    return np.sort(np.argsort(-np.asarray(mean_values), kind="stable")[:max_genes])


def panel_graph(builder: CellGraphBuilder, config: CGCConfig, panel_ids: np.ndarray,
                base: np.ndarray, perturbed_ids: Sequence[int] = (),
                target: np.ndarray | None = None, seed: Seed = 0) -> Data:
    """Graph of a fixed gene panel with perturbed genes marked (perturbation, knockout).

    Parameters
    ----------
    builder, config
        Graph builder and model configuration.
    panel_ids
        ``[k]`` distinct vocabulary ids of the panel genes.
    base
        ``[k]`` input values (control cell / pre-knockout profile); the decoder adds its
        predicted change to them, binning treats values ``<= 0`` as not expressed.
    perturbed_ids
        Vocabulary ids of the perturbed genes; those outside the panel are appended as
        extra nodes with value 0.
    target
        ``[k]`` values to predict (post-perturbation); extra nodes are excluded from the loss.
    seed
        Seed of the co-expression edge budget.

    Returns
    -------
    torch_geometric.data.Data
        Node fields ``base``, ``target``, ``loss_mask`` and ``special`` besides the usual ones;
        gene nodes ``1..k`` are the panel in order.

    """
    panel_ids = np.asarray(panel_ids, dtype=np.int64)
    pert = np.unique(np.asarray(list(perturbed_ids), dtype=np.int64))
    extra = pert[~np.isin(pert, panel_ids)]
    ids = np.concatenate([panel_ids, extra])
    b = np.concatenate([np.asarray(base, np.float32), np.zeros(len(extra), np.float32)])
    special = np.where(np.isin(ids, pert), PERTURBED_TOKEN, 0).astype(np.int64)
    binned = bin_values(np.maximum(b, 0), config.n_bins).astype(np.float32)
    g = builder.build(ids, binned, special=special, seed=seed)
    t = np.zeros(len(ids), np.float32)
    if target is not None:
        t[: len(panel_ids)] = np.asarray(target, np.float32)
    lm = np.zeros(len(ids), bool)
    if target is not None:
        lm[: len(panel_ids)] = True
    g.base = torch.cat([torch.zeros(1), torch.as_tensor(b)])
    g.target = torch.cat([torch.zeros(1), torch.as_tensor(t)])
    g.loss_mask = torch.cat([torch.zeros(1, dtype=torch.bool), torch.as_tensor(lm)])
    return g
