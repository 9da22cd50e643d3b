"""``random``: random gene and cell embeddings, the control that bounds every embedding metric.

Each vector is drawn from a standard normal generator seeded by a hash of ``(seed, id)``, so a
gene gets the same vector whatever else is queried with it and in whatever order, and two seeds
give independent embeddings. Cells are keyed by their ``obs_names``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd

from benchmarks.interface import (
    Capabilities,
    CellEmbeddingMixin,
    GeneEmbeddingMixin,
    Init,
    ModelAdapter,
    TaskKind,
)


def _vector(seed: int, kind: str, key: str, dim: int) -> np.ndarray:
    digest = hashlib.blake2b(f"{seed}\x1f{kind}\x1f{key}".encode(), digest_size=16).digest()
    rng = np.random.default_rng(int.from_bytes(digest, "little"))
    return rng.standard_normal(dim).astype(np.float32)


class RandomEmbeddingAdapter(ModelAdapter, GeneEmbeddingMixin, CellEmbeddingMixin):
    """Standard-normal embeddings keyed by gene id / cell name and the seed.

    Parameters
    ----------
    dim
        Width of the gene embeddings (Gene2vec's 200 by default).
    cell_dim
        Width of the cell embeddings.

    """

    name = "random"
    description = "Control: i.i.d. N(0, 1) vectors per gene / cell, seeded by (seed, id)."
    is_control = True
    capabilities = Capabilities(
        task_kinds=frozenset({TaskKind.GENE_EMBEDDING, TaskKind.CELL_EMBEDDING})
    )

    def __init__(self, *, dim: int = 200, cell_dim: int = 50, **kwargs: Any) -> None:
        super().__init__(dim=dim, cell_dim=cell_dim, **kwargs)
        if dim < 1 or cell_dim < 1:
            raise ValueError("dim and cell_dim must be positive")
        self.dim, self.cell_dim = int(dim), int(cell_dim)

    @property
    def init(self) -> Init:
        """A control has no weights."""
        return "none"

    def embed_genes(self, genes: Sequence[str], id_type: str = "symbol") -> pd.DataFrame:
        """One random vector per gene (every gene is "known")."""
        names = [str(g) for g in genes]
        mat = np.stack([_vector(self.seed, "gene", g, self.dim) for g in names]) if names else (
            np.zeros((0, self.dim), np.float32)
        )
        return pd.DataFrame(mat, index=pd.Index(names, name="gene"))

    def embed_cells(self, adata: ad.AnnData) -> np.ndarray:
        """One random vector per cell, keyed by its ``obs_names`` (expression is ignored)."""
        if adata.n_obs == 0:
            return np.zeros((0, self.cell_dim), np.float32)
        return np.stack(
            [_vector(self.seed, "cell", str(c), self.cell_dim) for c in adata.obs_names]
        )
