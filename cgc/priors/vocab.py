"""Gene vocabulary: symbol ↔ token id, Ensembl → symbol mapping and mapping reports."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cgc.errors import InputFileError, NoOverlapError, VocabularyError

PAD, CLS, EOC = "<pad>", "<cls>", "<eoc>"
SPECIAL_TOKENS: tuple[str, ...] = (PAD, CLS, EOC)


@dataclass
class MappingReport:
    """Outcome of mapping a list of gene identifiers onto the vocabulary.

    Attributes
    ----------
    n_input
        Number of identifiers given.
    n_mapped
        Number mapped to a vocabulary id.
    unmapped
        Identifiers that could not be mapped (in input order).
    id_type
        ``"symbol"`` or ``"ensembl"``.

    """

    n_input: int
    n_mapped: int
    unmapped: list[str] = field(default_factory=list)
    id_type: str = "symbol"

    @property
    def fraction_mapped(self) -> float:
        """Fraction of identifiers that were mapped."""
        return self.n_mapped / self.n_input if self.n_input else 0.0

    def check(self, min_fraction: float = 0.5, min_genes: int = 1, where: str = "input") -> None:
        """Raise if too few genes were mapped.

        Parameters
        ----------
        min_fraction
            Minimum fraction of mapped identifiers.
        min_genes
            Minimum absolute number of mapped identifiers.
        where
            Name of the data source, used in the error message.

        Raises
        ------
        NoOverlapError
            No identifier was mapped.
        VocabularyError
            Fewer than ``min_fraction`` / ``min_genes`` were mapped.

        """
        example = ", ".join(self.unmapped[:5])
        if self.n_mapped == 0:
            raise NoOverlapError(
                f"{where}: none of the {self.n_input} genes ({self.id_type}s, e.g. {example}) "
                "is in the gene priors vocabulary; check the gene-id type (symbol vs Ensembl, "
                "organism) or build the priors with this corpus"
            )
        if self.fraction_mapped < min_fraction or self.n_mapped < min_genes:
            raise VocabularyError(
                f"{where}: only {self.n_mapped}/{self.n_input} genes "
                f"({self.fraction_mapped:.1%}) map to the vocabulary (need >= {min_fraction:.0%}"
                f" and >= {min_genes}); unmapped e.g. {example}. Pass the right id_type, "
                "or lower the threshold (min_mapped_fraction)"
            )

    def to_dict(self) -> dict[str, object]:
        """Return a JSON-serialisable summary (at most 100 unmapped names)."""
        return {
            "n_input": self.n_input,
            "n_mapped": self.n_mapped,
            "fraction_mapped": self.fraction_mapped,
            "n_unmapped": len(self.unmapped),
            "unmapped_examples": self.unmapped[:100],
            "id_type": self.id_type,
        }


class GeneVocab:
    """Ordered gene vocabulary; the position of a symbol is its token id.

    Parameters
    ----------
    tokens
        Symbols in id order; must start with ``<pad>, <cls>, <eoc>``.
    ensembl
        Optional Ensembl gene id → symbol mapping.

    """

    def __init__(self, tokens: Sequence[str], ensembl: dict[str, str] | None = None) -> None:
        self.tokens: list[str] = list(tokens)
        if tuple(self.tokens[:3]) != SPECIAL_TOKENS:
            raise VocabularyError(
                f"vocabulary must start with {SPECIAL_TOKENS}, got {self.tokens[:3]}"
            )
        self._index = {t: i for i, t in enumerate(self.tokens)}
        if len(self._index) != len(self.tokens):
            raise VocabularyError("vocabulary contains duplicate symbols")
        self._upper: dict[str, int] = {}
        for t, i in self._index.items():
            self._upper.setdefault(t.upper(), i)
        self.ensembl: dict[str, str] = dict(ensembl or {})

    @classmethod
    def from_json(cls, path: str | Path) -> GeneVocab:
        """Read a ``{symbol: id}`` JSON file (the official CGC vocabulary format)."""
        p = Path(path)
        try:
            data = json.loads(p.read_text())
        except FileNotFoundError as exc:
            raise InputFileError(f"vocabulary file {p} not found; pass vocab_path=") from exc
        except json.JSONDecodeError as exc:
            raise InputFileError(f"vocabulary file {p} is not valid JSON: {exc}") from exc
        ids = sorted(data.values())
        if ids != list(range(len(ids))):
            raise InputFileError(f"{p}: token ids must be 0..{len(ids) - 1} without gaps")
        tokens = [""] * len(ids)
        for sym, i in data.items():
            tokens[i] = sym
        return cls(tokens)

    def __len__(self) -> int:
        return len(self.tokens)

    def __contains__(self, symbol: object) -> bool:
        return symbol in self._index

    @property
    def pad_id(self) -> int:
        """Id of ``<pad>``."""
        return 0

    @property
    def cls_id(self) -> int:
        """Id of ``<cls>`` (the cell node's token)."""
        return 1

    def id_of(self, symbol: str) -> int:
        """Return the id of ``symbol`` (exact match, then case-insensitive), or -1."""
        i = self._index.get(symbol)
        if i is None:
            i = self._upper.get(symbol.upper(), -1)
        return i

    def extend(self, symbols: Iterable[str]) -> list[str]:
        """Append unseen symbols (sorted, for determinism); return the ones added."""
        new = sorted({s for s in symbols if s and self.id_of(s) < 0})
        for s in new:
            self._index[s] = len(self.tokens)
            self._upper.setdefault(s.upper(), len(self.tokens))
            self.tokens.append(s)
        return new

    def map(
        self, names: Sequence[str], id_type: str = "symbol"
    ) -> tuple[np.ndarray, MappingReport]:
        """Map gene identifiers to token ids.

        Parameters
        ----------
        names
            Gene symbols or Ensembl gene ids (a version suffix ``.N`` is ignored).
        id_type
            ``"symbol"`` or ``"ensembl"``.

        Returns
        -------
        ids : numpy.ndarray
            ``int64`` ids, ``-1`` for unmapped genes. Special tokens never match.
        report : MappingReport
            Counts and the list of unmapped identifiers.

        """
        if id_type not in ("symbol", "ensembl"):
            raise VocabularyError(f"id_type={id_type!r}; use 'symbol' or 'ensembl'")
        ids = np.full(len(names), -1, dtype=np.int64)
        unmapped: list[str] = []
        for k, raw in enumerate(names):
            name = str(raw)
            if id_type == "ensembl":
                sym = self.ensembl.get(name.split(".")[0])
                i = self.id_of(sym) if sym else -1
            else:
                i = self.id_of(name) if name not in SPECIAL_TOKENS else -1
            if i < len(SPECIAL_TOKENS):
                unmapped.append(name)
            else:
                ids[k] = i
        report = MappingReport(len(names), int((ids >= 0).sum()), unmapped, id_type)
        return ids, report
