"""The ground-truth gene regulatory network: a real sub-network, parameterised as SERGIO does.

Sources (``grn_source``)
------------------------
* ``sergio_human`` — the human reference network shipped with SERGIO (PyPI ``sergio-scsim``,
  ``SERGIO/GRN/ref/human.source``: regulator symbol, Entrez id, target symbol, Entrez id).
  microRNA rows (``miR``/``hsa``) are removed, as SERGIO's own ``grn_from_human`` does, and so are
  rows whose symbol is a bare Entrez id.
* ``trrust_human`` — TRRUST v2 (the ``trrust_human`` card): TF, target, mode, PMIDs. The mode
  fixes the sign of an edge (Activation → k > 0, Repression → k < 0, Unknown → random sign).

Sub-network
-----------
A connected sub-network of ``n_genes`` real gene symbols is grown from a seeded start regulator
(one with at least ``min_start_targets`` targets): each step picks a gene already in the set and
adds one of its not-yet-included neighbours (targets preferred 3:1 over regulators). The induced
sub-graph loses self-loops and is made acyclic (SERGIO's steady-state simulation needs a DAG) by
removing, for each cycle ``networkx.find_cycle`` reports, its last edge.

Parameters follow SERGIO's ``grnParam``/``parameterize_grn``: ``k`` uniform in [1, 5] for an
activation (probability 0.75 when the source gives no sign) or [-5, -1] for a repression,
Hill coefficient ``n`` = 2, decay 0.8. Master regulators (genes without regulators) get a basal
production rate per cell type drawn, as SERGIO's ``mrProfile.build_rnd``, from a low
([1, 2.5]) or high ([3.5, 5]) range with equal probability.
"""

from __future__ import annotations

import importlib.resources
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import networkx as nx
import numpy as np
import pandas as pd

from benchmarks.errors import InputError

K_ACT = (1.0, 5.0)
K_REP = (-5.0, -1.0)
HILL_N = 2.0
DECAY = 0.8
MR_LOW = (1.0, 2.5)
MR_HIGH = (3.5, 5.0)


@dataclass
class GroundTruthGRN:
    """A parameterised acyclic GRN on real gene symbols.

    Attributes
    ----------
    edges
        One row per edge: ``reg``, ``tar`` (gene symbols), ``k`` (signed strength), ``n`` (Hill
        coefficient), ``h`` (half response; filled by :func:`benchmarks.simulate.engine.fit_half_response`).
    genes
        Every gene of the network, in output order.
    mr_profile
        Basal production rate of each master regulator (rows) in each cell type (columns).
    source
        Which reference network the edges came from.

    """

    edges: pd.DataFrame
    genes: list[str]
    mr_profile: pd.DataFrame
    source: str

    @property
    def master_regulators(self) -> list[str]:
        """Genes with no regulator in the network."""
        return [g for g in self.genes if g not in set(self.edges["tar"])]

    @property
    def regulators(self) -> list[str]:
        """Genes with at least one target in the network."""
        return sorted(set(self.edges["reg"]))

    def n_descendants(self) -> pd.Series:
        """How many genes lie downstream of each gene (the reach of its knockout)."""
        g = nx.DiGraph(list(zip(self.edges["reg"], self.edges["tar"], strict=True)))
        return pd.Series({gene: len(nx.descendants(g, gene)) if gene in g else 0 for gene in self.genes})


def _sergio_reference() -> pd.DataFrame:
    ref = importlib.resources.files("SERGIO.GRN.ref") / "human.source"
    with importlib.resources.as_file(ref) as path:
        df = pd.read_csv(path, sep="\t", header=None, dtype=str, names=["reg", "reg_id", "tar", "tar_id"])
    df = df.dropna()
    mirna = df["reg"].str.contains("miR|hsa") | df["tar"].str.contains("miR|hsa")
    # a few rows carry an Entrez id where the symbol is missing: not a usable gene token
    numeric = df["reg"].str.fullmatch(r"\d+") | df["tar"].str.fullmatch(r"\d+")
    df = df.loc[~(mirna | numeric), ["reg", "tar"]].drop_duplicates()
    df["sign"] = 0
    return df.reset_index(drop=True)


def _trrust_reference() -> pd.DataFrame:
    from benchmarks.data.cards import get_card
    from benchmarks.data.fetch import resolve

    card = get_card("trrust_human")
    path: Path = resolve(card)[card.primary_file.name]
    df = pd.read_csv(path, sep="\t", header=None, dtype=str, names=["reg", "tar", "mode", "pmid"])
    df["sign"] = df["mode"].map({"Activation": 1, "Repression": -1}).fillna(0).astype(int)
    # an edge reported both as activation and repression gets no fixed sign
    df = df.groupby(["reg", "tar"], as_index=False)["sign"].agg(
        lambda s: int(s.iloc[0]) if s.nunique() == 1 else 0
    )
    return df[["reg", "tar", "sign"]]


