"""Issue-16 figures in one process, side by side: today's path vs the new one (prints a table).

Rows (CPU seconds: ``time.process_time`` in this process, ``RUSAGE_CHILDREN`` for commands;
``k`` interleaved repetitions, median and range ``[min–max]``):

- cell-graph construction, 1,200 genes/cell, paper config: per-cell ``build`` + collate
  (today) vs ``build_batch`` (batch sizes ``--graph-batches``, default 64), and with
  ``--before`` that checkout's ``build_batch`` side by side;
- small config train step, batch 8: CGC vs ``use_graph=False``, with dense Adam (today) and
  with the row-sparse gene table; peak memory of each in a fresh process;
- paper config train step at batch 2 and 4 with and without graph (step time, peak memory);
- for both configs, the floating-point work of one step (``torch.utils.flop_counter``: matrix
  products and attention, forward + backward), CGC / no-graph and the GNN's share, with the
  batch's edges per node: the ratio the step time cannot go below without fewer edges or
  narrower edge MLPs, whatever the kernels;
- cell-embedding throughput of a small CGC model: per-cell graphs + collate (today) vs
  ``embed_cells`` (batched builder), and CGC vs the Geneformer adapter at a similar size;
- ``cgcbench --help`` and ``cgcbench list suites`` CPU time against ``import torch``, before
  (``--before``, a checkout of the old code) and now, and whether torch was imported;
- the co-expression control on pbmc3k_raw: peak memory of the former dense computation vs the
  block-wise one (fresh process each).

Usage::

    python benchmarks/perf/overhead.py [--data ../shared/data] [--before /path/to/old/checkout]
        [--reps 5] [--skip paper,cli,coexpr] [--graph-batches 8,32,64,128]

Not timed assertions: numbers for the issue's table.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cgc_perf import PeakRSS, _cells, _priors  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


def _num(x: float) -> str:
    return f"{x:.0f}" if abs(x) >= 100 else f"{x:.3g}"


def _fmt(xs: list[float], unit: str = "s", scale: float = 1.0) -> str:
    a = np.asarray(xs) * scale
    return f"{_num(float(np.median(a)))} {unit} [{_num(a.min())}–{_num(a.max())}]"


def _interleaved(fns: dict[str, Callable[[], object]], reps: int) -> dict[str, list[float]]:
    """CPU seconds of each function, repetitions interleaved (one warm-up each first)."""
    for f in fns.values():
        f()
    out: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(reps):
        for k, f in fns.items():
            t = time.process_time()
            f()
            out[k].append(time.process_time() - t)
    return out


def _builder_class(before: Path | None):
    """``CellGraphBuilder`` of ``before``'s ``cgc/graph.py`` (other ``cgc`` modules: this tree's)."""
    if before is None:
        return None
    import importlib.util

    spec = importlib.util.spec_from_file_location("_cgc_graph_before", before / "cgc" / "graph.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.CellGraphBuilder


def graph_rows(priors, reps: int, before: Path | None = None, batch_sizes: tuple[int, ...] = (64,)
               ) -> list[tuple[str, str]]:
    """Cell-graph construction, 1,200 genes/cell, paper config (cells per CPU-second).

    Per-cell ``build`` + collate of 64 cells (today's single-cell path) and ``build_batch`` of
    ``max(64, batch sizes)`` cells in batches of each size, with this tree's builder and, with
    ``before``, the builder of that checkout (same cells, same seeds, interleaved).
    """
    from cgc import CellGraphBuilder, CGCConfig
    from cgc.graph import CellInput
    from cgc.preprocess import prepare_cell

    cfg = CGCConfig.paper()
    b = CellGraphBuilder(priors, cfg)
    old_cls = _builder_class(before)
    n_cells = max(64, *batch_sizes)
    cells = []
    for i, (g, v) in enumerate(_cells(priors, n_cells, 1200, seed=3)):
        c = prepare_cell(g, v, 1200, seed=i)
        cells.append(CellInput(c["genes"], c["input"], c["target"], c["mask"]))
    seeds = list(range(n_cells))

    def batched(builder, bs: int) -> Callable[[], object]:
        return lambda: [builder.build_batch(cells[s:s + bs], seeds[s:s + bs])
                        for s in range(0, n_cells, bs)]

    fns: dict[str, Callable[[], object]] = {
        "per-cell": lambda: b.collate([b.build(*c, seed=s)
                                       for c, s in zip(cells[:64], seeds[:64], strict=True)])}
    for bs in batch_sizes:
        if old_cls is not None:
            fns[f"before {bs}"] = batched(old_cls(priors, cfg), bs)
        fns[f"now {bs}"] = batched(b, bs)
    t = _interleaved(fns, reps)
    edges = b.build_batch(cells[:64], seeds[:64]).num_edges / 64
    per = {k: [(64 if k == "per-cell" else n_cells) / x for x in v] for k, v in t.items()}
    rows = [("graph construction, 1,200 genes/cell: per-cell build + collate (today)",
             _fmt(per["per-cell"], "cells/CPU-s") + f", {edges:.0f} edges/cell")]
    for bs in batch_sizes:
        if old_cls is not None:
            rows.append((f"graph construction, 1,200 genes/cell: build_batch, batch {bs} (--before)",
                         _fmt(per[f"before {bs}"], "cells/CPU-s")))
        vs = (f", {np.median(per[f'now {bs}']) / np.median(per[f'before {bs}']):.1f}x --before"
              if old_cls is not None else
              f", speed-up {np.median(per[f'now {bs}']) / np.median(per['per-cell']):.1f}x")
        rows.append((f"graph construction, 1,200 genes/cell: build_batch, batch {bs} (goal >= 5,000)",
                     _fmt(per[f"now {bs}"], "cells/CPU-s") + vs))
    return rows


def _setup(bundle: str, paper: bool, use_graph: bool, sparse: bool, batch: int, n_batches: int = 2):
    import torch

    from cgc import CellGraphBuilder, CGCConfig, CGCModel, GenePriors
    from cgc.graph import CellInput
    from cgc.preprocess import prepare_cell
    from cgc.train.optim import RowSparseAdam, use_sparse_gene_table

    torch.manual_seed(0)
    priors = GenePriors.load(bundle)
    cfg = (CGCConfig.paper if paper else CGCConfig.small)(use_graph=use_graph, dropout=0.0)
    model = CGCModel(cfg, priors)
    if sparse:
        use_sparse_gene_table(model)
        opt = RowSparseAdam(model.parameters(), lr=1e-4)
    else:
        opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    b = CellGraphBuilder(priors, cfg)
    n_genes = 1200 if paper else 600
    cells = _cells(priors, batch * n_batches, n_genes, seed=1)
    batches = []
    for k in range(n_batches):
        inputs = []
        for i, (g, v) in enumerate(cells[k * batch:(k + 1) * batch]):
            c = prepare_cell(g, v, cfg.max_genes, seed=[k, i])
            inputs.append(CellInput(c["genes"], c["input"], c["target"], c["mask"]))
        batches.append(b.build_batch(inputs, list(range(batch))))
    return model, opt, batches


def _step(model, opt, batch) -> None:
    loss, _ = model.pretrain_loss(batch)
    loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)


def _mem_worker(bundle: str, paper: bool, use_graph: bool, sparse: bool, batch: int, q) -> None:
    import torch

    torch.set_num_threads(1)
    model, opt, batches = _setup(bundle, paper, use_graph, sparse, batch)
    with PeakRSS() as mem:  # activations, gradients and optimiser state (from step 1)
        for b in batches * 2:
            _step(model, opt, b)
    q.put(mem.peak_mb)


def _spawn(target, *args):
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=target, args=(*args, q))
    p.start()
    out = q.get()
    p.join()
    return out


def _step_flops(model, batch) -> int:
    """Matrix-product and attention FLOPs of one training step (forward + backward)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as fc:
        loss, _ = model.pretrain_loss(batch)
        loss.backward()
    model.zero_grad(set_to_none=True)
    return fc.get_total_flops()


def flop_rows(runs: dict, name: str, batch: int) -> list[tuple[str, str]]:
    """FLOPs of one step, CGC vs no graph, and what the graph adds (see the module docstring)."""
    (m_g, _, b_g), (m_n, _, b_n) = runs[(True, False)], runs[(False, False)]
    g_total, n_total = _step_flops(m_g, b_g[0]), _step_flops(m_n, b_n[0])
    g0 = b_g[0]
    e_per_node = g0.edge_index.size(1) / max(g0.num_nodes, 1)
    return [(f"{name} batch {batch}: step FLOPs CGC / no-graph (matmul + attention, fwd + bwd)",
             f"{g_total / n_total:.2f}x ({g_total / 1e9:.2f} vs {n_total / 1e9:.2f} GFLOP; the "
             f"graph is {100 * (g_total - n_total) / g_total:.0f}% of CGC's; "
             f"{e_per_node:.1f} edges per node)")]


def step_rows(bundle: str, paper: bool, batch: int, reps: int, sparse_too: bool
              ) -> list[tuple[str, str]]:
    import torch

    torch.set_num_threads(1)
    variants = [(True, False), (False, False)] + ([(True, True), (False, True)] if sparse_too else [])
    runs = {v: _setup(bundle, paper, v[0], v[1], batch) for v in variants}
    counter = {v: 0 for v in variants}

    def one(v):
        def f() -> None:
            model, opt, batches = runs[v]
            _step(model, opt, batches[counter[v] % len(batches)])
            counter[v] += 1
        return f

    t = _interleaved({v: one(v) for v in variants}, reps)
    name = "paper" if paper else "small"
    rows = []
    for v in variants:
        mem = _spawn(_mem_worker, bundle, paper, v[0], v[1], batch)
        label = (f"{name} config step, batch {batch}, {'CGC' if v[0] else 'no graph'}, "
                 f"{'row-sparse emb_g' if v[1] else 'dense Adam (today)'}")
        rows.append((label, _fmt(t[v], "CPU-s") + f", peak +{mem:.0f} MB"))
    rows += flop_rows(runs, name, batch)
    for sp in ([False, True] if sparse_too else [False]):
        g, n = np.median(t[(True, sp)]), np.median(t[(False, sp)])
        rows.append((f"{name} batch {batch}: CGC / no-graph step time"
                     f" ({'row-sparse' if sp else 'dense Adam'})", f"{g / n:.2f}x"))
    return rows


def embed_rows(bundle: str, data: Path, reps: int, n_cells: int = 256) -> list[tuple[str, str]]:
    import anndata as ad
    import torch
    from torch_geometric.data import Batch

    from cgc import CGCConfig, CGCModel, GenePriors, embed_cells
    from cgc.embed import cell_graphs

    torch.set_num_threads(1)
    torch.manual_seed(0)
    priors = GenePriors.load(bundle)
    model = CGCModel(CGCConfig.small(input_genes="expressed", value_target="bin"), priors).eval()
    adata = ad.read_h5ad(data / "scrna" / "pbmc3k_raw.h5ad")[:n_cells].copy()

    @torch.no_grad()
    def old() -> None:
        graphs = cell_graphs(model, adata)
        for s in range(0, len(graphs), 64):
            model(Batch.from_data_list(graphs[s: s + 64]))

    t = _interleaved({"old": old, "new": lambda: embed_cells(model, adata, batch_size=64)}, reps)
    per = {k: [n_cells / x for x in v] for k, v in t.items()}
    return [("cell embeddings (small CGC, pbmc3k): per-cell graphs + collate (today)",
             _fmt(per["old"], "cells/CPU-s")),
            ("cell embeddings (small CGC, pbmc3k): embed_cells (batched builder)",
             _fmt(per["new"], "cells/CPU-s"))]


def geneformer_rows(bundle: str, data: Path, reps: int, n_cells: int = 256) -> list[tuple[str, str]]:
    """Cell-embedding throughput: CGC vs the Geneformer adapter at a similar size.

    The Geneformer model is a ``BertForMaskedLM`` with CGC's width, heads, FFN width and as many
    layers as CGC's GNN + Transformer layers, untrained (throughput does not depend on the
    weights), and an input size equal to CGC's ``max_genes`` (both read at most that many genes
    per cell); both embed the same pbmc3k cells, 64 per batch, one thread. The figure also lists
    the parameter counts outside the gene tables, so "similar size" can be checked.
    """
    import anndata as ad
    import torch

    from baselines.geneformer_model import GeneformerAdapter
    from cgc import CGCConfig, CGCModel, GenePriors, embed_cells

    torch.set_num_threads(1)
    torch.manual_seed(0)
    priors = GenePriors.load(bundle)
    cfg = CGCConfig.small(input_genes="expressed", value_target="bin")
    cgc = CGCModel(cfg, priors).eval()
    adata = ad.read_h5ad(data / "scrna" / "pbmc3k_raw.h5ad")[:n_cells].copy()
    gf = GeneformerAdapter(batch_size=64, model_input_size=cfg.max_genes, architecture={
        "hidden_size": cfg.d_model, "num_attention_heads": cfg.n_heads, "intermediate_size": cfg.d_ff,
        "num_hidden_layers": cfg.n_transformer_layers + cfg.n_gnn_layers})
    gf.mlm_ = gf._new_mlm().eval()

    def body(m: torch.nn.Module, tables: tuple[str, ...]) -> int:
        return sum(p.numel() for n, p in m.named_parameters() if not any(t in n for t in tables))

    n_cgc = body(cgc, ("emb_g",))
    n_gf = body(gf.mlm_.bert, ("word_embeddings",))
    t = _interleaved({"cgc": lambda: embed_cells(cgc, adata, batch_size=64),
                      "geneformer": lambda: gf.embed_cells(adata)}, reps)
    per = {k: [n_cells / x for x in v] for k, v in t.items()}
    ratio = [c / g for c, g in zip(t["geneformer"], t["cgc"], strict=True)]
    return [(f"cell embeddings, pbmc3k: CGC small ({n_cgc / 1e3:.0f}k non-table params)",
             _fmt(per["cgc"], "cells/CPU-s")),
            (f"cell embeddings, pbmc3k: Geneformer adapter ({n_gf / 1e3:.0f}k non-table params)",
             _fmt(per["geneformer"], "cells/CPU-s")),
            (f"cell embeddings: CGC throughput / Geneformer's, ≤ {cfg.max_genes} genes/cell (goal ≥ 1)",
             _fmt(ratio, "×"))]


def _child_cpu(cmd: list[str], env: dict[str, str]) -> tuple[float, set[str]]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=env.get("PWD_", None))
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    mods = {ln.rsplit("|", 1)[1].strip() for ln in proc.stderr.splitlines()
            if ln.startswith("import time:")}
    return (after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime), mods


