"""Pre-processed corpus: built once from ``.h5ad`` files or SOMA experiments, read from memory-mapped shards.

Layout of a corpus directory::

    corpus.json            manifest (cells per shard, sources, priors hash, settings)
    train-00000/           one shard: indptr.npy (int64), genes.npy (int32), values.npy
    ...                    (float32 log-normalised expression of non-zero genes),
    val-00000/             source.npy (int32: which input each cell came from)
    source-00000/          per input: ids.npy (mapped vocabulary ids), mean.npy, std.npy
                           (log-normalised, zeros included) and panel.npy (the ids of its
                           most variable genes, most variable first)

Each cell is a CSR row of vocabulary ids and values; shards are opened with
``numpy.load(mmap_mode="r")`` so reading a cell costs two slices and the corpus is never
held in memory. (``benchmarks/perf/corpus_io.py`` compares this with LMDB.)
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import anndata as ad
import numpy as np
import scipy.sparse as sp

from cgc.cells import GeneStats
from cgc.errors import CorpusError, PriorsMismatchError
from cgc.preprocess import highly_variable, looks_like_counts, normalize_log1p
from cgc.priors.bundle import GenePriors
from cgc.train.sources import SomaInput, Source, open_source

MANIFEST = "corpus.json"
CORPUS_VERSION = 2


@dataclass
class _ShardWriter:
    root: Path
    split: str
    shard_size: int

    def __post_init__(self) -> None:
        self.shards: list[dict[str, Any]] = []
        self._reset()

    def _reset(self) -> None:
        self.genes: list[np.ndarray] = []
        self.values: list[np.ndarray] = []
        self.source: list[int] = []

    def add(self, genes: np.ndarray, values: np.ndarray, source: int = 0) -> None:
        self.genes.append(genes.astype(np.int32))
        self.values.append(values.astype(np.float32))
        self.source.append(int(source))
        if len(self.genes) >= self.shard_size:
            self.flush()

    def flush(self) -> None:
        if not self.genes:
            return
        name = f"{self.split}-{len(self.shards):05d}"
        d = self.root / name
        d.mkdir(parents=True)
        lens = np.array([len(g) for g in self.genes], dtype=np.int64)
        np.save(d / "indptr.npy", np.concatenate([[0], np.cumsum(lens)]))
        np.save(d / "genes.npy", np.concatenate(self.genes))
        np.save(d / "values.npy", np.concatenate(self.values))
        np.save(d / "source.npy", np.asarray(self.source, dtype=np.int32))
        self.shards.append({"name": name, "split": self.split, "n_cells": len(lens)})
        self._reset()


MapFn = Callable[..., Iterable[Any]]
"""A ``map``-like callable: ``map_fn(fn, items)`` yields ``fn(item)`` in the order of ``items``."""


def _windowed(map_fn: MapFn | None, fn: Callable[[Any], Any], items: Iterable[Any],
              window: int) -> Iterator[Any]:
    """``map_fn(fn, items)`` in order, submitting at most ``window`` items at a time.

    Bounds what is in flight (and held in memory) to ``window`` chunk results whatever the
    executor; the built-in :func:`map` is lazy already.
    """
    if map_fn is None:
        yield from map(fn, items)
        return
    batch: list[Any] = []
    for item in items:
        batch.append(item)
        if len(batch) >= window:
            yield from map_fn(fn, batch)
            batch = []
    if batch:
        yield from map_fn(fn, batch)


def _chunk_moments(ref: Any, mode: str, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Column sums and sums of squares of a normalised chunk (pass 1, runs on a worker)."""
    x, _ = _normalise(ref.read(), mode)
    x = x[:, cols]
    return np.asarray(x.sum(0)).ravel(), np.asarray(x.multiply(x).sum(0)).ravel()


def _chunk_rows(item: tuple[Any, np.ndarray], mode: str, cols: np.ndarray, col_ids: np.ndarray,
                min_genes: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int]:
    """The cells of a chunk that pass QC, as CSR of vocabulary ids (pass 2, runs on a worker).

    ``item`` is the chunk reference and its cells' validation flags. Returns ``(indptr,
    genes, values, is_val, n_failed_qc)`` of the kept cells, in order.
    """
    ref, is_val = item
    x, detected = _normalise(ref.read(), mode)
    x = x[:, cols].tocsr()
    x.eliminate_zeros()
    keep = (detected >= min_genes) & (np.diff(x.indptr) > 0)
    x = x[keep]
    return (x.indptr.astype(np.int64), col_ids[x.indices].astype(np.int32),
            x.data.astype(np.float32), is_val[keep], int((~keep).sum()))


