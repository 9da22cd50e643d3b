"""Expression matrices → cell graphs for fine-tuning and inference.

Two kinds of cell graphs are built:

* **expressed-gene graphs** (cell embeddings, annotation, masked fine-tuning): a cell's
  non-zero genes, at most ``max_genes`` (highest values, or weighted sampling when masking),
  binned per cell as in pre-training;
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

from cgc.config import CGCConfig
from cgc.graph import CellGraphBuilder
from cgc.preprocess import Seed, bin_values, first_mapped_columns, normalize_as, prepare_cell
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

    """

    x: sp.csr_matrix
    gene_ids: np.ndarray
    columns: np.ndarray
    report: MappingReport

    @property
    def n_cells(self) -> int:
        """Number of cells (rows)."""
        return int(self.x.shape[0])


def map_matrix(priors: GenePriors, X: sp.spmatrix | np.ndarray, symbols: Sequence[str | None],
               normalize: str = "auto") -> CellMatrix:
    """Map the columns of ``X`` to the vocabulary and normalise the values.

    Parameters
    ----------
    priors
        Bundle whose vocabulary is used.
    X
        ``cells × genes`` expression.
    symbols
        Gene symbol of each column (``None`` or ``""`` when unknown).
    normalize
        ``"auto"`` (total-count + ``log1p`` when ``X`` holds counts, else as is), ``"total"``,
        ``"log1p"`` or ``"none"``.

    Returns
    -------
    CellMatrix
        The mapped matrix; duplicated symbols keep their first column.

    """
    names = [s if s else "" for s in symbols]
    ids, report = priors.map_genes(names, "symbol")
    cols = first_mapped_columns(ids)
    x = normalize_as(X, normalize)[:, cols].tocsr()
    return CellMatrix(x, ids[cols], cols, report)


def _row(cm: CellMatrix, r: int) -> tuple[np.ndarray, np.ndarray]:
    lo, hi = cm.x.indptr[r], cm.x.indptr[r + 1]
    vals = cm.x.data[lo:hi]
    keep = vals > 0
    return cm.gene_ids[cm.x.indices[lo:hi][keep]], vals[keep]


def expressed_graph(builder: CellGraphBuilder, config: CGCConfig, cm: CellMatrix, r: int,
                    seed: Seed = 0, mask: bool = False) -> Data:
    """Graph of cell ``r``: its expressed genes, binned; masked as in pre-training if ``mask``.

    Without masking the ``max_genes`` highest genes are kept (deterministic, as
    :func:`cgc.embed.embed_cells`); with masking genes are sampled by ``config.sample_mode``
    and ``config.mask_ratio`` of the values are hidden.
    """
    genes, vals = _row(cm, r)
    rng = np.random.default_rng(seed) if not isinstance(seed, np.random.Generator) else seed
    if mask:
        c = prepare_cell(genes, vals, config.max_genes, config.n_bins, config.mask_ratio, rng,
                         config.sample_mode, config.mask_value)
        return builder.build(c["genes"], c["input"], c["target"], c["mask"], seed=rng)
    c = prepare_cell(genes, vals, config.max_genes, config.n_bins, 0.0, rng, "top")
    return builder.build(c["genes"], c["input"], c["target"], seed=rng)


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
