"""Chromosome-position prior: genes close in genome order are linked with a signed offset."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from cgc.errors import InputFileError


def read_positions(path: str | Path) -> pd.DataFrame:
    """Read a gene position table (copykat layout: parquet or CSV).

    Accepted columns: ``chromosome_name``, ``start_position``, ``hgnc_symbol`` (or
    ``mgi_symbol``/``symbol``), optionally ``ensembl_gene_id``.

    Returns
    -------
    pandas.DataFrame
        Columns ``symbol``, ``chrom`` (str), ``start`` (int), ``ensembl`` (str or missing).

    """
    p = Path(path)
    if not p.is_file():
        raise InputFileError(f"gene position table {p} not found")
    df = pd.read_parquet(p) if p.suffix == ".parquet" else pd.read_csv(p, sep=None, engine="python")
    sym_col = next((c for c in ("hgnc_symbol", "mgi_symbol", "symbol") if c in df.columns), None)
    missing = [c for c in ("chromosome_name", "start_position") if c not in df.columns]
    if sym_col is None or missing:
        raise InputFileError(
            f"{p}: need columns chromosome_name, start_position and hgnc_symbol/mgi_symbol/"
            f"symbol; found {list(df.columns)}"
        )
    out = pd.DataFrame(
        {
            "symbol": df[sym_col].astype(str),
            "chrom": df["chromosome_name"].astype(str),
            "start": pd.to_numeric(df["start_position"], errors="coerce"),
            "ensembl": df["ensembl_gene_id"].astype(str) if "ensembl_gene_id" in df else None,
        }
    )
    out = out[(out["symbol"] != "") & (out["symbol"] != "nan") & out["start"].notna()]
    return out.reset_index(drop=True)


def position_edges(
    ids: np.ndarray, chrom: np.ndarray, start: np.ndarray, window: int = 50
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All ordered pairs of genes fewer than ``window`` apart in genome order.

    Genes are ranked by ``(chrom, start, id)`` on each chromosome; genes ``i`` and ``j``
    on the same chromosome with ``0 < |rank_j - rank_i| < window`` are linked in both
    directions with offset ``pos_ij = rank_j - rank_i``.

    Parameters
    ----------
    ids
        Vocabulary ids (one per gene; duplicates must be removed by the caller).
    chrom, start
        Chromosome label and start coordinate of each gene.
    window
        Maximum distance in genes, exclusive.

    Returns
    -------
    src, dst, offset : numpy.ndarray
        Edge endpoints (vocabulary ids) and signed offsets (``int8``).

    """
    order = np.lexsort((ids, start, chrom))
    ids_o, chrom_o = ids[order], chrom[order]
    srcs, dsts, offs = [], [], []
    for d in range(1, window):
        same = chrom_o[d:] == chrom_o[:-d]
        a, b = ids_o[:-d][same], ids_o[d:][same]
        srcs += [a, b]
        dsts += [b, a]
        offs += [np.full(len(a), d, np.int8), np.full(len(a), -d, np.int8)]
    if not srcs:
        empty = np.zeros(0, np.int64)
        return empty, empty, np.zeros(0, np.int8)
    return np.concatenate(srcs), np.concatenate(dsts), np.concatenate(offs)
