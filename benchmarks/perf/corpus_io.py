"""Corpus storage: memory-mapped shards (what cgc uses) vs LMDB (what the paper used).

Builds the PBMC 3k corpus once, copies it into an LMDB (one record per cell: int32 gene
ids + float32 values), then times random single-cell reads and the on-disk size of both.

Usage::

    python benchmarks/perf/corpus_io.py --data ../shared/data [--reads 20000]
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import lmdb
import numpy as np


def _du(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def main() -> None:
    from cgc import GenePriors, build_corpus
    from cgc.priors import HashingTextEncoder, PriorSources
    from cgc.train.corpus import CorpusReader

    here = Path(__file__).resolve().parents[2]
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path,
                    default=Path(os.environ.get("CGCBENCH_MIRRORS", "").split(os.pathsep)[0]
                                 or here.parent / "shared" / "data"))
    ap.add_argument("--reads", type=int, default=20000)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="cgc_io_"))
    try:
        h5ad = args.data / "scrna" / "pbmc3k_raw.h5ad"
        priors = GenePriors.build(corpus=[h5ad], text_encoder=HashingTextEncoder(8),
                                  **PriorSources.from_dir(args.data).as_kwargs())
        t = time.perf_counter()
        cdir = build_corpus([h5ad], work / "mmap", priors, shard_size=1000, save_priors=False)
        t_build = time.perf_counter() - t
        reader = CorpusReader(cdir)
        env = lmdb.open(str(work / "lmdb"), map_size=1 << 32, subdir=True, lock=False)
        t = time.perf_counter()
        with env.begin(write=True) as txn:
            for i in range(len(reader)):
                g, v = reader[i]
                rec = np.int64(len(g)).tobytes() + g.astype(np.int32).tobytes() + v.tobytes()
                txn.put(i.to_bytes(8, "big"), rec)
        t_lmdb = time.perf_counter() - t
        rng = np.random.default_rng(0)
        idx = rng.integers(0, len(reader), args.reads)

        t = time.perf_counter()
        n = 0
        for i in idx:
            g, v = reader[int(i)]
            n += len(g)
        mm = args.reads / (time.perf_counter() - t)

        t = time.perf_counter()
        with env.begin() as txn:
            for i in idx:
                rec = txn.get(int(i).to_bytes(8, "big"))
                k = int(np.frombuffer(rec[:8], np.int64)[0])
                g = np.frombuffer(rec[8 : 8 + 4 * k], np.int32).astype(np.int64)
                v = np.frombuffer(rec[8 + 4 * k :], np.float32)
                n -= len(g)
        lm = args.reads / (time.perf_counter() - t)
        assert n == 0
        env.close()
        rows = [
            ("cells", f"{len(reader)}"),
            ("mmap shards: build from h5ad", f"{t_build:.1f} s"),
            ("mmap shards: size", f"{_du(work / 'mmap') / 2**20:.1f} MB"),
            ("mmap shards: random reads", f"{mm:,.0f} cells/s"),
            ("LMDB: write (from shards)", f"{t_lmdb:.1f} s"),
            ("LMDB: size", f"{_du(work / 'lmdb') / 2**20:.1f} MB"),
            ("LMDB: random reads", f"{lm:,.0f} cells/s"),
        ]
        w = max(len(r[0]) for r in rows)
        for k, v in rows:
            print(f"{k.ljust(w)} | {v}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