def _chunks(src: Source, chunk_size: int) -> list[Any]:
    return [src.chunk(start, chunk_size) for start in range(0, src.n_obs, chunk_size)]


def build_corpus(
    inputs: Sequence[ad.AnnData | str | Path | SomaInput | Source],
    out: str | Path,
    priors: GenePriors,
    shard_size: int = 100_000,
    seed: int = 0,
    val_fraction: float = 0.01,
    id_type: str = "symbol",
    normalize: str = "auto",
    min_genes: int = 200,
    min_mapped_fraction: float = 0.5,
    chunk_size: int = 4096,
    save_priors: bool = True,
    n_hvg: int | None = None,
    panel_size: int = 1200,
    map_fn: MapFn | None = None,
    window: int = 8,
) -> Path:
    """Pre-process ``.h5ad`` files or SOMA experiments into a sharded corpus directory.

    Per cell: QC (at least ``min_genes`` detected genes), normalisation and ``log1p``,
    mapping to the priors vocabulary (unmapped genes dropped and reported), then the
    non-zero genes are written. Cells go to the validation split with probability
    ``val_fraction`` (seeded). Inputs are read in chunks of ``chunk_size`` cells
    (``backed="r"``, or a SOMA read per chunk); with ``map_fn`` the chunks are read and
    processed in parallel (at most ``window`` at a time) while this process writes the
    shards in input order, so the corpus is the same as a serial build and memory is
    bounded by the chunks in flight and one shard, not by the corpus.

    Parameters
    ----------
    inputs
        ``.h5ad`` paths, AnnData objects (cells × genes) or :class:`SomaInput` experiments.
        Every input is opened (and a SOMA filter evaluated) before anything is written.
    out
        Output directory (must not exist or be empty).
    priors
        Gene priors bundle defining the vocabulary; saved to ``out/priors`` when
        ``save_priors``.
    shard_size
        Cells per shard.
    seed
        Seed of the train/validation split.
    val_fraction
        Fraction of cells held out (SPEC: 1%).
    id_type
        ``"symbol"`` or ``"ensembl"`` for ``var_names``.
    normalize
        ``"auto"`` (total-count + ``log1p`` if ``X`` holds counts, else as is),
        ``"total"`` (always), ``"log1p"`` (``log1p`` only, e.g. FPKM), ``"none"``.
    min_genes
        QC threshold on detected genes per cell.
    min_mapped_fraction
        Fail if fewer genes of an input map to the vocabulary.
    chunk_size
        Cells read at once.
    save_priors
        Copy the priors bundle into the corpus directory.
    n_hvg
        Keep only the ``n_hvg`` most variable mapped genes of each input (SPEC: 10,000
        per experiment); ``None`` keeps every gene.
    panel_size
        Length of each input's gene panel (its most variable mapped genes), read by
        ``input_genes="panel"`` models.
    map_fn
        A ``map``-like callable (``map_fn(fn, items)`` yields results in order), e.g.
        ``concurrent.futures.ProcessPoolExecutor().map`` or
        :func:`cgc.train.parallel.dask_map`; ``None`` processes chunks here.
    window
        Chunks submitted to ``map_fn`` at once.

    Returns
    -------
    pathlib.Path
        The corpus directory.

    """
    root = Path(out)
    if root.exists() and any(root.iterdir()):
        raise CorpusError(f"corpus output {root} exists and is not empty; choose a new --out")
    sources: list[Source] = []
    try:
        for src in inputs:  # every input opened (SOMA filters evaluated) before any write
            sources.append(open_source(src))
        return _build(sources, root, priors, shard_size, seed, val_fraction, id_type, normalize,
                      min_genes, min_mapped_fraction, chunk_size, save_priors, n_hvg, panel_size,
                      map_fn, window)
    finally:
        for opened in sources:
            opened.close()


