"""CGC performance figures (prints a table; not a timed test).

- graph construction throughput (cells/s on one core, 1,200 genes per cell, all edge types)
- training step time and peak memory at the small config on CPU: CGC vs use_graph=False
- the paper config's parameter count and one forward/backward at batch 2

Usage::

    python benchmarks/perf/cgc_perf.py --data ../shared/data [--steps 10]

Step times of the two variants are measured interleaved in one process (one thread), so
load drift on a shared machine cancels in the ratio. Peak memory is measured in a fresh
process per variant: the RSS high-water mark above the RSS before the steps (sampled every
2 ms), i.e. what training steps add: activations, gradients and Adam state.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import tempfile
import threading
import time
from pathlib import Path

import numpy as np


def _priors(data: Path, cache: Path):
    from cgc import GenePriors
    from cgc.priors import HashingTextEncoder, PriorSources

    bundle = cache / "priors"
    if (bundle / "priors.json").is_file():
        return GenePriors.load(bundle)
    p = GenePriors.build(corpus=[data / "scrna" / "pbmc3k_raw.h5ad"],
                         text_encoder=HashingTextEncoder(384),
                         **PriorSources.from_dir(data).as_kwargs())
    p.save(bundle)
    return p


def _cells(priors, n: int, n_genes: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    pool = np.flatnonzero(priors.arrays["text_mask"])
    return [(np.sort(rng.choice(pool, n_genes, replace=False)),
             rng.gamma(2.0, 1.0, n_genes).astype(np.float32)) for _ in range(n)]


def graph_throughput(priors, n_cells: int = 200) -> dict:
    import torch

    from cgc import CellGraphBuilder, CGCConfig
    from cgc.preprocess import prepare_cell

    torch.set_num_threads(1)
    cfg = CGCConfig.paper()
    b = CellGraphBuilder(priors, cfg)
    cells = _cells(priors, n_cells, 1200)
    t = time.perf_counter()
    edges = 0
    for i, (g, v) in enumerate(cells):
        c = prepare_cell(g, v, 1200, seed=i)
        d = b.build(c["genes"], c["input"], c["target"], c["mask"], seed=i)
        edges += d.num_edges
    dt = time.perf_counter() - t
    return {"cells_per_s": n_cells / dt, "edges_per_cell": edges / n_cells}


class PeakRSS:
    """Sample this process's RSS every 2 ms; ``peak_mb`` is the maximum above the start."""

    def __enter__(self) -> PeakRSS:
        import psutil

        self._proc = psutil.Process()
        self.base = self._proc.memory_info().rss
        self.peak = self.base
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._loop, daemon=True)
        self._t.start()
        return self

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._proc.memory_info().rss)
            time.sleep(0.002)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._t.join()
        self.peak = max(self.peak, self._proc.memory_info().rss)

    @property
    def peak_mb(self) -> float:
        return (self.peak - self.base) / 2**20


def _setup(bundle: str, use_graph: bool, n_batches: int, batch: int):
    import torch

    from cgc import CellGraphBuilder, CGCConfig, CGCModel, GenePriors
    from cgc.preprocess import prepare_cell

    torch.manual_seed(0)
    priors = GenePriors.load(bundle)
    cfg = CGCConfig.small(use_graph=use_graph)
    model = CGCModel(cfg, priors)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    b = CellGraphBuilder(priors, cfg)
    batches = []
    cells = _cells(priors, batch * n_batches, 600, seed=1)
    for k in range(n_batches):
        graphs = []
        for i, (g, v) in enumerate(cells[k * batch:(k + 1) * batch]):
            c = prepare_cell(g, v, cfg.max_genes, seed=[k, i])
            graphs.append(b.build(c["genes"], c["input"], c["target"], c["mask"], seed=i))
        batches.append(b.collate(graphs))
    return model, opt, batches


def _step(model, opt, batch) -> float:
    t = time.perf_counter()
    loss, _ = model.pretrain_loss(batch)
    loss.backward()
    opt.step()
    opt.zero_grad()
    return time.perf_counter() - t


def step_times(bundle: str, steps: int, batch: int) -> dict:
    """Median step time of CGC and no-graph, interleaved so that load drift cancels."""
    import torch

    torch.set_num_threads(1)
    runs = {ug: _setup(bundle, ug, 2, batch) for ug in (True, False)}
    times: dict[bool, list[float]] = {True: [], False: []}
    for s in range(steps + 2):
        for ug, (model, opt, batches) in runs.items():
            dt = _step(model, opt, batches[s % 2])
            if s >= 2:
                times[ug].append(dt)
    return {ug: {"step_s": float(np.median(t)), "params": runs[ug][0].num_parameters()}
            for ug, t in times.items()}


