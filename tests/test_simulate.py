"""SERGIO ground truth: real sub-networks, knockouts, designs, caching, cards and CLI."""

from __future__ import annotations

import networkx as nx
import numpy as np
import pytest
from typer.testing import CliRunner

from benchmarks.data.cards import get_card, parse_card
from benchmarks.errors import InputError
from benchmarks.simulate import card_params, materialize, params_hash
from benchmarks.simulate.cli import app
from benchmarks.simulate.designs import resolve_params, simulate
from benchmarks.simulate.engine import fit_half_response, simulate_clean
from benchmarks.simulate.grn import build_grn, reference_edges

pytest.importorskip("SERGIO")

SMALL = {"n_genes": 30, "n_cell_types": 2, "n_batches": 2, "cells_per_type": 20}


def small_card(name: str = "tiny_sim", **simulation: object):
    return parse_card(
        {
            "name": name,
            "version": "t",
            "title": "tiny",
            "organism": "human",
            "gene_id_type": "symbol",
            "license": "MIT",
            "kind": "simulated",
            "simulation": {"design": "batches", "seed": 3, **SMALL, **simulation},
            "anndata": {
                "expression": "X",
                "expression_kind": "counts",
                "label_key": "cell_type",
                "batch_key": "batch",
            },
        }
    )


def test_grn_is_a_seeded_acyclic_subnetwork_of_real_symbols():
    a = build_grn("sergio_human", 40, 2, seed=1)
    b = build_grn("sergio_human", 40, 2, seed=1)
    assert a.edges.equals(b.edges) and a.genes == b.genes
    g = nx.DiGraph(list(zip(a.edges["reg"], a.edges["tar"], strict=True)))
    assert nx.is_directed_acyclic_graph(g)
    assert a.edges.groupby("tar").size().max() <= 3  # max_regulators
    ref = reference_edges("sergio_human")
    known = set(ref["reg"]) | set(ref["tar"])
    assert set(a.genes) <= known and not any(s.isdigit() for s in a.genes)
    pairs = set(zip(ref["reg"], ref["tar"], strict=True))
    assert all((r, t) in pairs for r, t in zip(a.edges["reg"], a.edges["tar"], strict=True))
    assert set(a.mr_profile.index) == set(a.master_regulators)
    assert ((a.mr_profile >= 1) & (a.mr_profile <= 5)).all().all()
    assert build_grn("sergio_human", 40, 2, seed=2).genes != a.genes


def test_knockout_silences_the_gene_and_moves_its_targets():
    truth = fit_half_response(build_grn("sergio_human", 30, 1, seed=4))
    assert truth.edges["h"].notna().all() and (truth.edges["h"] > 0).all()
    reach = truth.n_descendants()
    gene = reach.idxmax()
    (wt,) = simulate_clean(truth, [60], seed=1)
    (ko,) = simulate_clean(truth, [60], seed=1, ko_genes=[gene])
    i = truth.genes.index(gene)
    assert wt[i].mean() > 0.5 and np.all(ko[i] == 0)
    targets = truth.edges.loc[truth.edges["reg"] == gene, "tar"]
    shifts = [abs(wt[truth.genes.index(t)].mean() - ko[truth.genes.index(t)].mean()) for t in targets]
    assert max(shifts) > 0.2
    (again,) = simulate_clean(truth, [60], seed=1, ko_genes=[gene])
    np.testing.assert_array_equal(ko, again)


@pytest.fixture(scope="module")
def designs() -> dict:
    common = {"n_genes": 30, "seed": 5, "min_ko_descendants": 2}
    return {
        "batches": simulate(
            resolve_params({**common, **SMALL, "design": "batches", "n_batches": 3}), n_jobs=1
        ),
        "perturb": simulate(
            resolve_params(
                {
                    **common,
                    "design": "perturb",
                    "n_single": 4,
                    "n_combo": 3,
                    "cells_per_condition": 8,
                    "n_ctrl_cells": 20,
                }
            ),
            n_jobs=2,
        ),
        "bulk_ko": simulate(
            resolve_params(
                {
                    **common,
                    "design": "bulk_ko",
                    "n_cell_types": 2,
                    "n_ko": 3,
                    "n_replicates": 2,
                    "cells_per_replicate": 5,
                }
            ),
            n_jobs=1,
        ),
    }


def test_batches_design_has_types_batches_counts_and_the_true_grn(designs):
    a = designs["batches"]
    assert a.shape == (40, 30)
    assert set(a.obs["cell_type"]) == {"type_0", "type_1"} and a.obs["batch"].nunique() == 3
    X = a.X.toarray()
    assert np.all(X >= 0) and np.all(X == np.round(X))
    lib = a.obs.assign(lib=X.sum(1)).groupby("batch", observed=True)["lib"].median()
    assert lib.max() > 1.5 * lib.min()  # library-size means differ by batch (e^6.5 vs e^5)
    grn = a.uns["grn"]
    assert set(grn["reg"]) | set(grn["tar"]) == set(a.var_names)
    assert a.layers["clean"].shape == a.shape