def _build(sources: list[Source], root: Path, priors: GenePriors, shard_size: int, seed: int,
           val_fraction: float, id_type: str, normalize: str, min_genes: int,
           min_mapped_fraction: float, chunk_size: int, save_priors: bool, n_hvg: int | None,
           panel_size: int, map_fn: MapFn | None, window: int) -> Path:
    tmp = root.with_name(root.name + ".building")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    writers = {s: _ShardWriter(tmp, s, shard_size) for s in ("train", "val")}
    manifest_sources = []
    for k, src in enumerate(sources):
        ids, report = priors.map_genes(src.var_names, id_type)
        report.check(min_mapped_fraction, where=src.name)
        cols = np.flatnonzero(ids >= 0)
        # Keep the first column of each vocabulary id.
        _, first = np.unique(ids[cols], return_index=True)
        cols = np.sort(cols[first])
        mode = normalize
        if mode == "auto":
            mode = "total" if looks_like_counts(src.head(1000)) else "none"
        chunks = _chunks(src, chunk_size)
        use = map_fn if src.remote else None
        s1, s2 = np.zeros(len(cols)), np.zeros(len(cols))
        for c1, c2 in _windowed(use, partial(_chunk_moments, mode=mode, cols=cols), chunks, window):
            s1 += c1
            s2 += c2
        _write_source_stats(tmp, k, ids[cols], s1, s2, src.n_obs, panel_size)
        if n_hvg is not None and len(cols) > n_hvg:
            cols = cols[highly_variable(s1, s2, src.n_obs, n_hvg)]
        col_ids = ids[cols]
        # the split is drawn here, in chunk order, so it does not depend on the executor
        splits = [rng.random(min(chunk_size, src.n_obs - i * chunk_size)) < val_fraction
                  for i in range(len(chunks))]
        n_kept = n_qc = 0
        rows = partial(_chunk_rows, mode=mode, cols=cols, col_ids=col_ids, min_genes=min_genes)
        items = zip(chunks, splits, strict=True)
        for indptr, genes, values, is_val, failed in _windowed(use, rows, items, window):
            n_qc += failed
            for r in range(len(indptr) - 1):
                lo, hi = indptr[r], indptr[r + 1]
                writers["val" if is_val[r] else "train"].add(genes[lo:hi], values[lo:hi], k)
            n_kept += len(indptr) - 1
        manifest_sources.append({"source": src.name, "n_cells": int(src.n_obs), "n_kept": n_kept,
                                 "n_failed_qc": n_qc, "normalize": mode,
                                 "mapping": report.to_dict()})
    for w in writers.values():
        w.flush()
    shards = writers["train"].shards + writers["val"].shards
    if not writers["train"].shards:
        shutil.rmtree(tmp)
        raise CorpusError(
            f"no cell passed QC (min_genes={min_genes}) with mapped genes; lower min_genes "
            "or check the inputs"
        )
    manifest = {
        "version": CORPUS_VERSION,
        "priors_hash": priors.content_hash,
        "seed": seed,
        "val_fraction": val_fraction,
        "min_genes": min_genes,
        "id_type": id_type,
        "shards": shards,
        "sources": manifest_sources,
        "n_train": sum(s["n_cells"] for s in writers["train"].shards),
        "n_val": sum(s["n_cells"] for s in writers["val"].shards),
    }
    if save_priors:
        priors.save(tmp / "priors")
    (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2))
    if root.exists():
        root.rmdir()
    os.replace(tmp, root)
    return root


def _write_source_stats(root: Path, k: int, ids: np.ndarray, s1: np.ndarray, s2: np.ndarray,
                        n: int, panel_size: int) -> None:
    """Write input ``k``'s gene ids, per-gene mean/std and variance-ranked panel."""
    d = root / f"source-{k:05d}"
    d.mkdir(parents=True)
    mean = s1 / max(n, 1)
    var = np.maximum(s2 / max(n, 1) - mean**2, 0.0)
    order = np.argsort(-var, kind="stable")[:panel_size]
    np.save(d / "ids.npy", ids.astype(np.int64))
    np.save(d / "mean.npy", mean.astype(np.float32))
    np.save(d / "std.npy", np.sqrt(var).astype(np.float32))
    np.save(d / "panel.npy", ids[order].astype(np.int64))


def _normalise(x: sp.csr_matrix, mode: str) -> tuple[sp.csr_matrix, np.ndarray]:
    """Normalise raw chunk values; return them with the detected-gene count of each cell."""
    detected = np.diff(x.indptr)
    if mode == "total":
        x = normalize_log1p(x)
    elif mode == "log1p":
        x = x.copy()
        np.log1p(x.data, out=x.data)
    return x, detected


