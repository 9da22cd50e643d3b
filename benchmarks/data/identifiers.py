"""Gene identifiers of a data set: their type, the organism they name, and a symbol column.

Rules (each applied to the ``var_names``, or to a ``var`` column):

* **Ensembl ids** match ``ENS<species>G<11 digits>`` with an optional ``.version``; the species
  code names the organism: none (``ENSG``) → human, ``MUS`` (``ENSMUSG``) → mouse, any other
  → ``other``. ``FBgn…`` ids are FlyBase (drosophila).
* **Probe ids** (microarrays): ``…_at`` / ``…_st`` (Affymetrix), ``ILMN_…`` (Illumina),
  ``A_23_P…`` (Agilent). They name no gene until mapped with the platform's annotation.
* **Anonymous** names: a number, optionally after ``gene``/``feature``/``var``/``g``
  (``gene0``, ``17``). No vocabulary can map them.
* **Symbols**: everything else that contains a letter. Human (HGNC) symbols are upper-case
  apart from ``orf`` (``CD3E``, ``C1orf112``, ``MT-CO1``); mouse (MGI) symbols have lower-case
  letters (``Cd3e``, ``Gm1992``, ``mt-Co1``).

The organism is the one named by more than 60 % of the identifiers that name one; otherwise
it is ``unknown`` (pass ``--organism``).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

from benchmarks.errors import InputError

ORGANISMS = ("human", "mouse", "drosophila")
"""Organisms a user may name with ``--organism``."""

SYMBOL_COLUMNS = (
    "gene_symbols",
    "gene_symbol",
    "gene_short_name",
    "gene_name",
    "gene_names",
    "feature_name",
    "symbol",
    "Symbol",
    "SYMBOL",
)
"""``var`` columns that commonly hold gene symbols (scanpy's ``gene_symbols`` convention)."""

_ENSEMBL = re.compile(r"^ENS([A-Z]*)G\d{11}(\.\d+)?$")
_FLYBASE = re.compile(r"^FBgn\d+$")
_PROBE = re.compile(r"(_[a-z]_at|_at|_st)$|^ILMN_\d+$|^A_\d+_P\d+$")
_ANONYMOUS = re.compile(r"^(gene|feature|var|g)?[_-]?\d+$", re.IGNORECASE)
_ORF = re.compile(r"orf", re.IGNORECASE)
ORGANISM_SHARE = 0.6


def validate_organism(value: str, flag: str = "--organism") -> str:
    """Return ``value`` lower-cased if it names a known organism.

    Raises
    ------
    InputError
        Otherwise (the message lists the valid values).

    """
    key = value.strip().lower()
    if key not in ORGANISMS:
        raise InputError(f"{flag} {value!r} is not a known organism; use one of {', '.join(ORGANISMS)}")
    return key


def id_kind(name: str) -> tuple[str, str | None]:
    """Return ``(id type, organism or None)`` of one identifier (see the module rules)."""
    m = _ENSEMBL.match(name)
    if m:
        species = m.group(1)
        return "ensembl", {"": "human", "MUS": "mouse"}.get(species, "other")
    if _FLYBASE.match(name):
        return "flybase", "drosophila"
    if _PROBE.search(name):
        return "probe", None
    if _ANONYMOUS.match(name) or not any(c.isalpha() for c in name):
        return "anonymous", None
    letters = _ORF.sub("", name)
    if any(c.islower() for c in letters):
        return "symbol", "mouse"
    return "symbol", "human"


@dataclass(frozen=True)
class IdReport:
    """What a list of gene identifiers is."""

    id_type: str
    """``ensembl``, ``symbol``, ``flybase``, ``probe``, ``anonymous`` or ``mixed``."""
    organism: str
    """``human``, ``mouse``, ``drosophila``, ``other`` or ``unknown``."""
    rule: str
    """Why, in words (recorded with the data set)."""
    examples: tuple[str, ...] = ()


def classify_ids(names: Sequence[str]) -> IdReport:
    """Classify ``names`` by the rules of the module docstring."""
    names = [str(n) for n in names]
    examples = tuple(names[:3])
    if not names:
        return IdReport("symbol", "unknown", "no genes", examples)
    kinds = [id_kind(n) for n in names]
    types = Counter(t for t, _ in kinds)
    id_type, n_type = types.most_common(1)[0]
    if n_type / len(names) <= 0.5:
        id_type = "mixed"
    orgs = Counter(o for _, o in kinds if o is not None)
    n_named = sum(orgs.values())
    organism, rule_org = "unknown", "no identifier names an organism"
    if n_named:
        top, n_top = orgs.most_common(1)[0]
        share = n_top / n_named
        if share > ORGANISM_SHARE:
            organism = top
            style = {
                ("ensembl", "human"): "ENSG ids",
                ("ensembl", "mouse"): "ENSMUSG ids",
                ("symbol", "human"): "upper-case (HGNC-style) symbols",
                ("symbol", "mouse"): "mixed-case (MGI-style) symbols",
                ("flybase", "drosophila"): "FlyBase ids",
            }.get((id_type, top), f"{top} identifiers")
            rule_org = f"{share:.0%} of the identifiers that name an organism are {style}"
        else:
            rule_org = f"no organism reaches {ORGANISM_SHARE:.0%} of the identifiers ({dict(orgs)})"
    rule = f"{n_type / len(names):.0%} {id_type} ids; {rule_org}"
    return IdReport(id_type, organism, rule, examples)


def find_symbol_column(var: pd.DataFrame) -> str | None:
    """A ``var`` column of :data:`SYMBOL_COLUMNS` that mostly holds gene symbols, if any."""
    for col in SYMBOL_COLUMNS:
        if col in var.columns:
            values = var[col].astype(str).tolist()
            if classify_ids(values).id_type == "symbol":
                return col
    return None


def looks_transposed(obs_names: Sequence[str], var_names: Sequence[str]) -> bool:
    """Whether the observations look like genes and the variables do not (a transposed matrix)."""
    obs = classify_ids(list(obs_names)[:2000])
    var = classify_ids(list(var_names)[:2000])
    gene_like = ("ensembl", "probe", "flybase")
    return obs.id_type in gene_like and var.id_type not in gene_like
