"""Zero-shot gene regulatory network inference and gene programs (SPEC §5.2).

Network mode (``grn`` cards: the 12 BEELINE ground truths, SERGIO's true GRN)
------------------------------------------------------------------------------
* **Candidates** — every ordered pair (TF, gene) with the TF in the network's TF list, the
  gene in its gene list, and TF ≠ gene. True edges are the network's directed edges among the
  candidates. ``density`` = true edges / candidates is the precision of a random ranking.
* **Score** — cosine similarity of the two genes' embeddings (eq. 12). A pair with a gene the
  model does not embed scores below every real score (−2), so missing genes cost recall instead
  of being dropped; ``coverage`` reports the embedded share of the network's genes.
* **EPR** (early precision ratio, BEELINE, Pratapa et al. 2020) — precision of the top-K
  pairs, K = number of true edges, divided by ``density``. Ties are broken by a seeded random
  order.
* **AUPRC ratio** — ``sklearn.metrics.average_precision_score`` divided by ``density``.
  Random scores give ≈ 1 on both; scores equal to the truth give 1/density.
* Where the task has an expression matrix (SERGIO), adapters get it through ``fit_genes`` —
  used by the co-expression control only; zero-shot models ignore it.

Gene-program mode (labelled ``scrna`` cards, e.g. ``pbmc68k_reduced``)
---------------------------------------------------------------------
* Genes of the data set are embedded; a cosine k-nearest-neighbour graph of the embeddings
  (``scanpy.pp.neighbors``, k = ``program_neighbors``) is clustered with Leiden
  (``program_resolution``; SPEC uses 40 on a ~10k-gene graph, our default 1.0 suits the few
  hundred genes of the local sets). Programs with ≥ ``min_program_size`` genes are kept.
* **program_coherence** — mean over programs of the mean pairwise Pearson correlation of the
  program's genes across cells (log-normalised expression), minus the same for random gene
  sets of the same sizes (seeded): 0 for programs no better than chance.
* Artifact: heat-map of each program's mean expression per cell type (z-scored per program).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, precision_recall_curve

from benchmarks.data.fetch import resolve
from benchmarks.errors import InputError
from benchmarks.genes import embed_gene_list
from benchmarks.interface import Artifact, ModelAdapter, Suite, SuiteResult, TaskData, TaskKind
from benchmarks.plots import heatmap_plot, plots_enabled, precision_recall_plot

BEELINE = tuple(
    f"beeline_{net}_{cell}_tfs{n}"
    for net in ("string", "nonspecific", "specific")
    for cell in ("hesc", "hhep")
    for n in (500, 1000)
)
MISSING_SCORE = -2.0


def read_beeline(files: dict[str, Path]) -> tuple[list[str], list[str], set[tuple[str, str]]]:
    """TFs, genes and directed edges of a GENELink-processed BEELINE network."""

    def pick(suffix: str) -> Path:
        hits = [p for name, p in files.items() if name.endswith(suffix)]
        if len(hits) != 1:
            raise InputError(f"BEELINE card needs exactly one *{suffix} file, found {sorted(files)}")
        return hits[0]

    edges_df = pd.read_csv(pick("BL--network.csv"))
    tfs = pd.read_csv(pick("TF.csv"))["TF"].astype(str).tolist()
    genes = pd.read_csv(pick("Target.csv"))["Gene"].astype(str).tolist()
    edges = set(zip(edges_df["Gene1"].astype(str), edges_df["Gene2"].astype(str), strict=True))
    return sorted(set(tfs)), sorted(set(genes)), edges


def candidate_pairs(tfs: list[str], genes: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Index arrays (tf index into ``tfs``, gene index into ``genes``) of all TF→gene pairs, TF ≠ gene."""
    t, g = np.meshgrid(np.arange(len(tfs)), np.arange(len(genes)), indexing="ij")
    t, g = t.ravel(), g.ravel()
    keep = np.array(tfs, dtype=object)[t] != np.array(genes, dtype=object)[g]
    return t[keep], g[keep]


def edge_metrics(scores: np.ndarray, truth: np.ndarray, seed: int) -> dict[str, float]:
    """EPR and AUPRC ratio of edge ``scores`` against binary ``truth`` (see module docstring)."""
    truth = truth.astype(bool)
    n_true = int(truth.sum())
    if n_true == 0:
        raise ValueError("no true edges among the candidate pairs")
    density = n_true / truth.size
    rng = np.random.default_rng(seed)
    order = rng.permutation(truth.size)
    top = order[np.argsort(-scores[order], kind="stable")][:n_true]
    precision_at_k = truth[top].mean()
    auprc = average_precision_score(truth, scores)
    return {
        "epr": float(precision_at_k / density),
        "auprc_ratio": float(auprc / density),
        "auprc": float(auprc),
        "precision_at_k": float(precision_at_k),
        "density": float(density),
        "n_candidates": float(truth.size),
        "n_true_edges": float(n_true),
    }