def cli_rows(before: Path | None, reps: int) -> list[tuple[str, str]]:
    trees = {"now": ROOT} | ({"before": before} if before else {})
    cmds = {"--help": ["--help"], "list suites": ["list", "suites"]}
    rows = []
    base = {**os.environ}
    t_torch = [_child_cpu([sys.executable, "-c", "import torch"], base)[0] for _ in range(reps)]
    rows.append(("`import torch` alone", _fmt(t_torch, "CPU-s")))
    for label, args in cmds.items():
        for tree_name, tree in trees.items():
            env = {**base, "PYTHONPATH": str(tree), "PWD_": str(tree)}
            res = [_child_cpu([sys.executable, "-X", "importtime", "-m", "benchmarks.cli", *args], env)
                   for _ in range(reps)]
            torch_in = "torch" in res[0][1]
            ts = [r[0] for r in res]
            rows.append((f"`cgcbench {label}` ({tree_name})",
                         _fmt(ts, "CPU-s") + f", {np.median(ts) / np.median(t_torch):.2f}x import torch, "
                         f"torch imported: {'yes' if torch_in else 'no'}"))
    return rows


def _coexpr_worker(data: str, dense: bool, q) -> None:
    import anndata as ad

    from baselines.coexpression import CoexpressionAdapter
    from baselines.preprocessing import log_normalized

    adata = ad.read_h5ad(Path(data) / "scrna" / "pbmc3k_raw.h5ad")
    adata.uns["cgcbench"] = {"dataset": {"name": "pbmc3k_raw", "expression_kind": "counts"}}
    with PeakRSS() as mem:
        if dense:  # the former computation: dense float64 copies of cells x genes
            X = log_normalized(adata).X
            X = np.asarray(X.toarray(), dtype=np.float64)
            X = X - X.mean(axis=0)
            norm = np.linalg.norm(X, axis=0)
            ok = norm > 0
            (X[:, ok] / norm[ok]).T.astype(np.float32)
        else:
            CoexpressionAdapter(seed=0)._profiles(adata)
    q.put((mem.peak_mb, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024))


