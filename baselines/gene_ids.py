"""Gene identifiers shared by the baseline adapters: symbol ↔ Ensembl mapping and coverage.

Models work in one identifier type (Geneformer: Ensembl ids; scGPT, GEARS, Gene2vec and the
text models: HGNC symbols) while data sets come in either. :class:`GeneIdMapper` converts
between them with the NCBI gene info table of the ``gene_info_hs`` dataset card
(org.Hs.eg.db), optionally preceded by a model's own table (Geneformer's gene-name → id
dictionary), and :class:`Coverage` reports how many genes a model could use so that a model
never silently drops most genes.

The module also holds two small helpers every adapter needs: :func:`resource_path` (a file of a
dataset card, resolved cache → mirrors → download with its checksum) and
:func:`checkpoint_setting` (a checkpoint path from a setting or an environment variable).
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd

from benchmarks.errors import InputError

log = logging.getLogger(__name__)

GENE_INFO_CARD = "gene_info_hs"
"""Dataset card of the NCBI gene info table (symbol, Ensembl ids, names, GO-free)."""


def resource_path(card_name: str, file_name: str | None = None) -> Path:
    """Local, checksum-verified path of one file of a dataset card.

    Parameters
    ----------
    card_name
        Name of the card under ``datasets/`` (e.g. ``"gene_info_hs"``).
    file_name
        The file's name in the card; matched against the card's ``name`` and the base name of
        its ``mirror_path``. May be omitted for single-file cards.

    Returns
    -------
    pathlib.Path
        Where the file lies (cache, mirror directory or bundled package file).

    Raises
    ------
    InputError
        If the card has no such file.

    """
    from benchmarks.data.cards import get_card
    from benchmarks.data.fetch import resolve_file

    card = get_card(card_name)
    if file_name is None:
        if len(card.files) != 1:
            names = ", ".join(f.name for f in card.files)
            raise InputError(f"dataset {card_name} has several files ({names}); name one")
        return resolve_file(card, card.files[0])
    for spec in card.files:
        if file_name in (spec.name, Path(spec.mirror_path or "").name):
            return resolve_file(card, spec)
    names = ", ".join(f.name for f in card.files)
    raise InputError(f"dataset {card_name} has no file {file_name!r} (files: {names})")


def checkpoint_setting(checkpoint: str | os.PathLike[str] | None, env_var: str) -> Path | None:
    """Return the checkpoint a user supplied: the ``checkpoint`` setting, else ``$env_var``.

    Raises
    ------
    InputError
        If a checkpoint was named but does not exist.

    """
    raw = checkpoint if checkpoint not in (None, "") else os.environ.get(env_var) or None
    if raw is None:
        return None
    path = Path(raw).expanduser()
    if not path.exists():
        source = "checkpoint=" if checkpoint not in (None, "") else f"${env_var}"
        raise InputError(f"{source} names {path}, which does not exist; pass an existing path")
    return path


def strip_version(ensembl_id: str) -> str:
    """``ENSG00000141510.17`` → ``ENSG00000141510``."""
    return ensembl_id.split(".", 1)[0] if ensembl_id.startswith("ENS") else ensembl_id


@dataclass
class Coverage:
    """How many of a model's input genes it could use.

    Attributes
    ----------
    n_input
        Genes given.
    n_mapped
        Genes the model knows (after id conversion).
    unmapped
        The genes it does not know, in input order.

    """

    n_input: int
    n_mapped: int
    unmapped: list[str] = field(default_factory=list)

    @property
    def fraction(self) -> float:
        """Share of input genes the model could use."""
        return self.n_mapped / self.n_input if self.n_input else 0.0

    def check(self, model: str, min_fraction: float = 0.5, what: str = "genes") -> None:
        """Raise when the model would silently drop most genes.

        Raises
        ------
        InputError
            If fewer than ``min_fraction`` of the genes map (the message names examples).

        """
        if self.n_input and self.fraction < min_fraction:
            raise InputError(
                f"{model}: only {self.n_mapped}/{self.n_input} {what} ({self.fraction:.0%}) are "
                f"in the model's vocabulary (need >= {min_fraction:.0%}; unmapped e.g. "
                f"{', '.join(self.unmapped[:5])}); check the gene-id type (symbol vs Ensembl) "
                "and the organism"
            )
        if self.n_input and self.fraction < 0.9:
            log.warning(
                "%s: %d/%d %s (%.0f%%) map to the model's vocabulary", model, self.n_mapped,
                self.n_input, what, 100 * self.fraction,
            )


class GeneIdMapper:
    """Symbol ↔ Ensembl conversion from one or more (symbol, Ensembl id) tables.

    Parameters
    ----------
    pairs
        ``(symbol, ensembl_id)`` pairs in priority order: for a symbol with several Ensembl ids
        the first pair wins, and likewise for an Ensembl id with several symbols.

    """

    def __init__(self, pairs: Sequence[tuple[str, str]]) -> None:
        self._to_ens: dict[str, str] = {}
        self._to_ens_upper: dict[str, str] = {}
        self._to_sym: dict[str, str] = {}
        for sym, ens in pairs:
            ens = strip_version(ens)
            self._to_ens.setdefault(sym, ens)
            self._to_ens_upper.setdefault(sym.upper(), ens)
            self._to_sym.setdefault(ens, sym)

    @classmethod
    def from_gene_info(cls, path: str | os.PathLike[str]) -> GeneIdMapper:
        """Build from the NCBI gene info table (``symbol`` and ``;``-separated ``ensembl_ids``)."""
        df = pd.read_csv(path, sep="\t", usecols=["symbol", "ensembl_ids"], dtype=str).dropna()
        pairs = [
            (sym, ens)
            for sym, ids in zip(df["symbol"], df["ensembl_ids"], strict=True)
            for ens in ids.split(";")
            if ens
        ]
        return cls(pairs)

    def with_priority(self, table: Mapping[str, str]) -> GeneIdMapper:
        """Return a mapper that consults ``table`` (symbol → Ensembl id) before this one."""
        out = GeneIdMapper(list(table.items()))
        for sym, ens in self._to_ens.items():
            out._to_ens.setdefault(sym, ens)
            out._to_ens_upper.setdefault(sym.upper(), ens)
        for ens, sym in self._to_sym.items():
            out._to_sym.setdefault(ens, sym)
        return out

    def to_ensembl(self, symbols: Sequence[str]) -> list[str | None]:
        """Ensembl id of each symbol (exact, then case-insensitive match), ``None`` if unknown."""
        out: list[str | None] = []
        for s in symbols:
            s = str(s)
            if s.startswith("ENS"):
                out.append(strip_version(s))
            else:
                out.append(self._to_ens.get(s) or self._to_ens_upper.get(s.upper()))
        return out

    def to_symbol(self, ensembl_ids: Sequence[str]) -> list[str | None]:
        """Symbol of each Ensembl id (version suffix ignored), ``None`` if unknown."""
        return [
            self._to_sym.get(strip_version(str(e))) if str(e).startswith("ENS") else str(e)
            for e in ensembl_ids
        ]

    def convert(self, genes: Sequence[str], from_type: str, to_type: str) -> list[str | None]:
        """Convert ``genes`` between ``"symbol"`` and ``"ensembl"`` (identity if equal)."""
        if from_type == to_type:
            return [str(g) for g in genes]
        if to_type == "ensembl":
            return self.to_ensembl(genes)
        if to_type == "symbol":
            return self.to_symbol(genes)
        raise ValueError(f"unknown gene id type {to_type!r}; use 'symbol' or 'ensembl'")


@functools.lru_cache(maxsize=4)
def default_mapper(gene_info_path: str | None = None) -> GeneIdMapper:
    """Return the mapper of the ``gene_info_hs`` card (or of a gene info file), cached."""
    path = gene_info_path or str(resource_path(GENE_INFO_CARD))
    return GeneIdMapper.from_gene_info(path)


def detect_id_type(names: Sequence[str]) -> str:
    """``"ensembl"`` if most names look like Ensembl ids, else ``"symbol"``."""
    names = list(names)
    if not names:
        return "symbol"
    share = np.mean([str(n).startswith("ENS") for n in names])
    return "ensembl" if share > 0.5 else "symbol"


def var_gene_ids(
    adata: ad.AnnData, id_type: str, mapper: GeneIdMapper | None = None
) -> list[str | None]:
    """Return the ``id_type`` identifier of every gene of ``adata`` (``None`` if unknown).

    Uses ``var["gene_symbol"]`` / ``var["ensembl_id"]`` written by the data loader when present,
    else the ``var_names`` (converted with ``mapper`` — the ``gene_info_hs`` table by default —
    when they are of the other type).
    """
    column = {"symbol": "gene_symbol", "ensembl": "ensembl_id"}[id_type]
    if column in adata.var.columns:
        values = adata.var[column].astype(str).tolist()
        out: list[str | None] = [
            None if v in ("", "nan", "None") else (strip_version(v) if id_type == "ensembl" else v)
            for v in values
        ]
        missing = [i for i, v in enumerate(out) if v is None]
        if not missing:
            return out
    else:
        out = [None] * adata.n_vars
        missing = list(range(adata.n_vars))
    names = adata.var_names.astype(str).tolist()
    have = detect_id_type(names)
    if have == id_type:
        for i in missing:
            out[i] = strip_version(names[i]) if id_type == "ensembl" else names[i]
        return out
    mapper = mapper or default_mapper()
    converted = mapper.convert([names[i] for i in missing], have, id_type)
    for i, c in zip(missing, converted, strict=True):
        out[i] = c
    return out
