"""Single-cell genetic perturbation response, GEARS protocol (SPEC §5.5).

Protocol
--------
* **Input** — log-normalised expression. A data set of raw counts (the SERGIO simulations) is
  normalised here (``scanpy.pp.normalize_total(target_sum=1e4)`` + ``log1p``), which the task
  parameters record. ``obs[condition_key]`` holds ``ctrl`` or GEARS names ``A+ctrl``/``A+B``.
* **Split** — test conditions are never seen in training. The card's declared split
  (``split_key`` with ``reference_values`` → train, ``query_values`` → test; other values, e.g.
  ``val``, are left out) or else GEARS's own ``DataSplitter(adata, "simulation")`` split, seeded
  (``train_gene_set_size`` 0.75, ``combo_seen2_train_frac`` 0.75; its validation conditions are
  given to the adapter as training data — adapters make their own validation split). Control
  cells are all training cells; the adapter predicts from them.
* **Subgroups** (GEARS) — ``single``: a single-gene test condition; ``combo_seen{0,1,2}``: a
  test ``A+B`` of which 0, 1 or 2 genes have a single perturbation in training.
* **DE genes** — GEARS ``data_utils.get_DE_genes``: ``scanpy.tl.rank_genes_groups`` (t-test,
  ``rankby_abs``) of each condition against ``ctrl``. scanpy cannot test a group of one cell;
  for such conditions (common in tiny fixtures) the genes are ranked by ``|mean − ctrl mean|``
  instead and ``n_conditions_de_by_abs_change`` says how many. The top 20 are the "DE genes".

Metrics
-------
Computed by GEARS 0.1.2's own ``gears.inference`` functions on a ``test_res`` dict in which each
test cell's prediction is its condition's predicted mean (``pred``), next to the observed cell
(``truth``); ``ctrl`` is the mean of all control cells. GEARS turns a NaN Pearson correlation (a
constant vector) into 0.

* ``mse``, ``pearson`` — ``compute_metrics``: MSE / Pearson r between the predicted and the
  observed mean expression of a condition over all genes; ``mse_de``, ``pearson_de`` — the same
  on the condition's top-20 DE genes. Averaged over test conditions (each condition weighs 1).
* ``cell_mse``, ``cell_pearson``, ``cell_mse_de``, ``cell_pearson_de`` — the same GEARS
  ``compute_metrics`` with every test cell as its own group: each observed cell against its
  condition's prediction, averaged over cells (a condition weighs its number of cells).
* ``pearson_delta``, ``pearson_delta_de`` — ``deeper_analysis``: Pearson r between predicted
  and observed change vs control (``mean − ctrl``), all genes / top-20 DE genes.
* ``frac_correct_direction_all``, ``frac_correct_direction_20`` — ``deeper_analysis``: fraction
  of genes (all / top-20 DE) whose predicted change has the observed sign (sign 0 counts).
* ``frac_correct_direction_top20_non_dropout``, ``frac_opposite_direction_top20_non_dropout``,
  ``pearson_delta_top20_de_non_dropout``, ``mse_top20_de_non_dropout`` — ``non_dropout_analysis``
  on the top-20 DE genes that are not drop-outs (GEARS ``get_dropout_non_zero_genes``).
* ``{subgroup}/{metric}`` — the condition-level metrics averaged within each subgroup, with
  ``{subgroup}/n_conditions``.

GEARS's ``deeper_analysis``/``non_dropout_analysis`` divide by the number of DE genes that vary
across a condition's cells, which is zero for a condition with one test cell, and index 20 DE
genes, which fails on data sets with fewer than 20 genes; such conditions
are scored by :func:`gears_formulas`, the same lines written out (``n_conditions_scored_by_formula``).

A prediction identical to the control mean is undefined for ``pearson_delta``: such a
prediction (within 1e-6, absolute and relative, of GEARS's float32 control mean) is snapped to
it exactly, so float rounding cannot fabricate a correlation; GEARS returns NaN → 0, and
``n_conditions_no_change`` counts them. (A prediction that shifts every gene by the same amount
is just as undefined but is not detected: its score is rounding noise.)

Artifacts: ``perturbation_scatter.png`` (predicted vs observed change on the top-20 DE genes of
each test condition) and ``per_condition_metrics.csv``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import anndata as ad
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import scanpy as sc  # noqa: E402
import scipy.sparse as sp  # noqa: E402

from benchmarks.errors import InputError  # noqa: E402
from benchmarks.interface import Artifact, ModelAdapter, Suite, SuiteResult, TaskData, TaskKind  # noqa: E402
from benchmarks.plots import plots_enabled  # noqa: E402

CTRL = "ctrl"
N_DE = 20
SUBGROUPS = ("single", "combo_seen0", "combo_seen1", "combo_seen2")
CONDITION_METRICS = (
    "mse",
    "pearson",
    "mse_de",
    "pearson_de",
    "pearson_delta",
    "pearson_delta_de",
    "frac_correct_direction_all",
    "frac_correct_direction_20",
    "frac_correct_direction_top20_non_dropout",
    "frac_opposite_direction_top20_non_dropout",
    "pearson_delta_top20_de_non_dropout",
    "mse_top20_de_non_dropout",
)
LOWER_IS_BETTER = {"mse", "mse_de", "cell_mse", "cell_mse_de", "mse_top20_de_non_dropout"}
LOWER_IS_BETTER |= {"frac_opposite_direction_top20_non_dropout"}


def condition_genes(condition: str) -> list[str]:
    """Genes of a GEARS-style condition (``ctrl`` parts dropped)."""
    return [g for g in str(condition).split("+") if g and g != CTRL]


def subgroup_of(condition: str, train_single_genes: set[str]) -> str:
    """GEARS subgroup of a test condition: ``single`` or ``combo_seen{N}``."""
    genes = condition_genes(condition)
    if len(genes) <= 1:
        return "single"
    return f"combo_seen{sum(g in train_single_genes for g in genes)}"


def _dense(X: Any) -> np.ndarray:
    return np.asarray(X.toarray() if sp.issparse(X) else X, dtype=np.float64)


def _gears_frame(adata: ad.AnnData, condition_key: str) -> ad.AnnData:
    """An AnnData in GEARS's layout: sparse X, obs ``condition``/``cell_type``, var ``gene_name``."""
    X = adata.X if sp.issparse(adata.X) else sp.csr_matrix(adata.X)
    obs = pd.DataFrame({"condition": adata.obs[condition_key].astype(str).to_numpy()}, index=adata.obs_names)
    obs["cell_type"] = "all"  # one cell population: GEARS ranks DE genes per cell type
    var = pd.DataFrame({"gene_name": adata.var_names.astype(str)}, index=adata.var_names.astype(str))
    return ad.AnnData(X=sp.csr_matrix(X, dtype=np.float32), obs=obs, var=var)


