"""Paths of the prior-knowledge files used to build a :class:`GenePriors` bundle."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cgc.errors import InputFileError

# Default file names, as distributed in the cgcbench data mirror.
_DEFAULT_NAMES = {
    "vocab_path": ("vocab.json", "vocab/cgc/vocab.json", "../vocab/cgc/vocab.json"),
    "trrust_path": ("trrust_rawdata.human.tsv", "priors/trrust_rawdata.human.tsv"),
    "positions_path": ("gene_positions_hg38.parquet", "priors/gene_positions_hg38.parquet"),
    "gene_info_path": ("gene_info_hs.tsv.gz", "priors/gene_info_hs.tsv.gz"),
    "gene2go_path": ("gene2go_hs.tsv.gz", "priors/gene2go_hs.tsv.gz"),
    "go_terms_path": ("go_terms.tsv.gz", "priors/go_terms.tsv.gz"),
}


@dataclass
class PriorSources:
    """Input files of :meth:`GenePriors.build` (all but the vocabulary optional)."""

    vocab_path: Path | None = None
    trrust_path: Path | None = None
    positions_path: Path | None = None
    gene_info_path: Path | None = None
    gene2go_path: Path | None = None
    go_terms_path: Path | None = None
    dorothea_path: Path | None = None
    collectri_path: Path | None = None

    @classmethod
    def from_dir(cls, directory: str | Path, **overrides: Path | None) -> PriorSources:
        """Find the standard human file names under ``directory``; explicit paths win.

        Looks for ``vocab.json`` (or ``vocab/cgc/vocab.json``), ``trrust_rawdata.human.tsv``,
        ``gene_positions_hg38.parquet``, ``gene_info_hs.tsv.gz``, ``gene2go_hs.tsv.gz`` and
        ``go_terms.tsv.gz`` directly in ``directory`` or in its ``priors/`` folder.
        """
        root = Path(directory)
        found: dict[str, Any] = {}
        for key, names in _DEFAULT_NAMES.items():
            for name in names:
                if (root / name).is_file():
                    found[key] = (root / name).resolve()
                    break
        found.update({k: Path(v) for k, v in overrides.items() if v is not None})
        return cls(**found)

    def as_kwargs(self) -> dict[str, Path | None]:
        """Return keyword arguments for :meth:`GenePriors.build`."""
        if self.vocab_path is None:
            raise InputFileError(
                "no gene vocabulary given: pass --vocab (the official CGC vocab.json) or a "
                "--priors-dir containing vocab.json"
            )
        return dataclasses.asdict(self)
