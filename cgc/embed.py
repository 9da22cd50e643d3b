"""Cell embeddings ``h_c`` of AnnData objects with a (pre-)trained model."""

from __future__ import annotations

from typing import TYPE_CHECKING

import anndata as ad
import numpy as np
import torch

from cgc.graph import CellGraphBuilder, CellInput

if TYPE_CHECKING:
    from cgc.model import CGCModel


def cell_graphs(model: CGCModel, adata: ad.AnnData, id_type: str = "symbol",
                layer: str | None = None, normalize: str = "auto",
                min_mapped_fraction: float = 0.5, seed: int = 0) -> list:
    """Build the (unmasked) cell graphs of ``adata`` for ``model``.

    Genes are mapped to the vocabulary (unmapped ones dropped; fail if fewer than
    ``min_mapped_fraction`` map); each graph is built as in pre-training
    (:func:`cgc.finetune.data.expressed_graph`: expressed genes or the gene panel, by the
    model's ``input_genes``) and nothing is masked.
    """
    from cgc.finetune.data import expressed_graph, map_matrix

    cfg = model.config
    panel = cfg.max_genes if cfg.input_genes == "panel" else None
    cm = map_matrix(model.priors, adata.layers[layer] if layer is not None else adata.X,
                    list(adata.var_names), normalize, panel_size=panel, id_type=id_type)
    cm.report.check(min_mapped_fraction, where="embed_cells(adata)")
    builder = CellGraphBuilder(model.priors, cfg)
    return [expressed_graph(builder, cfg, cm, r, np.random.default_rng([seed, r]))
            for r in range(cm.n_cells)]


def _cell_inputs(model: CGCModel, adata: ad.AnnData, id_type: str, layer: str | None,
                 normalize: str, min_mapped_fraction: float, seed: int = 0
                 ) -> tuple[CellGraphBuilder, list[tuple[CellInput, np.random.Generator]]]:
    """:func:`cell_graphs` without the graphs: the builder and every cell's node inputs."""
    from cgc.finetune.data import expressed_input, map_matrix

    cfg = model.config
    panel = cfg.max_genes if cfg.input_genes == "panel" else None
    cm = map_matrix(model.priors, adata.layers[layer] if layer is not None else adata.X,
                    list(adata.var_names), normalize, panel_size=panel, id_type=id_type)
    cm.report.check(min_mapped_fraction, where="embed_cells(adata)")
    builder = CellGraphBuilder(model.priors, cfg)
    return builder, [expressed_input(cfg, cm, r, np.random.default_rng([seed, r]))
                     for r in range(cm.n_cells)]


@torch.no_grad()
def embed_cells(model: CGCModel, adata: ad.AnnData, batch_size: int = 64,
                device: str | torch.device | None = None, id_type: str = "symbol",
                layer: str | None = None, normalize: str = "auto",
                min_mapped_fraction: float = 0.5) -> np.ndarray:
    """Return the cell embeddings ``h_c`` of every cell of ``adata``.

    Parameters
    ----------
    model
        A CGC model.
    adata
        Cells × genes; raw counts are normalised and log-transformed (``normalize="auto"``).
    batch_size
        Cells per forward pass.
    device
        Device for the forward passes (default: the model's device).
    id_type
        ``"symbol"`` or ``"ensembl"`` for ``var_names``.
    layer
        Use this layer instead of ``X``.
    normalize
        ``"auto"``, ``"total"``, ``"log1p"`` or ``"none"`` (see
        :func:`cgc.train.corpus.build_corpus`).
    min_mapped_fraction
        Fail if fewer genes map to the vocabulary.

    Returns
    -------
    numpy.ndarray
        ``float32`` array of shape ``(n_cells, d_model)``.

    """
    dev = torch.device(device) if device is not None else next(model.parameters()).device
    was = model.training
    model.eval().to(dev)
    builder, inputs = _cell_inputs(model, adata, id_type, layer, normalize, min_mapped_fraction)
    out = np.zeros((len(inputs), model.config.d_model), dtype=np.float32)
    for s in range(0, len(inputs), batch_size):
        chunk = inputs[s : s + batch_size]  # graphs built per batch, all at once
        batch = builder.build_batch([c for c, _ in chunk], [r for _, r in chunk]).to(dev)
        out[s : s + batch.num_graphs] = model(batch).h_cell.float().cpu().numpy()
    model.train(was)
    return out