def _mem_worker(bundle: str, use_graph: bool, batch: int, q) -> None:
    import torch

    torch.set_num_threads(1)
    model, opt, batches = _setup(bundle, use_graph, 2, batch)
    with PeakRSS() as mem:  # includes gradients and Adam state (allocated at step 1)
        for b in batches * 2:
            _step(model, opt, b)
    q.put({"peak_rss_mb": mem.peak_mb})


def _paper_worker(bundle: str, q) -> None:
    import torch

    from cgc import CellGraphBuilder, CGCConfig, CGCModel, GenePriors
    from cgc.preprocess import prepare_cell

    torch.manual_seed(0)
    priors = GenePriors.load(bundle)
    cfg = CGCConfig.paper()
    model = CGCModel(cfg, priors)
    b = CellGraphBuilder(priors, cfg)
    graphs = []
    for i, (g, v) in enumerate(_cells(priors, 2, 1200, seed=2)):
        c = prepare_cell(g, v, 1200, seed=i)
        graphs.append(b.build(c["genes"], c["input"], c["target"], c["mask"], seed=i))
    batch = b.collate(graphs)
    with PeakRSS() as mem:
        t = time.perf_counter()
        loss, _ = model.pretrain_loss(batch)
        t_fwd = time.perf_counter() - t
        loss.backward()
        t_all = time.perf_counter() - t
    q.put({"params": model.num_parameters(), "fwd_s": t_fwd, "fwd_bwd_s": t_all,
           "emb_g_params": model.node_encoder.emb_g.weight.numel(),
           "peak_rss_mb": mem.peak_mb})


def _run(target, *args) -> dict:
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=target, args=(*args, q))
    p.start()
    out = q.get()
    p.join()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    here = Path(__file__).resolve().parents[2]
    ap.add_argument("--data", type=Path,
                    default=Path(os.environ.get("CGCBENCH_MIRRORS", "").split(os.pathsep)[0]
                                 or here.parent / "shared" / "data"))
    ap.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "cgc_perf")
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    if args.threads:
        os.environ["OMP_NUM_THREADS"] = str(args.threads)
    args.cache.mkdir(parents=True, exist_ok=True)
    priors = _priors(args.data, args.cache)
    bundle = str(args.cache / "priors")
    rows = []
    g = graph_throughput(priors)
    rows.append(("graph construction (1 core, 1,200 genes, all edges)",
                 f"{g['cells_per_s']:.0f} cells/s ({g['edges_per_cell']:.0f} edges/cell)"))
    st = step_times(bundle, args.steps, args.batch)
    cgc = {**st[True], **_run(_mem_worker, bundle, True, args.batch)}
    nog = {**st[False], **_run(_mem_worker, bundle, False, args.batch)}
    rows.append((f"small config step, batch {args.batch}, CGC",
                 f"{cgc['step_s'] * 1e3:.0f} ms, peak +{cgc['peak_rss_mb']:.0f} MB, "
                 f"{cgc['params'] / 1e6:.2f} M params"))
    rows.append((f"small config step, batch {args.batch}, use_graph=False",
                 f"{nog['step_s'] * 1e3:.0f} ms, peak +{nog['peak_rss_mb']:.0f} MB, "
                 f"{nog['params'] / 1e6:.2f} M params"))
    rows.append(("step time ratio CGC / no-graph", f"{cgc['step_s'] / nog['step_s']:.2f}x"))
    rows.append(("peak memory ratio CGC / no-graph",
                 f"{cgc['peak_rss_mb'] / nog['peak_rss_mb']:.2f}x"))
    pap = _run(_paper_worker, bundle)
    rows.append(("paper config parameters",
                 f"{pap['params'] / 1e6:.1f} M ({pap['emb_g_params'] / 1e6:.1f} M in emb_g, "
                 f"vocab {priors.n_genes})"))
    rows.append(("paper config fwd / fwd+bwd, batch 2 x 1,200 genes (CPU)",
                 f"{pap['fwd_s']:.2f} s / {pap['fwd_bwd_s']:.2f} s, peak +"
                 f"{pap['peak_rss_mb']:.0f} MB"))
    w = max(len(r[0]) for r in rows)
    print(f"{'measure'.ljust(w)} | value")
    print(f"{'-' * w}-|-{'-' * 40}")
    for k, v in rows:
        print(f"{k.ljust(w)} | {v}")


if __name__ == "__main__":
    main()