def reference_edges(source: str) -> pd.DataFrame:
    """All edges (``reg``, ``tar``, ``sign`` ∈ {-1, 0, 1}) of a reference network."""
    if source == "sergio_human":
        return _sergio_reference()
    if source == "trrust_human":
        return _trrust_reference()
    raise InputError(f"simulation.grn_source={source!r}; use 'sergio_human' or 'trrust_human'")


def grow_subnetwork(
    edges: pd.DataFrame, n_genes: int, rng: np.random.Generator, min_start_targets: int = 10
) -> list[str]:
    """Grow a connected gene set of size ``n_genes`` from a seeded start regulator."""
    out_nb: dict[str, list[str]] = edges.groupby("reg")["tar"].apply(sorted).to_dict()
    in_nb: dict[str, list[str]] = edges.groupby("tar")["reg"].apply(sorted).to_dict()
    starts = sorted(r for r, t in out_nb.items() if len(t) >= min_start_targets)
    if not starts:
        raise InputError(f"no regulator with >= {min_start_targets} targets in the reference network")
    chosen = [str(rng.choice(starts))]
    members = set(chosen)
    stalled = 0
    while len(chosen) < n_genes:
        gene = chosen[int(rng.integers(len(chosen)))]
        pool = out_nb.get(gene, []) if rng.random() < 0.75 else in_nb.get(gene, [])
        pool = [g for g in pool if g not in members]
        if not pool:
            stalled += 1
            if stalled > 50 * n_genes:
                raise InputError(
                    f"cannot grow a connected sub-network of {n_genes} genes; lower simulation.n_genes"
                )
            continue
        new = str(pool[int(rng.integers(len(pool)))])
        chosen.append(new)
        members.add(new)
    return chosen


def acyclic_subgraph(edges: pd.DataFrame, genes: Sequence[str]) -> pd.DataFrame:
    """Induced sub-graph on ``genes`` without self-loops and cycles (deterministic)."""
    keep = set(genes)
    sub = edges[edges["reg"].isin(keep) & edges["tar"].isin(keep) & (edges["reg"] != edges["tar"])]
    sub = sub.sort_values(["reg", "tar"]).reset_index(drop=True)
    g = nx.DiGraph()
    g.add_nodes_from(genes)
    for r in sub.itertuples(index=False):
        g.add_edge(r.reg, r.tar, sign=r.sign)
    while True:
        try:
            cycle = nx.find_cycle(g)
        except nx.NetworkXNoCycle:
            break
        g.remove_edge(*cycle[-1][:2])
    return pd.DataFrame(
        [(u, v, d["sign"]) for u, v, d in sorted(g.edges(data=True))], columns=["reg", "tar", "sign"]
    )


def limit_regulators(edges: pd.DataFrame, max_regulators: int, rng: np.random.Generator) -> pd.DataFrame:
    """Keep at most ``max_regulators`` randomly chosen incoming edges per target (0 = keep all)."""
    if max_regulators <= 0:
        return edges
    keep = []
    for _, group in edges.groupby("tar", sort=True):
        idx = group.index.to_numpy()
        if len(idx) > max_regulators:
            idx = np.sort(rng.choice(idx, size=max_regulators, replace=False))
        keep.extend(idx.tolist())
    return edges.loc[sorted(keep)].reset_index(drop=True)


def build_grn(
    source: str, n_genes: int, n_cell_types: int, seed: int, max_regulators: int = 3
) -> GroundTruthGRN:
    """Pick, clean and parameterise a sub-network (everything drawn from ``seed``).

    ``max_regulators`` caps the in-degree (a random subset of each target's regulators is kept,
    before cycles are removed) so that the network stays sparse like SERGIO's demo networks.
    """
    rng = np.random.default_rng(seed)
    ref = reference_edges(source)
    genes = grow_subnetwork(ref, n_genes, rng)
    keep = set(genes)
    induced = ref[ref["reg"].isin(keep) & ref["tar"].isin(keep) & (ref["reg"] != ref["tar"])]
    induced = limit_regulators(
        induced.sort_values(["tar", "reg"]).reset_index(drop=True), max_regulators, rng
    )
    edges = acyclic_subgraph(induced, genes)
    connected = set(edges["reg"]) | set(edges["tar"])
    genes = [g for g in genes if g in connected]
    signs = edges["sign"].to_numpy()
    random_sign = np.where(rng.random(len(edges)) < 0.75, 1, -1)
    signs = np.where(signs == 0, random_sign, signs)
    k_mag = rng.uniform(K_ACT[0], K_ACT[1], size=len(edges))
    edges = edges.assign(k=signs * k_mag, n=HILL_N, h=np.nan).drop(columns="sign")
    targets = set(edges["tar"])
    mrs = [g for g in genes if g not in targets]
    high = rng.random((len(mrs), n_cell_types)) < 0.5
    rates = np.where(
        high,
        rng.uniform(*MR_HIGH, size=high.shape),
        rng.uniform(*MR_LOW, size=high.shape),
    )
    profile = pd.DataFrame(rates, index=mrs, columns=[f"type_{i}" for i in range(n_cell_types)])
    return GroundTruthGRN(
        edges=edges.reset_index(drop=True), genes=sorted(genes), mr_profile=profile, source=source
    )
