"""Run SERGIO (PyPI ``sergio-scsim``) on a :class:`GroundTruthGRN`, with gene knockouts.

The network is handed to SERGIO through its own loader, ``SERGIO.GRN.grn_from_file`` (a CSV
with columns ``index, reg, coop, tar, k, n, h, reg_decay, tar_decay``), initialised with
``GRN.init(mrProfile)`` and simulated to steady state with ``sergio.simulate`` (the chemical
Langevin equation of SERGIO, Dibaeinia & Sinha 2020); cells are read with ``getSimExpr``.

Knockouts
---------
A knocked-out gene's production is set to zero and steady state is simulated again:

* a master regulator gets basal production 0 in every cell type;
* any other gene gets ``k = 0`` on each of its incoming edges, so its Hill-sum production is 0.

The half-response ``h`` of every edge is fitted once, on the unperturbed network (SERGIO sets
``h`` to the regulator's mean steady-state level), and then kept fixed for knockouts: a
knockout changes the cell, not the wiring. SERGIO draws from NumPy's global random state, so
each call runs inside :func:`numpy_seed`, which restores the caller's state afterwards.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks.simulate.grn import DECAY, GroundTruthGRN


@contextlib.contextmanager
def numpy_seed(seed: int) -> Iterator[None]:
    """Seed NumPy's global random state for SERGIO; restore the previous state afterwards."""
    state = np.random.get_state()
    np.random.seed(seed % (2**32))
    try:
        yield
    finally:
        np.random.set_state(state)


def _sergio_grn(edges: pd.DataFrame):  # noqa: ANN202 - SERGIO's GRN class has no stubs
    from SERGIO.GRN import grn_from_file

    table = pd.DataFrame(
        {
            "reg": edges["reg"].to_numpy(),
            "coop": 0,
            "tar": edges["tar"].to_numpy(),
            "k": edges["k"].to_numpy(float),
            "n": edges["n"].to_numpy(float),
            "h": edges["h"].to_numpy(float),
            "reg_decay": DECAY,
            "tar_decay": DECAY,
        }
    )
    with tempfile.TemporaryDirectory(prefix="cgcbench-sergio-") as tmp:
        path = Path(tmp) / "grn.csv"
        table.to_csv(path, index=True, index_label="index")
        return grn_from_file(str(path))


def _profile(grn_obj, profile: pd.DataFrame):  # noqa: ANN001, ANN202
    from SERGIO.MR import mrProfile

    mrs = grn_obj.get_mrs()
    prof = mrProfile(MR_names=mrs, n_types=profile.shape[1])
    for mr in mrs:
        prof.profile[mr] = profile.loc[mr].to_numpy(dtype=float)
    prof.init_ = True
    return prof


def fit_half_response(truth: GroundTruthGRN) -> GroundTruthGRN:
    """Fill ``truth.edges['h']`` with SERGIO's half-response estimate on the unperturbed network."""
    grn_obj = _sergio_grn(truth.edges.assign(h=np.nan))
    grn_obj.init(_profile(grn_obj, truth.mr_profile), update_half_resp=True)
    h = {name: float(inter.h_) for name, inter in grn_obj.attr_["interactions"].items()}
    names = truth.edges["reg"] + "-" + truth.edges["tar"]
    truth.edges["h"] = names.map(h).to_numpy(float)
    return truth


def knockout_network(truth: GroundTruthGRN, ko_genes: Sequence[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Edges and master-regulator profile with the production of ``ko_genes`` set to zero."""
    edges = truth.edges.copy()
    profile = truth.mr_profile.copy()
    for gene in ko_genes:
        if gene not in truth.genes:
            raise KeyError(f"knockout gene {gene!r} is not in the simulated network")
        if gene in profile.index:
            profile.loc[gene] = 0.0
        edges.loc[edges["tar"] == gene, "k"] = 0.0
    return edges, profile


def simulate_clean(
    truth: GroundTruthGRN,
    cells_per_type: Sequence[int],
    seed: int,
    ko_genes: Sequence[str] = (),
    noise_s: float = 1.0,
) -> list[np.ndarray]:
    """Noise-free steady-state expression, one ``(n_genes, n_cells)`` array per cell type.

    Rows follow ``truth.genes``. ``cells_per_type`` may hold zeros (a cell type not sampled).
    """
    from SERGIO import sergio

    if truth.edges["h"].isna().any():
        raise ValueError("fit_half_response(truth) must run before simulate_clean")
    edges, profile = knockout_network(truth, ko_genes)
    n_types = profile.shape[1]
    wanted = [int(n) for n in cells_per_type]
    with numpy_seed(seed):
        grn_obj = _sergio_grn(edges)
        grn_obj.init(_profile(grn_obj, profile), update_half_resp=False)
        sim = sergio(grn_obj)
        sim.simulate(nCells=[max(n, 1) for n in wanted], noise_s=noise_s)
        expr = sim.getSimExpr()
    expr = expr.reindex(truth.genes).to_numpy(dtype=float)
    out, start = [], 0
    for ct in range(n_types):
        n_sim = max(wanted[ct], 1)
        out.append(expr[:, start : start + wanted[ct]])
        start += n_sim
    return out


def technical_noise(clean: np.ndarray, noise: dict[str, float], seed: int) -> np.ndarray:
    """Counts from noise-free expression with SERGIO's splat-style technical noise.

    Applied in SERGIO's order (``SERGIO.Noise._noise.splatModel``): outlier genes
    (``outlier_effect``), library size (``lib_size_effect``), dropout (``dropout_indicator``),
    then Poisson sampling to UMI counts (``convert_to_UMIcounts``). ``clean`` is genes × cells.
    """
    from SERGIO.Noise._noise import splatModel

    model = splatModel()
    with numpy_seed(seed):
        x = np.array(clean, dtype=float, copy=True)
        if noise.get("outlier_prob", 0) > 0:
            x = model.outlier_effect(x, noise["outlier_prob"], noise["outlier_mean"], noise["outlier_scale"])
        x = model.lib_size_effect(x, noise["library_mean"], noise["library_scale"])
        if noise.get("dropout_shape", 0) > 0:
            x = x * model.dropout_indicator(
                x, shape=noise["dropout_shape"], percentile=noise["dropout_percentile"]
            )
        return model.convert_to_UMIcounts(x)
