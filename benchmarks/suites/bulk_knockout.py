"""Bulk gene knockout: predict a bulk profile after knocking out one gene (SPEC §5.6).

Protocol
--------
* **Values** — every profile is compared in log space. ``counts`` (pasilla, the SERGIO
  pseudo-bulks) are turned into ``log1p(CPM)`` here (``scanpy.pp.normalize_total(target_sum=1e6)``
  + ``log1p``, natural log); ``log1p_normalized`` data are natural-log ``log(1 + x)``;
  ``log2_normalized`` data (FOXA2) are ``log2(x)``.
* **Fold change** — on the linear scale, from the log values: ``FC = b ** (after − before)``
  with ``b = e`` for ``counts``/``log1p_normalized`` (so ``FC = (x_after + 1) / (x_before + 1)``,
  a pseudo-count of 1 CPM) and ``b = 2`` for ``log2_normalized``.
* **Pairs** — a knockout sample is paired with the mean (in log space) of the control samples
  that share its ``pair_by`` covariates (all control samples if none): the "before" profile.
  The design (control value, knocked-out gene per sample, ``pair_by``) comes from the suite
  option ``knockout``, else the card's ``[knockout]`` table, else :data:`KNOWN_DESIGNS` (pasilla:
  ps = ``FBgn0261552``, pair_by the library ``type``; FOXA2: one mean wild type).
* **Split** — ``by_ko_gene``: a seeded ``test_fraction`` of the knocked-out genes (at least one)
  is held out, so test knockouts are unseen in training; ``leave_one_pair_out``: every pair is
  predicted by a model fitted on all other pairs (for the tiny real sets). ``auto`` picks
  ``by_ko_gene`` when there are at least 4 distinct knocked-out genes.
* **NaN** — ``nan_policy="error"`` (default) stops on missing values; ``"drop_genes"`` drops every
  gene with a missing value and records how many in ``n_genes_dropped_nan`` (never silently).
  The FOXA2 design declares ``drop_genes``.

Metrics
-------
Regression, per test pair over genes, then averaged over pairs:

* ``mse`` — mean squared error of predicted vs observed after-profile (log values);
* ``pearson`` — Pearson r of predicted vs observed after-profile (``scipy.stats.pearsonr``);
* ``pearson_delta`` — Pearson r of the predicted change ``pred − before`` vs the observed change
  ``after − before``. A constant predicted change (e.g. the ``no-change`` control) makes r
  undefined: it is scored 0 (GEARS's convention) and counted in
  ``n_pairs_pearson_delta_undefined``.

Classification of every (test pair, gene) by its fold change, pooled over test pairs, with
scikit-learn (``accuracy_score``; ``f1_score(average="macro", zero_division=0)`` over the
classes present in truth or prediction), as in the CGC paper:

* 3 classes — ``up`` (FC > 2), ``unchanged`` (½ ≤ FC ≤ 2), ``down`` (FC < ½):
  ``accuracy_3class``, ``f1_macro_3class``;
* 5 classes — ``up_5x`` (FC > 5), ``up_2x`` (2 < FC ≤ 5), ``none`` (½ ≤ FC ≤ 2), ``down_2x``
  (⅕ ≤ FC < ½), ``down_5x`` (FC < ⅕): ``accuracy_5class``, ``f1_macro_5class``.

Artifacts: confusion matrices (3- and 5-class; rows = observed class) and a per-pair table.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd
import scanpy as sc
import scipy.sparse as sp
from scipy.stats import pearsonr
from sklearn.metrics import accuracy_score, f1_score

from benchmarks.errors import InputError
from benchmarks.interface import Artifact, ModelAdapter, Suite, SuiteResult, TaskData, TaskKind
from benchmarks.plots import confusion_matrix_plot, plots_enabled

log = logging.getLogger(__name__)

CLASSES_3 = ("down", "unchanged", "up")
CLASSES_5 = ("down_5x", "down_2x", "none", "up_2x", "up_5x")
LOG_BASE = {"counts": np.e, "log1p_normalized": np.e, "log2_normalized": 2.0}

KNOWN_DESIGNS: dict[str, dict[str, Any]] = {
    "pasilla_rnai_knockdown": {
        "control": "untreated",
        "ko_genes": {"treated": "FBgn0261552"},  # ps (pasilla), FlyBase id = the data set's var_names
        "ko_symbols": {"FBgn0261552": "ps"},
        "pair_by": ["type"],
    },
    "foxa2_ko_panc1": {
        "control": "PANC1.WT",
        "ko_genes": {"PANC1.FOXA2KO": "FOXA2"},
        "pair_by": [],
        "nan_policy": "drop_genes",
    },
}
"""Designs of the real knockout sets whose cards have no ``[knockout]`` table."""


def two_fold_threshold(base: float) -> float:
    """``log_base(2)``: a two-fold change on a log scale of base ``base`` (e: 0.693; 2: 1.0).

    The one definition of "changed" shared by the suite's 3-class labels and by models that
    classify changed genes (CGC's two-step knockout head reads ``uns["log_base"]``).
    """
    return float(np.log(2.0) / np.log(base))


def classify_3(log_fc: np.ndarray, base: float) -> np.ndarray:
    """3-class labels from log fold changes: ``|log_fc| > two_fold_threshold(base)``."""
    t = two_fold_threshold(base)
    return np.where(log_fc > t, "up", np.where(log_fc < -t, "down", "unchanged"))


def classify_5(log_fc: np.ndarray, base: float) -> np.ndarray:
    """5-class labels from log fold changes (see the module docstring)."""
    fc = np.power(base, log_fc)
    return np.select(
        [fc > 5.0, fc > 2.0, fc < 0.2, fc < 0.5],
        ["up_5x", "up_2x", "down_5x", "down_2x"],
        default="none",
    )


def _pearson(x: np.ndarray, y: np.ndarray) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(pearsonr(x, y)[0])


def knockout_metrics(
    before: np.ndarray, after: np.ndarray, pred: np.ndarray, base: float
) -> tuple[dict[str, float], dict[str, pd.DataFrame]]:
    """All metrics of the module docstring for ``(n_pairs, n_genes)`` log-value arrays."""
    before, after, pred = (np.asarray(a, dtype=np.float64) for a in (before, after, pred))
    mse = ((pred - after) ** 2).mean(axis=1)
    pearson = np.array([_pearson(p, a) for p, a in zip(pred, after, strict=True)])
    delta = np.array([_pearson(p - b, a - b) for p, a, b in zip(pred, after, before, strict=True)])
    undefined = np.isnan(delta)
    metrics = {
        "mse": float(mse.mean()),
        "pearson": float(np.nan_to_num(pearson, nan=0.0).mean()),
        "pearson_delta": float(np.where(undefined, 0.0, delta).mean()),
        "n_pairs_pearson_delta_undefined": float(undefined.sum()),
        "n_test_pairs": float(len(before)),
    }
    tables: dict[str, pd.DataFrame] = {}
    for name, fn, classes in (("3class", classify_3, CLASSES_3), ("5class", classify_5, CLASSES_5)):
        true = fn(after - before, base).ravel()
        hat = fn(pred - before, base).ravel()
        metrics[f"accuracy_{name}"] = float(accuracy_score(true, hat))
        metrics[f"f1_macro_{name}"] = float(f1_score(true, hat, average="macro", zero_division=0))
        conf = pd.crosstab(pd.Categorical(true, classes), pd.Categorical(hat, classes), dropna=False)
        conf.index.name, conf.columns.name = "observed", "predicted"
        tables[f"confusion_{name}"] = conf
    metrics["frac_changed_observed"] = float((classify_3(after - before, base) != "unchanged").mean())
    tables["per_pair"] = pd.DataFrame(
        {"mse": mse, "pearson": pearson, "pearson_delta": np.where(undefined, np.nan, delta)}
    )
    return metrics, tables


def drop_nan_genes(
    X: np.ndarray, var_names: pd.Index, policy: str, where: str
) -> tuple[np.ndarray, pd.Index, int]:
    """Apply ``nan_policy`` to a dense matrix; return the kept matrix, genes and the number dropped."""
    bad = np.isnan(X).any(axis=0)
    if not bad.any():
        return X, var_names, 0
    if policy != "drop_genes":
        raise InputError(
            f"{where}: {int(np.isnan(X).sum())} NaN values in {int(bad.sum())} genes; pass the suite option "
            "nan_policy=drop_genes to drop those genes (recorded in the task params) or impute them first"
        )
    log.warning("%s: dropping %d genes with NaN values (nan_policy=drop_genes)", where, int(bad.sum()))
    return X[:, ~bad], var_names[~bad], int(bad.sum())


class BulkKnockoutSuite(Suite):
    """Predict post-knockout bulk profiles: regression and 3/5-class fold-change metrics."""

    name = "bulk-knockout"
    description = "Bulk profile after a gene knockout from the profile before it (SPEC §5.6)."
    required_kinds = frozenset({TaskKind.BULK_KNOCKOUT})
    headline_metrics = (
        "mse",
        "pearson",
        "pearson_delta",
        "accuracy_3class",
        "f1_macro_3class",
        "f1_macro_5class",
    )
    higher_is_better = {m: m != "mse" for m in (*headline_metrics, "accuracy_5class")}
    default_datasets = ("sergio_bulk_ko", "pasilla_rnai_knockdown", "foxa2_ko_panc1")
    quick_datasets = ("pasilla_rnai_knockdown",)
    controls = ("no-change", "train-mean-shift")

    def __init__(self, *, quick: bool = False, options: dict[str, Any] | None = None) -> None:
        super().__init__(quick=quick, options=options)
        self.options.setdefault("split", "auto")  # auto | by_ko_gene | leave_one_pair_out
        self.options.setdefault("test_fraction", 0.25)

    # -- preparation -------------------------------------------------------------------------
    def design(self, card: Any, where: str) -> dict[str, Any]:
        """The knockout design: suite option ``knockout`` > card ``[knockout]`` > :data:`KNOWN_DESIGNS`."""
        design = self.options.get("knockout") or card.extra.get("knockout") or KNOWN_DESIGNS.get(card.name)
        if not isinstance(design, Mapping) or "control" not in design:
            raise InputError(
                f"{where}: dataset {card.name} has no knockout design; add a [knockout] table to its card "
                "(control = CONTROL_VALUE, ko_gene_key = OBS_COLUMN or ko_genes = {CONDITION = GENE}, "
                "pair_by = [OBS_COLUMNS])"
            )
        if not (design.get("ko_gene_key") or design.get("ko_genes")):
            raise InputError(f"{where}: the knockout design of {card.name} needs ko_gene_key or ko_genes")
        return dict(design)

    def prepare(self, adata: ad.AnnData, card: Any, seed: int) -> TaskData:
        """Log-transform, drop NaN genes if asked, build before/after pairs and the split."""
        meta = adata.uns["cgcbench"]
        where = str(meta["dataset"].get("path", card.name))
        design = self.design(card, where)
        key = design.get("condition_key") or meta.get("condition_key")
        if not key or key not in adata.obs:
            raise InputError(f"{where}: no condition column {key!r} in obs; set condition_key in the card")
        kind = meta["dataset"].get("expression_kind", "counts")
        if kind not in LOG_BASE:
            raise InputError(
                f"{where}: expression_kind={kind!r}; the bulk-knockout suite needs counts or log values"
            )
        policy = self.options.get("nan_policy") or design.get("nan_policy", "error")
        X = adata.X.toarray() if sp.issparse(adata.X) else np.asarray(adata.X)
        X, genes, n_dropped = drop_nan_genes(X.astype(np.float64), adata.var_names, policy, where)
        n_dropped += int(meta.get("nan_genes_dropped", 0))
        dataset = dict(meta["dataset"])
        params: dict[str, Any] = {"nan_policy": policy, "n_genes_dropped_nan": n_dropped, "log_base": "e"}
        if kind == "counts":
            tmp = ad.AnnData(X.astype(np.float32))
            sc.pp.normalize_total(tmp, target_sum=1e6)
            sc.pp.log1p(tmp)
            X = np.asarray(tmp.X, dtype=np.float64)
            dataset["expression_kind"] = "log1p_normalized"
            params["normalised_by_suite"] = "log1p(CPM)"
        elif kind == "log2_normalized":
            params["log_base"] = "2"
        pairs = self._declare_base(self._pairs(adata.obs, X, genes, design, key, where), LOG_BASE[kind])
        ko = pairs.obs.loc[pairs.obs["state"] == "after", "ko_gene"]
        folds, split_kind = self._split(ko, seed)
        params |= {
            "condition_key": key,
            "control": design["control"],
            "pair_by": list(design.get("pair_by", [])),
            "n_pairs": int(len(ko)),
            "ko_genes": sorted({str(g) for g in ko}),
            "ko_genes_missing_from_var": sorted({str(g) for g in ko} - set(genes)),
            "split": split_kind,
            "n_folds": len(folds),
            "n_genes": int(len(genes)),
        }
        if design.get("ko_symbols"):
            params["ko_symbols"] = dict(design["ko_symbols"])
        return TaskData(
            dataset=dataset,
            payload={"pairs": pairs, "folds": folds, "base": LOG_BASE[kind]},
            params=params,
        )

    @staticmethod
    def _pairs(
        obs: pd.DataFrame, X: np.ndarray, genes: pd.Index, design: dict[str, Any], key: str, where: str
    ) -> ad.AnnData:
        cond = obs[key].astype(str).to_numpy()
        control = str(design["control"])
        is_ctrl = cond == control
        if not is_ctrl.any():
            raise InputError(f"{where}: no control samples (obs[{key!r}] == {control!r})")
        pair_by = list(design.get("pair_by", []))
        for col in pair_by:
            if col not in obs:
                raise InputError(f"{where}: knockout pair_by column {col!r} is not in obs")
        if design.get("ko_gene_key"):
            ko_of = obs[design["ko_gene_key"]].astype(str).to_numpy()
        else:
            mapping = {str(k): str(v) for k, v in design["ko_genes"].items()}
            unknown = sorted(set(cond[~is_ctrl]) - set(mapping))
            if unknown:
                raise InputError(
                    f"{where}: conditions {unknown} have no knocked-out gene in the design's ko_genes"
                )
            ko_of = np.array([mapping.get(c, "") for c in cond])
        groups = (
            obs[pair_by].astype(str).agg("|".join, axis=1).to_numpy() if pair_by else np.full(len(obs), "")
        )
        rows, values = [], []
        for i in np.flatnonzero(~is_ctrl):
            ctrl_idx = np.flatnonzero(is_ctrl & (groups == groups[i]))
            if len(ctrl_idx) == 0:
                raise InputError(
                    f"{where}: knockout sample {obs.index[i]} has no control sample with the same "
                    f"{', '.join(pair_by)}; change the design's pair_by"
                )
            pid = f"pair{len(rows) // 2:04d}"
            extra = {c: str(obs.iloc[i][c]) for c in pair_by}
            rows.append({"pair_id": pid, "state": "before", "ko_gene": ko_of[i], "sample": "", **extra})
            values.append(X[ctrl_idx].mean(axis=0))
            rows.append(
                {"pair_id": pid, "state": "after", "ko_gene": ko_of[i], "sample": str(obs.index[i]), **extra}
            )
            values.append(X[i])
        frame = pd.DataFrame(rows)
        frame.index = [f"{r.pair_id}_{r.state}" for r in frame.itertuples()]
        return ad.AnnData(X=np.vstack(values).astype(np.float32), obs=frame, var=pd.DataFrame(index=genes))

    @staticmethod
    def _declare_base(pairs: ad.AnnData, base: float) -> ad.AnnData:
        pairs.uns["log_base"] = float(base)
        return pairs

    def _split(self, ko: pd.Series, seed: int) -> tuple[list[tuple[list[str], list[str]]], str]:
        pair_ids = [p.split("_")[0] for p in ko.index]
        genes = sorted(set(ko))
        mode = self.options["split"]
        if mode == "auto":
            mode = "by_ko_gene" if len(genes) >= 4 else "leave_one_pair_out"
        if mode == "leave_one_pair_out":
            if len(pair_ids) < 2:
                raise InputError("leave_one_pair_out needs at least 2 knockout pairs")
            return [([p for p in pair_ids if p != t], [t]) for t in pair_ids], mode
        if mode != "by_ko_gene":
            raise InputError(f"split={mode!r}; use auto, by_ko_gene or leave_one_pair_out")
        if len(genes) < 2:
            raise InputError("split=by_ko_gene needs at least 2 distinct knocked-out genes")
        rng = np.random.default_rng(seed)
        n_test = min(len(genes) - 1, max(1, round(float(self.options["test_fraction"]) * len(genes))))
        test_genes = set(rng.choice(genes, size=n_test, replace=False).tolist())
        test = [p for p, g in zip(pair_ids, ko, strict=True) if g in test_genes]
        train = [p for p, g in zip(pair_ids, ko, strict=True) if g not in test_genes]
        return [(train, test)], mode

    # -- evaluation ---------------------------------------------------------------------------
    def run(self, adapter: ModelAdapter, task: TaskData, seed: int, workdir: Path) -> SuiteResult:
        """Fit and predict per fold; score the pooled test pairs."""
        pairs: ad.AnnData = task.payload["pairs"]
        pid = pairs.obs["pair_id"].to_numpy()
        befores, afters, preds, ids = [], [], [], []
        for train_ids, test_ids in task.payload["folds"]:
            adapter.fit_knockout(pairs[np.isin(pid, train_ids)].copy(), ko_key="ko_gene")  # type: ignore[attr-defined]
            test_before = pairs[np.isin(pid, test_ids) & (pairs.obs["state"] == "before").to_numpy()].copy()
            test_after = pairs[np.isin(pid, test_ids) & (pairs.obs["state"] == "after").to_numpy()]
            test_after = test_after[[f"{p}_after" for p in test_before.obs["pair_id"]]]
            pred = np.asarray(
                adapter.predict_knockout(test_before, test_before.obs["ko_gene"].tolist()),  # type: ignore[attr-defined]
                dtype=np.float64,
            )
            if pred.shape != test_before.shape:
                raise RuntimeError(
                    f"{adapter.name}.predict_knockout returned shape {pred.shape}, "
                    f"expected {test_before.shape}"
                )
            if not np.isfinite(pred).all():
                raise RuntimeError(f"{adapter.name}.predict_knockout returned NaN or infinite values")
            befores.append(np.asarray(test_before.X, dtype=np.float64))
            afters.append(np.asarray(test_after.X, dtype=np.float64))
            preds.append(pred)
            ids += test_before.obs["pair_id"].tolist()
        metrics, tables = knockout_metrics(
            np.vstack(befores), np.vstack(afters), np.vstack(preds), task.payload["base"]
        )
        per_pair = tables["per_pair"]
        per_pair.insert(0, "pair_id", ids)
        per_pair.insert(
            1,
            "ko_gene",
            pairs.obs.set_index("pair_id").loc[ids].query("state == 'after'")["ko_gene"].to_numpy(),
        )
        workdir.mkdir(parents=True, exist_ok=True)
        label = f"{adapter.info().label} on {task.dataset['name']} (seed {seed})"
        artifacts = []
        for name in ("3class", "5class") if plots_enabled() else ():
            path = confusion_matrix_plot(
                tables[f"confusion_{name}"], workdir / f"confusion_{name}.png", f"{label}, {name}"
            )
            artifacts.append(Artifact(path, "plot", f"{name} fold-change confusion matrix (rows: observed)"))
        csv = workdir / "per_pair_metrics.csv"
        per_pair.to_csv(csv, index=False)
        artifacts.append(Artifact(csv, "table", "regression metrics per test pair"))
        return SuiteResult(metrics=metrics, artifacts=artifacts, tables=tables)


def pairs_from_profiles(
    before: np.ndarray, after: np.ndarray, genes: Sequence[str], ko_genes: Sequence[str]
) -> ad.AnnData:
    """Build the paired AnnData an adapter's ``fit_knockout`` receives from two aligned matrices."""
    n = len(before)
    obs = pd.DataFrame(
        {
            "pair_id": [f"pair{i:04d}" for i in range(n)] * 2,
            "state": ["before"] * n + ["after"] * n,
            "ko_gene": list(ko_genes) * 2,
        }
    )
    obs.index = [f"{p}_{s}" for p, s in zip(obs["pair_id"], obs["state"], strict=True)]
    return ad.AnnData(
        X=np.vstack([before, after]).astype(np.float32), obs=obs, var=pd.DataFrame(index=list(genes))
    )