def cosine_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine similarity of each row of ``a`` with the matching row of ``b``."""
    na = np.linalg.norm(a, axis=1)
    nb = np.linalg.norm(b, axis=1)
    return (a * b).sum(axis=1) / np.clip(na * nb, 1e-12, None)


def network_task(
    dataset: dict[str, Any],
    tfs: list[str],
    genes: list[str],
    edges: set[tuple[str, str]],
    expression: ad.AnnData | None = None,
) -> TaskData:
    """Task data of a ground-truth network: candidate pairs, their truth, the stated density."""
    t, g = candidate_pairs(tfs, genes)
    truth = np.array([(tfs[i], genes[j]) in edges for i, j in zip(t, g, strict=True)])
    return TaskData(
        dataset=dataset,
        payload={
            "mode": "network",
            "tfs": tfs,
            "genes": genes,
            "t": t,
            "g": g,
            "truth": truth,
            "expression": expression,
        },
        params={
            "mode": "network",
            "n_tfs": len(tfs),
            "n_genes": len(genes),
            "n_edges_listed": len(edges),
            "n_candidates": int(truth.size),
            "n_true_edges": int(truth.sum()),
            "density": float(truth.mean()),
            "candidates": "all TF→gene pairs, TF ≠ gene",
        },
    )


class GRNSuite(Suite):
    """Cosine similarity of gene embeddings as TF→gene edge scores; gene programs."""

    name = "grn"
    description = "Zero-shot GRN inference (EPR, AUPRC ratio) and gene programs (SPEC §5.2)."
    required_kinds = frozenset({TaskKind.GENE_EMBEDDING})
    headline_metrics = ("epr", "auprc_ratio", "coverage", "program_coherence")
    higher_is_better = {"epr": True, "auprc_ratio": True, "coverage": True, "program_coherence": True}
    default_datasets = (*BEELINE, "sergio_batches")
    quick_datasets = ("beeline_string_hesc_tfs500",)
    controls = ("random", "coexpression")

    def __init__(self, *, quick: bool = False, options: dict[str, Any] | None = None) -> None:
        super().__init__(quick=quick, options=options)
        self.options.setdefault("program_resolution", 1.0)
        self.options.setdefault("program_neighbors", 10)
        self.options.setdefault("min_program_size", 5)

    def prepare(self, adata: ad.AnnData | None, card: Any, seed: int) -> TaskData:
        """Network mode for ``grn`` cards, gene-program mode for labelled expression sets."""
        if card.kind == "grn":
            tfs, genes, edges = read_beeline(resolve(card))
            return network_task(card.provenance(), tfs, genes, edges)
        if adata is not None and adata.uns["cgcbench"].get("grn") is not None:
            grn = adata.uns["cgcbench"]["grn"]
            edges = set(zip(map(str, grn["regulator"]), map(str, grn["target"]), strict=True))
            return network_task(
                adata.uns["cgcbench"]["dataset"],
                sorted(set(grn["regulator"])),
                list(map(str, adata.var_names)),
                edges,
                expression=adata,
            )
        if adata is not None:
            label_key = adata.uns["cgcbench"].get("label_key")
            if not label_key:
                raise InputError(f"dataset {card.name}: gene programs need a label key; pass --label-key")
            return TaskData(
                dataset=adata.uns["cgcbench"]["dataset"],
                payload={"mode": "programs", "adata": adata, "label_key": label_key},
                params={"mode": "programs", "label_key": label_key, "n_genes": int(adata.n_vars)},
            )
        raise InputError(f"dataset {card.name} (kind {card.kind}) is neither a network nor an expression set")

    def run(self, adapter: ModelAdapter, task: TaskData, seed: int, workdir: Path) -> SuiteResult:
        """Score the network's candidate edges, or find gene programs."""
        if task.payload["mode"] == "programs":
            return self._programs(adapter, task, seed, workdir)
        p = task.payload
        if p.get("expression") is not None:
            adapter.fit_genes(p["expression"])  # type: ignore[attr-defined]
        all_genes = sorted(set(p["tfs"]) | set(p["genes"]))
        emb, covered = embed_gene_list(adapter, all_genes, "symbol")
        row = {g: i for i, g in enumerate(np.array(all_genes)[covered])}
        tf_names = np.array(p["tfs"], dtype=object)[p["t"]]
        gene_names = np.array(p["genes"], dtype=object)[p["g"]]
        scores = np.full(p["truth"].size, MISSING_SCORE)
        ok = np.array([a in row and b in row for a, b in zip(tf_names, gene_names, strict=True)])
        if ok.any():
            ia = np.array([row[a] for a in tf_names[ok]])
            ib = np.array([row[b] for b in gene_names[ok]])
            scores[ok] = cosine_rows(emb[ia], emb[ib])
        metrics = edge_metrics(scores, p["truth"], seed)
        metrics["coverage"] = float(covered.mean())
        metrics["pair_coverage"] = float(ok.mean())
        if not plots_enabled():
            return SuiteResult(metrics=metrics)
        precision, recall, _ = precision_recall_curve(p["truth"], scores)
        plot = precision_recall_plot(
            precision,
            recall,
            metrics["density"],
            workdir / "precision_recall.png",
            f"{adapter.info().label} on {task.dataset['name']}",
        )
        return SuiteResult(metrics=metrics, artifacts=[Artifact(plot, "plot", "precision-recall of edges")])

    def _programs(self, adapter: ModelAdapter, task: TaskData, seed: int, workdir: Path) -> SuiteResult:
        import scanpy as sc

        from baselines.preprocessing import log_normalized

        adata: ad.AnnData = task.payload["adata"]
        label_key = task.payload["label_key"]
        genes = list(map(str, adata.var_names))
        emb, covered = embed_gene_list(adapter, genes, "symbol")
        kept = np.array(genes)[covered]
        if len(kept) < 3 * int(self.options["min_program_size"]):
            raise RuntimeError(
                f"{adapter.info().label} embeds only {len(kept)} genes of {task.dataset['name']}"
            )
        graph = ad.AnnData(np.zeros((len(kept), 1), dtype=np.float32), obs=pd.DataFrame(index=kept))
        graph.obsm["X_emb"] = emb
        sc.pp.neighbors(
            graph,
            use_rep="X_emb",
            n_neighbors=int(self.options["program_neighbors"]),
            metric="cosine",
            random_state=seed,
        )
        sc.tl.leiden(
            graph,
            resolution=float(self.options["program_resolution"]),
            random_state=seed,
            flavor="igraph",
            n_iterations=2,
            directed=False,
        )
        programs = graph.obs["leiden"].astype(str)
        sizes = programs.value_counts()
        big = sizes[sizes >= int(self.options["min_program_size"])].index
        expr = log_normalized(adata[:, kept])
        X = np.asarray(expr.X.toarray() if hasattr(expr.X, "toarray") else expr.X, dtype=float)
        corr = np.nan_to_num(np.corrcoef(X, rowvar=False))
        rng = np.random.default_rng(seed)

        def mean_offdiag(idx: np.ndarray) -> float:
            sub = corr[np.ix_(idx, idx)]
            n = len(idx)
            return float((sub.sum() - np.trace(sub)) / (n * (n - 1)))

        within, chance = [], []
        for prog in big:
            idx = np.flatnonzero((programs == prog).to_numpy())
            within.append(mean_offdiag(idx))
            chance.append(
                np.mean([mean_offdiag(rng.choice(len(kept), len(idx), replace=False)) for _ in range(20)])
            )
        labels = adata.obs[label_key].astype(str).to_numpy()
        means = pd.DataFrame(
            {
                f"P{prog} ({sizes[prog]})": [
                    X[labels == ct][:, (programs == prog).to_numpy()].mean() for ct in sorted(set(labels))
                ]
                for prog in big
            },
            index=sorted(set(labels)),
        ).T
        z = means.sub(means.mean(axis=1), axis=0).div(means.std(axis=1).replace(0, 1), axis=0)
        drawn = [Artifact(heatmap_plot(
            z,
            workdir / "gene_programs.png",
            f"{adapter.info().label}: gene programs × cell types",
            "z-scored mean expression",
        ), "plot", "mean expression of each gene program per cell type")] if plots_enabled() else []
        table = workdir / "gene_programs.csv"
        pd.DataFrame({"gene": kept, "program": programs.to_numpy()}).to_csv(table, index=False)
        metrics = {
            "program_coherence": float(np.mean(np.array(within) - np.array(chance))) if len(big) else 0.0,
            "n_programs": float(len(big)),
            "coverage": float(covered.mean()),
        }
        return SuiteResult(
            metrics=metrics,
            artifacts=[*drawn, Artifact(table, "table", "gene → program")],
        )