def test_perturb_design_uses_gears_names_and_silences_knocked_out_genes(designs):
    a = designs["perturb"]
    cond = a.obs["condition"].astype(str)
    singles = [c for c in cond.unique() if c.endswith("+ctrl")]
    combos = [c for c in cond.unique() if c != "ctrl" and "ctrl" not in c]
    assert (cond == "ctrl").sum() == 20 and len(singles) == 4 and len(combos) == 3
    single_genes = {c.split("+")[0] for c in singles}
    for c in combos:
        assert set(c.split("+")) <= single_genes
    clean = a.layers["clean"]
    for c in singles + combos:
        for g in c.split("+"):
            if g != "ctrl":
                assert np.all(clean[(cond == c).to_numpy(), a.var_names.get_loc(g)] == 0)


def test_bulk_design_is_pseudobulk_of_replicates(designs):
    a = designs["bulk_ko"]
    assert a.n_obs == 2 * (1 + 3) * 2  # types x (ctrl + kos) x replicates
    assert set(a.obs["condition"]) - {"ctrl"} == set(a.obs["ko_gene"]) - {""}
    assert a.X.sum(axis=1).min() > 100  # sums of 5 cells' counts


def test_simulation_does_not_depend_on_worker_count():
    params = resolve_params(
        {
            "design": "perturb",
            "n_genes": 25,
            "n_single": 2,
            "n_combo": 1,
            "cells_per_condition": 4,
            "n_ctrl_cells": 6,
            "min_ko_descendants": 1,
            "seed": 9,
        }
    )
    a, b = simulate(params, n_jobs=1), simulate(params, n_jobs=2)
    assert (a.X != b.X).nnz == 0


def test_materialize_caches_by_parameter_hash(monkeypatch, tmp_path):
    monkeypatch.setenv("CGCBENCH_DATA_DIR", str(tmp_path))
    card = small_card()
    path = materialize(card, n_jobs=1)
    assert path == tmp_path / "tiny_sim" / f"{params_hash(card_params(card))}.h5ad" and path.is_file()
    assert not list(path.parent.glob(".*tmp"))  # written atomically, no leftovers
    import benchmarks.simulate as simulate_pkg

    monkeypatch.setattr(simulate_pkg, "simulate", lambda *a, **k: pytest.fail("cache not used"))
    assert materialize(card) == path
    other = small_card(seed=4)
    assert params_hash(card_params(other)) != params_hash(card_params(card))


def test_materialized_card_loads_like_an_h5ad_card(monkeypatch, tmp_path):
    from benchmarks.data.load import load_anndata

    monkeypatch.setenv("CGCBENCH_DATA_DIR", str(tmp_path))
    adata = load_anndata(small_card())
    assert adata.uns["cgcbench"]["dataset"]["expression_kind"] == "counts"
    assert adata.uns["cgcbench"]["label_key"] == "cell_type"
    assert "gene_symbol" in adata.var


def test_bad_simulation_tables_are_input_errors():
    with pytest.raises(InputError, match="unknown key"):
        resolve_params({"n_gene": 10})
    with pytest.raises(InputError, match="design"):
        resolve_params({"design": "dynamics"})
    with pytest.raises(InputError, match="only kind='simulated'"):
        card_params(get_card("norman_subset"))


@pytest.mark.parametrize(
    "name,design",
    [("sergio_batches", "batches"), ("sergio_perturb", "perturb"), ("sergio_bulk_ko", "bulk_ko")],
)
def test_sergio_cards_resolve(name, design):
    card = get_card(name)
    assert card.kind == "simulated" and card.anndata is not None
    assert card_params(card)["design"] == design


def test_cli_simulate_writes_the_file(monkeypatch, tmp_path):
    monkeypatch.setenv("CGCBENCH_DATA_DIR", str(tmp_path / "cache"))
    out = tmp_path / "out.h5ad"
    result = CliRunner().invoke(
        app,
        [
            "simulate",
            "sergio_batches",
            "--out",
            str(out),
            "--cells",
            "10",
            "--set",
            "n_genes=25",
            "--set",
            "n_cell_types=2",
            "--jobs",
            "1",
        ],
    )
    assert result.exit_code == 0, result.output
    assert out.is_file() and str(out) in result.output
    bad = CliRunner().invoke(app, ["simulate", "sergio_batches", "--set", "nope"])
    assert bad.exit_code == 2 and "KEY=VALUE" in bad.output
