"""The :class:`GenePriors` bundle: vocabulary, prior gene graph and gene text embeddings.

The prior graph over the whole vocabulary is stored as one CSR adjacency
(``indptr``, ``indices``) with per-edge attributes:

- ``flags``: bit 0 TF→target, bit 1 co-expression, bit 2 chromosome position;
- ``corr``: Pearson r of co-expression edges (0 otherwise);
- ``pos``: signed genome-order offset of position edges (0 otherwise).

A bundle is saved as a directory and identified by a sha256 ``content_hash`` over its
canonical content, which checkpoints record and verify.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd

from cgc.errors import CheckpointError, InputFileError
from cgc.priors.coexpr import coexpression_edges
from cgc.priors.positions import position_edges, read_positions
from cgc.priors.text import (
    TextEmbeddingCache,
    TextEncoder,
    default_text_encoder,
    gene_descriptions,
    read_gene_info,
)
from cgc.priors.tftg import merge_tftg, read_collectri, read_dorothea, read_trrust
from cgc.priors.vocab import SPECIAL_TOKENS, GeneVocab, MappingReport
from cgc.utils import sha256_file

FLAG_TFTG, FLAG_COEXPR, FLAG_POS = 1, 2, 4
BUNDLE_VERSION = 1
_ARRAYS = ("indptr", "indices", "flags", "corr", "pos", "text", "text_mask")


def _to_csr(n: int, src: np.ndarray, dst: np.ndarray, flags: np.ndarray, corr: np.ndarray,
            pos: np.ndarray) -> dict[str, np.ndarray]:
    """Merge duplicate (src, dst) pairs (flags OR-ed) and build a CSR adjacency."""
    if len(src):
        order = np.lexsort((dst, src))
        src, dst, flags, corr, pos = (a[order] for a in (src, dst, flags, corr, pos))
        new = np.ones(len(src), bool)
        new[1:] = (src[1:] != src[:-1]) | (dst[1:] != dst[:-1])
        starts = np.flatnonzero(new)
        flags = np.bitwise_or.reduceat(flags, starts)
        # Each prior contributes at most one entry per pair, so sums merge them.
        corr = np.add.reduceat(corr, starts)
        pos = np.add.reduceat(pos.astype(np.int16), starts).astype(np.int8)
        src, dst = src[starts], dst[starts]
    indptr = np.zeros(n + 1, dtype=np.int64)
    np.add.at(indptr, src + 1, 1)
    return {
        "indptr": np.cumsum(indptr),
        "indices": dst.astype(np.int32),
        "flags": flags.astype(np.uint8),
        "corr": corr.astype(np.float32),
        "pos": pos.astype(np.int8),
    }


class GenePriors:
    """Vocabulary, prior gene graph (CSR) and gene text embeddings of a CGC model.

    Use :meth:`build` to create a bundle from prior-knowledge files and
    :meth:`load` / :meth:`save` to store it. Attributes are read-only by convention: any
    change alters :attr:`content_hash`.

    Parameters
    ----------
    vocab
        Gene vocabulary.
    arrays
        ``indptr, indices, flags, corr, pos`` (the CSR graph), ``text`` (``V × d``
        float16) and ``text_mask`` (``V`` bool: a description was embedded).
    meta
        Provenance: input files with sha256, thresholds, text model, organism.

    """

    def __init__(self, vocab: GeneVocab, arrays: dict[str, np.ndarray], meta: dict[str, Any]):
        self.vocab = vocab
        self.arrays = arrays
        self.meta = meta
        n = len(vocab)
        if len(arrays["indptr"]) != n + 1 or arrays["text"].shape[0] != n:
            raise CheckpointError("priors bundle arrays do not match the vocabulary size")
        self._hash: str | None = None

    # ------------------------------------------------------------------ properties
    @property
    def n_genes(self) -> int:
        """Vocabulary size including special tokens."""
        return len(self.vocab)

    @property
    def text_dim(self) -> int:
        """Width of the gene text embeddings (0 when none were computed)."""
        return int(self.arrays["text"].shape[1])

    @property
    def n_edges(self) -> int:
        """Number of directed edges of the prior graph."""
        return int(len(self.arrays["indices"]))

    @property
    def content_hash(self) -> str:
        """sha256 over the canonical content (vocabulary, graph, text embeddings)."""
        if self._hash is None:
            h = hashlib.sha256()
            h.update(json.dumps(self.vocab.tokens).encode())
            h.update(json.dumps(self.vocab.ensembl, sort_keys=True).encode())
            for k in _ARRAYS:
                a = np.ascontiguousarray(self.arrays[k])
                h.update(f"{k}:{a.dtype.str}:{a.shape}".encode())
                h.update(a.tobytes())
            self._hash = h.hexdigest()
        return self._hash

    def edge_counts(self) -> dict[str, int]:
        """Count the directed edges carrying each prior."""
        f = self.arrays["flags"]
        return {
            "tftg": int((f & FLAG_TFTG).astype(bool).sum()),
            "coexpr": int((f & FLAG_COEXPR).astype(bool).sum()),
            "pos": int((f & FLAG_POS).astype(bool).sum()),
            "total": int(len(f)),
        }

    def map_genes(self, var_names: Sequence[str], id_type: str = "symbol"
                  ) -> tuple[np.ndarray, MappingReport]:
        """Map gene identifiers to vocabulary ids (``-1`` = unmapped) with a report.

        Parameters
        ----------
        var_names
            Gene symbols or Ensembl ids.
        id_type
            ``"symbol"`` or ``"ensembl"``.

        """
        return self.vocab.map(var_names, id_type)

    def symbols(self, ids: np.ndarray) -> list[str]:
        """Return the gene symbols of vocabulary ids."""
        return [self.vocab.tokens[int(i)] for i in ids]

    def __repr__(self) -> str:
        c = self.edge_counts()
        return (
            f"GenePriors(genes={self.n_genes}, edges={c['total']} (tftg={c['tftg']}, "
            f"coexpr={c['coexpr']}, pos={c['pos']}), text_dim={self.text_dim}, "
            f"hash={self.content_hash[:12]})"
        )

    # ------------------------------------------------------------------ build
    @classmethod
    def build(
        cls,
        vocab_path: str | Path,
        trrust_path: str | Path | None = None,
        positions_path: str | Path | None = None,
        gene_info_path: str | Path | None = None,
        gene2go_path: str | Path | None = None,
        go_terms_path: str | Path | None = None,
        corpus: Sequence[ad.AnnData | str | Path] = (),
        text_encoder: TextEncoder | str | None = "default",
        *,
        dorothea_path: str | Path | None = None,
        dorothea_levels: Sequence[str] = ("A", "B", "C"),
        collectri_path: str | Path | None = None,
        corpus_id_type: str = "symbol",
        extend_vocab: bool = True,
        pos_window: int = 50,
        coexpr_threshold: float = 0.6,
        coexpr_absolute: bool = False,
        coexpr_min_cells: int = 10,
        coexpr_max_genes: int | None = 10000,
        coexpr_memory_mb: float = 512.0,
        text_genes: Sequence[str] | None = None,
        text_cache_dir: str | Path | None = None,
        organism: str = "human",
    ) -> GenePriors:
        """Build a bundle from prior-knowledge files and (optionally) a corpus.

        Parameters
        ----------
        vocab_path
            ``{symbol: id}`` JSON (the official CGC vocabulary); ids are kept.
        trrust_path, dorothea_path, collectri_path
            TF→target sources.
        dorothea_levels
            DoRothEA confidence levels kept (default A–C).
        positions_path
            Gene position table (hg38/mm10, copykat layout).
        gene_info_path, gene2go_path, go_terms_path
            NCBI gene info and GO annotation used for gene descriptions and Ensembl ids.
        corpus
            AnnData objects or ``.h5ad`` paths (raw counts) used for co-expression, for
            extending the vocabulary and for choosing which genes get text embeddings.
        text_encoder
            ``"default"`` (offline MiniLM), ``None`` (no text embeddings), or any
            :class:`~cgc.priors.text.TextEncoder`.
        corpus_id_type
            ``"symbol"`` or ``"ensembl"`` for the corpus ``var_names``.
        extend_vocab
            Give corpus genes absent from the vocabulary new ids (appended, sorted).
        pos_window
            Genome-order window of position edges (SPEC: 50).
        coexpr_threshold, coexpr_absolute, coexpr_min_cells, coexpr_max_genes, coexpr_memory_mb
            Co-expression settings, see :func:`cgc.priors.coexpr.coexpression_edges`.
        text_genes
            Genes to embed; default: the corpus genes detected in at least one cell.
        text_cache_dir
            Folder caching text embeddings across builds.
        organism
            Recorded in the metadata.

        Returns
        -------
        GenePriors
            The bundle.

        """
        inputs: dict[str, dict[str, str]] = {}

        def note(key: str, p: str | Path | None) -> None:
            if p is not None:
                if not Path(p).is_file():
                    raise InputFileError(f"{key}: {p} not found")
                inputs[key] = {"path": str(p), "sha256": sha256_file(p)}

        for key, p in (("vocab", vocab_path), ("trrust", trrust_path),
                       ("dorothea", dorothea_path), ("collectri", collectri_path),
                       ("positions", positions_path), ("gene_info", gene_info_path),
                       ("gene2go", gene2go_path), ("go_terms", go_terms_path)):
            note(key, p)
        vocab = GeneVocab.from_json(vocab_path)
        n_official = len(vocab)
        pos_df = read_positions(positions_path) if positions_path is not None else None
        ensembl: dict[str, str] = {}
        if gene_info_path is not None:
            info = read_gene_info(gene_info_path)
            if "ensembl_ids" in info.columns:
                for sym, ids in info["ensembl_ids"].dropna().items():
                    for e in str(ids).replace("|", ";").split(";"):
                        if e:
                            ensembl.setdefault(e, str(sym))
        if pos_df is not None and pos_df["ensembl"] is not None:
            for e, sym in zip(pos_df["ensembl"], pos_df["symbol"], strict=True):
                if isinstance(e, str) and e.startswith("ENS"):
                    ensembl.setdefault(e, sym)
        vocab.ensembl = ensembl

        # Corpus genes: extend the vocabulary, remember which genes to embed.
        corpus = list(corpus)
        corpus_genes: list[str] = []
        for src in corpus:
            names = _var_names(src)
            if corpus_id_type == "ensembl":
                names = [ensembl.get(n.split(".")[0], "") for n in names]
            corpus_genes += [n for n in names if n and n not in SPECIAL_TOKENS]
        corpus_genes = list(dict.fromkeys(corpus_genes))
        added = vocab.extend(corpus_genes) if extend_vocab else []
        n = len(vocab)

        def ids_of(symbols: Sequence[str]) -> np.ndarray:
            return np.array([vocab.id_of(s) for s in symbols], dtype=np.int64)

        parts: list[tuple[np.ndarray, ...]] = []
        # TF -> target.
        tables = []
        if trrust_path is not None:
            tables.append(read_trrust(trrust_path))
        if dorothea_path is not None:
            tables.append(read_dorothea(dorothea_path, dorothea_levels))
        if collectri_path is not None:
            tables.append(read_collectri(collectri_path))
        tf = merge_tftg(tables)
        s, d = ids_of(list(tf["tf"])), ids_of(list(tf["target"]))
        ok = (s >= len(SPECIAL_TOKENS)) & (d >= len(SPECIAL_TOKENS))
        parts.append(_edge_part(s[ok], d[ok], FLAG_TFTG))
        # Chromosome position.
        if pos_df is not None:
            pid = ids_of(list(pos_df["symbol"]))
            keep = pid >= len(SPECIAL_TOKENS)
            sub = pd.DataFrame({"id": pid[keep], "chrom": pos_df["chrom"].to_numpy()[keep],
                                "start": pos_df["start"].to_numpy()[keep]})
            sub = sub.drop_duplicates("id")
            ps, pd_, po = position_edges(sub["id"].to_numpy(), sub["chrom"].to_numpy(),
                                         sub["start"].to_numpy().astype(np.int64), pos_window)
            parts.append(_edge_part(ps, pd_, FLAG_POS, pos=po))
        # Co-expression.
        n_coexpr_cells = n_coexpr_genes = 0
        detected: list[str] | None = None
        if corpus:
            def mapper(names: Sequence[str]) -> np.ndarray:
                return vocab.map(names, corpus_id_type)[0]

            res = coexpression_edges(corpus, mapper, coexpr_threshold, coexpr_absolute,
                                     coexpr_min_cells, coexpr_max_genes,
                                     memory_mb=coexpr_memory_mb)
            parts.append(_edge_part(res.src, res.dst, FLAG_COEXPR, corr=res.corr))
            n_coexpr_cells, n_coexpr_genes = res.n_cells, res.n_genes
            detected = [vocab.tokens[int(i)] for i in res.detected]
        cat = [np.concatenate([p[k] for p in parts]) for k in range(5)]
        arrays = _to_csr(n, *cat)

        # Text embeddings.
        text_model = None
        text = np.zeros((n, 0), dtype=np.float16)
        mask = np.zeros(n, dtype=bool)
        if text_encoder is not None and gene_info_path is not None:
            enc = default_text_encoder() if text_encoder == "default" else text_encoder
            assert not isinstance(enc, str)
            if text_genes is not None:
                wanted = list(text_genes)
            else:
                wanted = detected if detected is not None else corpus_genes
            wanted = [s for s in wanted if vocab.id_of(s) >= len(SPECIAL_TOKENS)]
            desc = gene_descriptions(wanted, gene_info_path, gene2go_path, go_terms_path)
            genes = list(desc)
            if text_cache_dir is not None:
                vecs = TextEmbeddingCache(text_cache_dir).embed(enc, [desc[g] for g in genes])
            else:
                vecs = enc.encode([desc[g] for g in genes]) if genes else np.zeros((0, enc.dim))
            text = np.zeros((n, enc.dim), dtype=np.float16)
            rows = ids_of(genes)
            if len(rows):
                text[rows] = vecs.astype(np.float16)
                mask[rows] = True
            text_model = enc.name
        arrays["text"], arrays["text_mask"] = text, mask
        meta = {
            "version": BUNDLE_VERSION,
            "organism": organism,
            "inputs": inputs,
            "n_official_tokens": n_official,
            "n_added_tokens": len(added),
            "params": {
                "dorothea_levels": list(dorothea_levels),
                "pos_window": pos_window,
                "coexpr_threshold": coexpr_threshold,
                "coexpr_absolute": coexpr_absolute,
                "coexpr_min_cells": coexpr_min_cells,
                "coexpr_max_genes": coexpr_max_genes,
                "corpus_id_type": corpus_id_type,
            },
            "coexpr": {"n_cells": n_coexpr_cells, "n_genes": n_coexpr_genes},
            "text_model": text_model,
            "n_text_genes": int(mask.sum()),
        }
        return cls(vocab, arrays, meta)

    # ------------------------------------------------------------------ io
    def save(self, path: str | Path) -> Path:
        """Write the bundle to directory ``path`` (created; replaced atomically)."""
        out = Path(path)
        tmp = out.with_name(out.name + ".tmp")
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir(parents=True)
        (tmp / "vocab.json").write_text(json.dumps(self.vocab.tokens))
        (tmp / "ensembl.json").write_text(json.dumps(self.vocab.ensembl, sort_keys=True))
        for k in _ARRAYS:
            np.save(tmp / f"{k}.npy", self.arrays[k])
        manifest = {**self.meta, "content_hash": self.content_hash}
        (tmp / "priors.json").write_text(json.dumps(manifest, indent=2))
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
        return out

    @classmethod
    def load(cls, path: str | Path, mmap: bool = False) -> GenePriors:
        """Load a bundle written by :meth:`save` and verify its content hash.

        Raises
        ------
        CheckpointError
            Missing or corrupted files, or a content hash that does not match.

        """
        p = Path(path)
        try:
            manifest = json.loads((p / "priors.json").read_text())
            tokens = json.loads((p / "vocab.json").read_text())
            ensembl = json.loads((p / "ensembl.json").read_text())
            arrays = {k: np.load(p / f"{k}.npy", mmap_mode="r" if mmap else None)
                      for k in _ARRAYS}
        except (OSError, ValueError) as exc:
            raise CheckpointError(
                f"priors bundle {p} is missing or corrupted ({exc}); rebuild it with "
                "GenePriors.build(...).save(path)"
            ) from exc
        expected = manifest.pop("content_hash", None)
        priors = cls(GeneVocab(tokens, ensembl), arrays, manifest)
        if expected != priors.content_hash:
            raise CheckpointError(
                f"priors bundle {p}: content hash {priors.content_hash[:12]} does not match "
                f"the recorded {str(expected)[:12]}; the bundle was modified or corrupted"
            )
        return priors


def _var_names(src: ad.AnnData | str | Path) -> list[str]:
    if isinstance(src, ad.AnnData):
        return [str(v) for v in src.var_names]
    p = Path(src)
    if not p.is_file():
        raise InputFileError(f"corpus file {p} not found")
    a = ad.read_h5ad(p, backed="r")
    try:
        return [str(v) for v in a.var_names]
    finally:
        a.file.close()


def _edge_part(src: np.ndarray, dst: np.ndarray, flag: int, corr: np.ndarray | None = None,
               pos: np.ndarray | None = None) -> tuple[np.ndarray, ...]:
    m = len(src)
    return (
        np.asarray(src, dtype=np.int64),
        np.asarray(dst, dtype=np.int64),
        np.full(m, flag, dtype=np.uint8),
        np.zeros(m, np.float32) if corr is None else np.asarray(corr, np.float32),
        np.zeros(m, np.int8) if pos is None else np.asarray(pos, np.int8),
    )