def gears_de_genes(gadata: ad.AnnData, conditions: Sequence[str]) -> tuple[ad.AnnData, int]:
    """Rank DE genes of ``conditions`` vs ``ctrl`` with GEARS (``uns['rank_genes_groups_cov_all']``).

    Returns the GEARS AnnData restricted to ``ctrl`` + ``conditions`` and how many conditions,
    having a single cell, were ranked by absolute mean change instead of scanpy's t-test.
    """
    from gears.data_utils import get_DE_genes, get_dropout_non_zero_genes, rank_genes_groups_by_cov

    keep = gadata.obs["condition"].isin([CTRL, *conditions]).to_numpy()
    gadata = gadata[keep].copy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gadata = get_DE_genes(gadata, skip_calc_de=True)  # sets dose_val, control, condition_name
    counts = gadata.obs["condition"].astype(str).value_counts()
    testable = [c for c in conditions if counts.get(c, 0) >= 2]
    ranked: dict[str, list[str]] = {}
    if testable:
        sub = gadata[gadata.obs["condition"].isin([CTRL, *testable]).to_numpy()].copy()
        sub.obs = sub.obs.astype(str).astype("category")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ranked = rank_genes_groups_by_cov(
                sub,
                groupby="condition_name",
                covariate="cell_type",
                control_group="ctrl_1",
                n_genes=gadata.n_vars,
                return_dict=True,
            )
    name_of = dict(
        zip(gadata.obs["condition"].astype(str), gadata.obs["condition_name"].astype(str), strict=True)
    )
    ctrl_mean = _dense(gadata[gadata.obs["condition"] == CTRL].X).mean(axis=0)
    n_fallback = 0
    for c in conditions:
        if name_of[c] in ranked:
            continue
        change = np.abs(_dense(gadata[gadata.obs["condition"] == c].X).mean(axis=0) - ctrl_mean)
        order = np.argsort(-change, kind="stable")
        ranked[name_of[c]] = gadata.var_names[order].tolist()
        n_fallback += 1
    gadata.uns["rank_genes_groups_cov_all"] = {
        name_of[c]: ranked[name_of[c]] for c in [CTRL, *conditions] if c in name_of and name_of[c] in ranked
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gadata = get_dropout_non_zero_genes(gadata)
    return gadata, n_fallback


def gears_control_mean(gadata: ad.AnnData) -> np.ndarray:
    """The control mean exactly as GEARS's analysis functions compute it."""
    idx = np.where(gadata.obs["condition"] == CTRL)[0]
    return np.asarray(np.mean(gadata.X[idx], axis=0)).ravel()


def _pearson0(x: np.ndarray, y: np.ndarray) -> float:
    """``scipy.stats.pearsonr`` with GEARS's rule NaN (constant input) → 0."""
    from scipy.stats import pearsonr

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        val = float(pearsonr(x, y)[0])
    return 0.0 if np.isnan(val) else val


def _direction(pred: np.ndarray, truth: np.ndarray, ctrl: np.ndarray) -> np.ndarray:
    return np.abs(np.sign(pred - ctrl) - np.sign(truth - ctrl))


def gears_formulas(
    gadata: ad.AnnData, ctrl: np.ndarray, pred_mean: np.ndarray, truth_mean: np.ndarray, condition: str
) -> dict[str, float]:
    """The reported ``deeper_analysis``/``non_dropout_analysis`` metrics, line for line as GEARS 0.1.2.

    Used only for a condition GEARS's functions cannot score (one test cell, see
    :func:`perturbation_metrics`); ``tests/test_perturbation.py`` checks it equals GEARS elsewhere.
    """
    from sklearn.metrics import mean_squared_error

    name = dict(
        zip(gadata.obs["condition"].astype(str), gadata.obs["condition_name"].astype(str), strict=True)
    )[condition]
    pos = {g: i for i, g in enumerate(gadata.var_names)}
    de = [pos[g] for g in gadata.uns["rank_genes_groups_cov_all"][name][:N_DE]]
    nd = [pos[g] for g in gadata.uns["top_non_dropout_de_20"][name]]
    out = {
        "frac_correct_direction_all": float((_direction(pred_mean, truth_mean, ctrl) == 0).sum() / len(ctrl)),
        "frac_correct_direction_20": float(
            (_direction(pred_mean[de], truth_mean[de], ctrl[de]) == 0).sum() / N_DE
        ),
        "pearson_delta": _pearson0(pred_mean - ctrl, truth_mean - ctrl),
        "pearson_delta_de": _pearson0(pred_mean[de] - ctrl[de], truth_mean[de] - ctrl[de]),
    }
    if nd:
        d = _direction(pred_mean[nd], truth_mean[nd], ctrl[nd])
        out |= {
            "frac_correct_direction_top20_non_dropout": float((d == 0).sum() / len(nd)),
            "frac_opposite_direction_top20_non_dropout": float((d == 2).sum() / len(nd)),
            "pearson_delta_top20_de_non_dropout": _pearson0(
                pred_mean[nd] - ctrl[nd], truth_mean[nd] - ctrl[nd]
            ),
            "mse_top20_de_non_dropout": float(
                mean_squared_error(pred_mean[nd] - ctrl[nd], truth_mean[nd] - ctrl[nd])
            ),
        }
    return out


def perturbation_metrics(
    gadata: ad.AnnData,
    truth: np.ndarray,
    cell_conditions: np.ndarray,
    predicted: pd.DataFrame,
    subgroups: dict[str, str],
) -> tuple[dict[str, float], pd.DataFrame]:
    """All metrics of the module docstring, with GEARS's ``gears.inference`` functions.

    Parameters
    ----------
    gadata
        The GEARS AnnData from :func:`gears_de_genes` (control + test cells, DE genes in ``uns``).
    truth
        Observed log expression of the test cells, ``(n_cells, n_genes)``.
    cell_conditions
        The condition of each test cell.
    predicted
        Predicted mean expression, one row per test condition, columns = ``gadata.var_names``.
    subgroups
        The GEARS subgroup of each test condition.

    Returns
    -------
    tuple
        The metrics dict and the per-condition table (one row per test condition).

    """
    from gears.inference import compute_metrics, deeper_analysis, non_dropout_analysis

    cell_conditions = np.asarray(cell_conditions, dtype=str)
    ctrl = gears_control_mean(gadata)
    pred_rows = predicted.to_numpy(dtype=np.float64, copy=True)
    no_change = []
    for i, c in enumerate(predicted.index):
        if np.allclose(pred_rows[i], ctrl, rtol=1e-6, atol=1e-6):
            pred_rows[i] = ctrl
            no_change.append(c)
    row_of = {c: i for i, c in enumerate(predicted.index)}
    pred = pred_rows[[row_of[c] for c in cell_conditions]]
    gene_idx = {g: i for i, g in enumerate(gadata.var_names)}
    name_of = dict(
        zip(gadata.obs["condition"].astype(str), gadata.obs["condition_name"].astype(str), strict=True)
    )
    n_de = min(N_DE, gadata.n_vars)
    de_idx = {
        c: [gene_idx[g] for g in gadata.uns["rank_genes_groups_cov_all"][name_of[c]][:n_de]]
        for c in np.unique(cell_conditions)
    }
    rows_de = np.array([de_idx[c] for c in cell_conditions])
    take = np.arange(len(cell_conditions))[:, None]
    res = {
        "pert_cat": cell_conditions,
        "pred": pred,
        "truth": truth,
        "pred_de": pred[take, rows_de],
        "truth_de": truth[take, rows_de],
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _, per_cond = compute_metrics(res)
        cell_res = dict(res, pert_cat=np.array([f"cell{i}" for i in range(len(cell_conditions))]))
        cell_metrics, _ = compute_metrics(cell_res)
        analysis, by_formula = {}, []
        for c in np.unique(cell_conditions):
            m = cell_conditions == c
            sub = {k: v[m] for k, v in res.items()}
            try:
                analysis[c] = {**deeper_analysis(gadata, sub)[c], **non_dropout_analysis(gadata, sub)[c]}
            except (ZeroDivisionError, IndexError):
                # GEARS divides by the number of DE genes with non-zero spread across the cells of
                # the condition (zero for a one-cell condition) and indexes range(20) (fails with
                # fewer than 20 genes). Same formulas, written out.
                analysis[c] = gears_formulas(gadata, ctrl, pred_rows[row_of[c]], truth[m].mean(axis=0), c)
                by_formula.append(c)
    table = pd.DataFrame(
        {c: {**per_cond[c], **analysis[c]} for c in sorted(per_cond, key=lambda c: (subgroups[c], c))}
    ).T
    keep = [
        m
        for m in CONDITION_METRICS
        if m in table.columns and (m != "frac_correct_direction_20" or n_de == N_DE)
    ]
    table = table[keep].astype(float)
    table.insert(0, "subgroup", [subgroups[c] for c in table.index])
    table.insert(1, "n_cells", [int((cell_conditions == c).sum()) for c in table.index])
    table.insert(2, "no_change_prediction", [c in no_change for c in table.index])
    table.index.name = "condition"
    metrics: dict[str, float] = {m: float(table[m].mean()) for m in keep}
    metrics |= {f"cell_{m}": float(cell_metrics[m]) for m in ("mse", "pearson", "mse_de", "pearson_de")}
    for group in SUBGROUPS:
        part = table[table["subgroup"] == group]
        metrics[f"{group}/n_conditions"] = float(len(part))
        if len(part):
            metrics |= {f"{group}/{m}": float(part[m].mean()) for m in keep}
    metrics["n_test_conditions"] = float(len(table))
    metrics["n_conditions_no_change"] = float(len(no_change))
    metrics["n_conditions_scored_by_formula"] = float(len(by_formula))
    return metrics, table


def change_scatter(
    gadata: ad.AnnData,
    table: pd.DataFrame,
    truth_means: pd.DataFrame,
    predicted: pd.DataFrame,
    path: Path,
    title: str,
) -> Path:
    """Predicted vs observed change vs control on each test condition's top-20 DE genes."""
    ctrl = gears_control_mean(gadata)
    name_of = dict(
        zip(gadata.obs["condition"].astype(str), gadata.obs["condition_name"].astype(str), strict=True)
    )
    conditions = list(table.index)[:24]
    n_col = min(6, max(1, len(conditions)))
    n_row = max(1, math.ceil(len(conditions) / n_col))
    fig, axes = plt.subplots(n_row, n_col, figsize=(2.4 * n_col, 2.4 * n_row), dpi=100, squeeze=False)
    pos = {g: i for i, g in enumerate(gadata.var_names)}
    for ax, c in zip(axes.ravel(), conditions, strict=False):
        idx = [pos[g] for g in gadata.uns["rank_genes_groups_cov_all"][name_of[c]][:N_DE]]
        x = truth_means.loc[c].to_numpy()[idx] - ctrl[idx]
        y = predicted.loc[c].to_numpy(dtype=float)[idx] - ctrl[idx]
        lim = float(max(np.abs(x).max(), np.abs(y).max(), 1e-3)) * 1.1
        ax.axline((0, 0), slope=1, color="grey", lw=0.6, ls="--")
        ax.scatter(x, y, s=8, color="tab:blue")
        ax.set_xlim(-lim, lim)
        ax.set_ylim(-lim, lim)
        ax.set_title(f"{c} ({table.loc[c, 'subgroup']})", fontsize=7)
        ax.tick_params(labelsize=6)
    for ax in axes.ravel()[len(conditions) :]:
        ax.axis("off")
    fig.supxlabel("observed change vs control (top-20 DE genes)", fontsize=8)
    fig.supylabel("predicted change", fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


class PerturbationSuite(Suite):
    """Predict the mean expression after unseen single/double perturbations (GEARS metrics)."""

    name = "perturbation"
    description = (
        "Single-cell perturbation response on unseen conditions, GEARS split and metrics (SPEC §5.5)."
    )
    required_kinds = frozenset({TaskKind.PERTURBATION})
    headline_metrics = (
        "mse_de",
        "pearson_de",
        "pearson_delta",
        "pearson_delta_de",
        "frac_correct_direction_20",
    )
    higher_is_better = {
        m: m not in LOWER_IS_BETTER
        for m in (*CONDITION_METRICS, "cell_mse", "cell_pearson", "cell_mse_de", "cell_pearson_de")
    }
    default_datasets = ("norman_subset", "sergio_perturb")
    quick_datasets = ("norman_subset",)
    controls = ("no-change", "train-mean", "linear")

    def __init__(self, *, quick: bool = False, options: dict[str, Any] | None = None) -> None:
        super().__init__(quick=quick, options=options)
        self.options.setdefault("train_gene_set_size", 0.75)
        self.options.setdefault("combo_seen2_train_frac", 0.75)
        self.options.setdefault("split", "auto")  # auto | declared | gears_simulation

    def prepare(self, adata: ad.AnnData, card: Any, seed: int) -> TaskData:
        """Normalise counts, split conditions (declared or GEARS simulation split), rank DE genes."""
        meta = adata.uns["cgcbench"]
        where = meta["dataset"].get("path", card.name)
        key = meta.get("condition_key") or self.options.get("condition_key")
        if not key:
            raise InputError(
                f"{where}: dataset {card.name} declares no condition key; pass --condition-key with the obs "
                "column holding GEARS-style conditions ('ctrl', 'A+ctrl', 'A+B')"
            )
        adata = adata.copy()
        cond = adata.obs[key].astype(str)
        if not (cond == CTRL).any():
            raise InputError(
                f"{where}: obs[{key!r}] has no {CTRL!r} cells; the perturbation suite needs control cells "
                f"labelled {CTRL!r} (values seen: {', '.join(sorted(set(cond))[:10])})"
            )
        dataset = dict(meta["dataset"])
        params: dict[str, Any] = {"condition_key": key}
        if dataset.get("expression_kind") == "counts":
            sc.pp.normalize_total(adata, target_sum=1e4)
            sc.pp.log1p(adata)
            dataset["expression_kind"] = "log1p_normalized"
            params["normalised_by_suite"] = "normalize_total(1e4)+log1p"
        train_conds, test_conds, split_kind = self._split(adata, cond, meta, seed, where)
        train_single_genes = {condition_genes(c)[0] for c in train_conds if len(condition_genes(c)) == 1}
        subgroups = {c: subgroup_of(c, train_single_genes) for c in test_conds}
        is_train = cond.isin([*train_conds, CTRL]).to_numpy()
        is_test = cond.isin(test_conds).to_numpy()
        train, test = adata[is_train].copy(), adata[is_test].copy()
        control = adata[(cond == CTRL).to_numpy()].copy()
        gadata, n_fallback = gears_de_genes(_gears_frame(adata, key), test_conds)
        params |= {
            "split": split_kind,
            "n_train_cells": int(train.n_obs),
            "n_test_cells": int(test.n_obs),
            "n_control_cells": int(control.n_obs),
            "n_cells_left_out": int((~is_train & ~is_test).sum()),
            "n_train_conditions": len(train_conds),
            "test_conditions": sorted(test_conds),
            "subgroup_sizes": {g: sum(v == g for v in subgroups.values()) for g in SUBGROUPS},
            "n_de_genes": min(N_DE, adata.n_vars),
            "n_conditions_de_by_abs_change": n_fallback,
        }
        return TaskData(
            dataset=dataset,
            payload={
                "train": train,
                "test": test,
                "control": control,
                "gears": gadata,
                "subgroups": subgroups,
                "condition_key": key,
            },
            params=params,
        )

    def _split(
        self, adata: ad.AnnData, cond: pd.Series, meta: dict[str, Any], seed: int, where: str
    ) -> tuple[list[str], list[str], str]:
        mode = self.options["split"]
        split_key = meta.get("split_key")
        declared = bool(split_key and meta.get("reference_values") and meta.get("query_values"))
        if mode == "declared" and not declared:
            raise InputError(
                f"{where}: split='declared' but the card declares no split_key/reference/query values"
            )
        if mode in ("declared", "auto") and declared:
            split = adata.obs[split_key].astype(str)
            train = sorted(set(cond[split.isin(meta["reference_values"])]) - {CTRL})
            test = sorted(set(cond[split.isin(meta["query_values"])]) - {CTRL})
            overlap = sorted(set(train) & set(test))
            if overlap:
                raise InputError(
                    f"{where}: conditions {', '.join(overlap[:5])} are in both the train and test split "
                    f"(obs[{split_key!r}]); GEARS test conditions must be unseen in training"
                )
            kind = f"declared ({split_key})"
        elif mode in ("gears_simulation", "auto"):
            train, test = self._gears_simulation_split(cond, seed)
            kind = "gears_simulation"
        else:
            raise InputError(f"split={mode!r}; use auto, declared or gears_simulation")
        if not test:
            raise InputError(
                f"{where}: the split leaves no test condition; add perturbed conditions or change it"
            )
        if not train:
            raise InputError(f"{where}: the split leaves no perturbed training condition")
        return train, test, kind

    def _gears_simulation_split(self, cond: pd.Series, seed: int) -> tuple[list[str], list[str]]:
        from gears.data_utils import DataSplitter

        frame = ad.AnnData(obs=pd.DataFrame({"condition": cond.to_numpy()}, index=cond.index))
        state = np.random.get_state()  # DataSplitter seeds NumPy's global state
        try:
            frame, _ = DataSplitter(frame, split_type="simulation").split_data(
                seed=seed,
                train_gene_set_size=float(self.options["train_gene_set_size"]),
                combo_seen2_train_frac=float(self.options["combo_seen2_train_frac"]),
            )
        finally:
            np.random.set_state(state)
        split = frame.obs["split"].astype(str)
        train = sorted(set(cond[split.isin(["train", "val"]).to_numpy()]) - {CTRL})
        test = sorted(set(cond[(split == "test").to_numpy()]))
        return train, test

    def run(self, adapter: ModelAdapter, task: TaskData, seed: int, workdir: Path) -> SuiteResult:
        """Fit on the training cells, predict the test conditions from the control cells, score."""
        p = task.payload
        test: ad.AnnData = p["test"]
        key: str = p["condition_key"]
        conditions = sorted(p["subgroups"])
        adapter.fit_perturbation(p["train"], condition_key=key)  # type: ignore[attr-defined]
        pred = adapter.predict_perturbation(p["control"], conditions)  # type: ignore[attr-defined]
        pred = self._check_prediction(adapter, pred, conditions, test.var_names)
        gadata: ad.AnnData = p["gears"]
        truth = _dense(test.X)
        cell_conditions = test.obs[key].astype(str).to_numpy()
        metrics, table = perturbation_metrics(gadata, truth, cell_conditions, pred, p["subgroups"])
        truth_means = pd.DataFrame(truth, columns=test.var_names).groupby(cell_conditions).mean()
        csv = workdir / "per_condition_metrics.csv"
        workdir.mkdir(parents=True, exist_ok=True)
        table.to_csv(csv)
        artifacts = [Artifact(csv, "table", "metrics per test condition, with GEARS subgroup")]
        if plots_enabled():
            plot = change_scatter(
                gadata,
                table,
                truth_means,
                pred,
                workdir / "perturbation_scatter.png",
                f"{adapter.info().label} on {task.dataset['name']} (seed {seed})",
            )
            artifacts.insert(0, Artifact(plot, "plot",
                                         "predicted vs observed change vs control on the top-20 DE genes"))
        return SuiteResult(metrics=metrics, artifacts=artifacts, tables={"per_condition": table})

    @staticmethod
    def _check_prediction(
        adapter: ModelAdapter, pred: Any, conditions: list[str], genes: pd.Index
    ) -> pd.DataFrame:
        if not isinstance(pred, pd.DataFrame):
            raise RuntimeError(
                f"{adapter.name}.predict_perturbation returned {type(pred).__name__}, not a DataFrame"
            )
        missing_rows = [c for c in conditions if c not in pred.index]
        missing_cols = genes.difference(pred.columns)
        if missing_rows or len(missing_cols):
            raise RuntimeError(
                f"{adapter.name}.predict_perturbation is missing conditions {missing_rows[:5]} or genes "
                f"{list(missing_cols[:5])}; it must return rows = conditions, columns = var_names"
            )
        out = pred.loc[conditions, genes].astype(np.float64)
        if not np.isfinite(out.to_numpy()).all():
            raise RuntimeError(f"{adapter.name}.predict_perturbation returned NaN or infinite values")
        return out