class CorpusReader:
    """Random access to the cells of one split of a corpus directory.

    Parameters
    ----------
    path
        Corpus directory written by :func:`build_corpus`.
    split
        ``"train"`` or ``"val"``.
    rank, world_size
        Distributed partition: with at least ``world_size`` shards, rank ``r`` opens
        only shards ``r, r + world_size, ...``; otherwise it takes every
        ``world_size``-th cell.

    """

    def __init__(self, path: str | Path, split: str = "train", rank: int = 0,
                 world_size: int = 1) -> None:
        self.root = Path(path)
        self.manifest = read_manifest(self.root)
        shards = [s for s in self.manifest["shards"] if s["split"] == split]
        if len(shards) >= world_size:
            shards = shards[rank::world_size]
            self._stride, self._offset = 1, 0
        else:
            self._stride, self._offset = world_size, rank
        self._indptr, self._genes, self._values, self._source = [], [], [], []
        counts = []
        for s in shards:
            d = self.root / s["name"]
            try:
                ip = np.load(d / "indptr.npy", mmap_mode="r")
                g = np.load(d / "genes.npy", mmap_mode="r")
                v = np.load(d / "values.npy", mmap_mode="r")
                src = np.load(d / "source.npy", mmap_mode="r")
            except (OSError, ValueError) as exc:
                raise CorpusError(f"corpus shard {d} is missing or truncated ({exc}); "
                                  "rebuild the corpus") from exc
            if (len(ip) != s["n_cells"] + 1 or len(g) != ip[-1] or len(v) != ip[-1]
                    or len(src) != s["n_cells"]):
                raise CorpusError(f"corpus shard {d} does not match {MANIFEST}; rebuild it")
            self._indptr.append(ip)
            self._genes.append(g)
            self._values.append(v)
            self._source.append(src)
            counts.append(s["n_cells"])
        self._cum = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        total = int(self._cum[-1])
        self._n = len(range(self._offset, total, self._stride))
        self._stats: dict[int, GeneStats] = {}
        self._panels: dict[int, np.ndarray] = {}

    @property
    def priors_hash(self) -> str:
        """Content hash of the priors bundle the corpus was built with."""
        return str(self.manifest["priors_hash"])

    def __len__(self) -> int:
        return self._n

    def _locate(self, i: int) -> tuple[int, int]:
        if not 0 <= i < self._n:
            raise IndexError(i)
        j = self._offset + i * self._stride
        s = int(np.searchsorted(self._cum, j, side="right") - 1)
        return s, j - int(self._cum[s])

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Return ``(gene ids, log-normalised values)`` of cell ``i``."""
        s, r = self._locate(i)
        lo, hi = int(self._indptr[s][r]), int(self._indptr[s][r + 1])
        return (np.asarray(self._genes[s][lo:hi], dtype=np.int64),
                np.asarray(self._values[s][lo:hi], dtype=np.float32))

    def source_of(self, i: int) -> int:
        """Index of the input data set cell ``i`` came from."""
        s, r = self._locate(i)
        return int(self._source[s][r])

    def source_stats(self, k: int, n_vocab: int) -> GeneStats:
        """Per-gene statistics of input ``k`` (cached)."""
        if k not in self._stats:
            d = self.root / f"source-{k:05d}"
            ids = np.load(d / "ids.npy")
            mean, std = np.zeros(n_vocab, np.float32), np.ones(n_vocab, np.float32)
            mean[ids], std[ids] = np.load(d / "mean.npy"), np.load(d / "std.npy")
            self._stats[k] = GeneStats(mean, std)
        return self._stats[k]

    def source_panel(self, k: int) -> np.ndarray:
        """Vocabulary ids of input ``k``'s panel, most variable first (cached)."""
        if k not in self._panels:
            self._panels[k] = np.load(self.root / f"source-{k:05d}" / "panel.npy")
        return self._panels[k]


def read_manifest(path: str | Path) -> dict[str, Any]:
    """Read and check ``corpus.json`` of a corpus directory."""
    p = Path(path) / MANIFEST
    try:
        manifest = json.loads(p.read_text())
    except FileNotFoundError as exc:
        raise CorpusError(
            f"{p} not found: {path} is not a built corpus; run `cgcbench corpus build`"
        ) from exc
    except json.JSONDecodeError as exc:
        raise CorpusError(f"{p} is corrupted ({exc}); rebuild the corpus") from exc
    if manifest.get("version") != CORPUS_VERSION:
        raise CorpusError(f"{p}: corpus version {manifest.get('version')} is not the current "
                          f"{CORPUS_VERSION} (per-input gene statistics were added); rebuild it "
                          "with `cgcbench corpus build`")
    return manifest


def check_corpus_priors(path: str | Path, priors: GenePriors) -> None:
    """Raise :class:`PriorsMismatchError` if the corpus was built with other priors."""
    h = read_manifest(path)["priors_hash"]
    if h != priors.content_hash:
        raise PriorsMismatchError(
            f"corpus {path} was built with priors {h[:12]} but the model uses "
            f"{priors.content_hash[:12]}; rebuild the corpus with these priors "
            "(`cgcbench corpus build --priors <bundle or checkpoint>/priors`)"
        )


def is_corpus_dir(path: str | Path) -> bool:
    """Return ``True`` if ``path`` is a directory with a corpus manifest."""
    return (Path(path) / MANIFEST).is_file()
