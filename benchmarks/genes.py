"""Asking an adapter for the embeddings of a list of genes, whatever id type each side uses."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def embed_gene_list(adapter: Any, genes: Sequence[str], id_type: str) -> tuple[np.ndarray, np.ndarray]:
    """Embed ``genes`` (of ``id_type``) with ``adapter``, converting ids to the adapter's type.

    Ids are converted with the NCBI gene table (``baselines.gene_ids.default_mapper``) when
    the adapter declares the other id type.

    Returns
    -------
    embedding
        ``(n_covered, d)`` float array, rows in the order of the covered genes.
    covered
        Boolean mask over ``genes``: which genes the adapter embedded.

    """
    want = adapter.capabilities.gene_id_type
    if want in ("any", id_type):
        query: list[str | None] = [str(g) for g in genes]
        query_type = id_type
    else:
        from baselines.gene_ids import default_mapper

        query = default_mapper().convert(list(genes), id_type, want)
        query_type = want
    asked = sorted({q for q in query if q is not None})
    table = adapter.embed_genes(asked, id_type=query_type) if asked else None
    index = set() if table is None else set(map(str, table.index))
    covered = np.array([q is not None and q in index for q in query], dtype=bool)
    if not covered.any():
        return np.zeros((0, 0), dtype=np.float32), covered
    rows = [q for q, c in zip(query, covered, strict=True) if c]
    emb = table.loc[rows].to_numpy(dtype=np.float32)
    if not np.isfinite(emb).all():
        raise ValueError(f"{adapter.name}.embed_genes returned non-finite values")
    return emb, covered