def coexpr_rows(data: Path) -> list[tuple[str, str]]:
    rows = []
    for dense in (True, False):
        peak, maxrss = _spawn(_coexpr_worker, str(data), dense)
        rows.append((f"coexpression control on pbmc3k_raw (2,700 x 32,738): "
                     f"{'dense float64 (today)' if dense else 'block-wise sparse'}",
                     f"peak +{peak:.0f} MB over the loaded data, process max RSS {maxrss:.0f} MB"))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path,
                    default=Path(os.environ.get("CGCBENCH_MIRRORS", "").split(os.pathsep)[0]
                                 or ROOT.parent / "shared" / "data"))
    ap.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "cgc_perf")
    ap.add_argument("--before", type=Path, default=None,
                    help="a checkout of the code before the change, for the CLI and graph rows")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--graph-batches", type=lambda v: tuple(int(x) for x in v.split(",")),
                    default=(64,), help="comma-separated build_batch sizes of the graph rows")
    ap.add_argument("--skip", default="",
                    help="comma-separated: graph,small,paper,embed,geneformer,cli,coexpr")
    args = ap.parse_args()
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    torch.set_num_threads(1)
    args.cache.mkdir(parents=True, exist_ok=True)
    priors = _priors(args.data, args.cache)
    bundle = str(args.cache / "priors")
    rows: list[tuple[str, str]] = []
    sections: list[tuple[str, Callable[[], list[tuple[str, str]]]]] = [
        ("graph", lambda: graph_rows(priors, args.reps, args.before, args.graph_batches)),
        ("small", lambda: step_rows(bundle, False, 8, args.reps, True)),
        ("paper", lambda: step_rows(bundle, True, 2, max(2, args.reps // 2), False)
         + step_rows(bundle, True, 4, max(2, args.reps // 2), False)),
        ("embed", lambda: embed_rows(bundle, args.data, args.reps)),
        ("geneformer", lambda: geneformer_rows(bundle, args.data, args.reps)),
        ("cli", lambda: cli_rows(args.before, args.reps)),
        ("coexpr", lambda: coexpr_rows(args.data)),
    ]
    for name, fn in sections:
        if name not in skip:
            rows += fn()
            print(f"[{name} done]", file=sys.stderr, flush=True)
    w = max(len(r[0]) for r in rows)
    print(f"{'figure'.ljust(w)} | median [range], CPU")
    print(f"{'-' * w}-|-{'-' * 50}")
    for k, v in rows:
        print(f"{k.ljust(w)} | {v}")


if __name__ == "__main__":
    main()
