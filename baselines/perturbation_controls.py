"""Controls for the perturbation and bulk-knockout suites.

Independent benchmarks of perturbation-response models (Ahlmann-Eltze, Huber & Anders 2024,
"Deep learning-based predictions of gene perturbation effects do not yet outperform simple
linear baselines"; Csendes et al. 2024) found these hard to beat, so every results table has them:

``no-change``
    Predicts the control: the mean of the given control cells (perturbation) or the
    pre-knockout profile itself (bulk knockout). Its predicted change is exactly zero, so
    ``pearson_delta`` is undefined (GEARS scores it 0).
``train-mean``
    Predicts, for every condition, the mean expression of all perturbed training cells.
``linear``
    Additive single-gene effects: ``ctrl + Σ_g effect(g)`` where ``effect(g)`` is the mean of
    the training cells of the single perturbation of ``g`` minus the training control mean;
    a gene without a training single perturbation gets the mean single-perturbation effect
    (the mean shift of all training single-perturbation cells; of all perturbed cells when
    training has no singles).
``train-mean-shift``
    Bulk knockout: ``before + mean(after − before)`` over the training pairs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from benchmarks.interface import (
    BulkKnockoutMixin,
    Capabilities,
    Init,
    ModelAdapter,
    PerturbationMixin,
    TaskKind,
)

CTRL = "ctrl"


def condition_genes(condition: str) -> list[str]:
    """Genes of a GEARS-style condition: ``"A+ctrl"`` → ``["A"]``, ``"A+B"`` → ``["A", "B"]``."""
    return [g for g in str(condition).split("+") if g and g != CTRL]


def dense_mean(adata: ad.AnnData) -> np.ndarray:
    """Mean expression per gene (float64) of the cells of ``adata``."""
    X = adata.X
    if adata.n_obs == 0:
        raise ValueError("cannot average zero cells")
    if sp.issparse(X):
        return np.asarray(X.mean(axis=0, dtype=np.float64)).ravel()
    return np.asarray(X, dtype=np.float64).mean(axis=0)


def dense(X: Any) -> np.ndarray:
    """A float64 dense copy of a (sparse) matrix."""
    return np.asarray(X.toarray() if sp.issparse(X) else X, dtype=np.float64)


class _Control(ModelAdapter):
    is_control = True

    @property
    def init(self) -> Init:
        """Controls have no weights."""
        return "none"


class NoChangeAdapter(_Control, PerturbationMixin, BulkKnockoutMixin):
    """Predicts no change: the control mean, or the pre-knockout profile."""

    name = "no-change"
    description = "Control: predicts the control mean (perturbation) / the pre-knockout profile (bulk)."
    capabilities = Capabilities(task_kinds=frozenset({TaskKind.PERTURBATION, TaskKind.BULK_KNOCKOUT}))

    def fit_perturbation(self, train: ad.AnnData, condition_key: str = "condition") -> None:
        """Nothing to learn."""

    def predict_perturbation(self, control: ad.AnnData, conditions: Sequence[str]) -> pd.DataFrame:
        """The mean of ``control`` for every condition."""
        mean = dense_mean(control)
        return pd.DataFrame(
            np.tile(mean, (len(conditions), 1)), index=list(conditions), columns=control.var_names
        )

    def fit_knockout(self, train: ad.AnnData, ko_key: str = "ko_gene") -> None:
        """Nothing to learn."""

    def predict_knockout(self, before: ad.AnnData, ko_genes: Sequence[str]) -> np.ndarray:
        """The pre-knockout profiles unchanged."""
        return dense(before.X)


class TrainMeanAdapter(_Control, PerturbationMixin):
    """Predicts the mean of all perturbed training cells for every condition."""

    name = "train-mean"
    description = "Control: predicts the mean of all perturbed training cells."
    capabilities = Capabilities(task_kinds=frozenset({TaskKind.PERTURBATION}))

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.mean_: pd.Series | None = None

    def fit_perturbation(self, train: ad.AnnData, condition_key: str = "condition") -> None:
        """Average the perturbed (non-control) training cells."""
        perturbed = train[train.obs[condition_key].astype(str).to_numpy() != CTRL]
        if perturbed.n_obs == 0:
            raise ValueError("train-mean: the training data has no perturbed cells")
        self.mean_ = pd.Series(dense_mean(perturbed), index=train.var_names)

    def predict_perturbation(self, control: ad.AnnData, conditions: Sequence[str]) -> pd.DataFrame:
        """The training perturbed-cell mean for every condition."""
        if self.mean_ is None:
            raise RuntimeError("TrainMeanAdapter.predict_perturbation called before fit_perturbation")
        mean = self.mean_.reindex(control.var_names).to_numpy()
        return pd.DataFrame(
            np.tile(mean, (len(conditions), 1)), index=list(conditions), columns=control.var_names
        )


class LinearAdditiveAdapter(_Control, PerturbationMixin):
    """Control mean plus the sum of the single-gene effects seen in training."""

    name = "linear"
    description = "Control: ctrl + sum of single-gene training effects (mean shift for unseen genes)."
    capabilities = Capabilities(task_kinds=frozenset({TaskKind.PERTURBATION}))

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.effects_: dict[str, np.ndarray] = {}
        self.fallback_: np.ndarray | None = None
        self.genes_: pd.Index | None = None

    def fit_perturbation(self, train: ad.AnnData, condition_key: str = "condition") -> None:
        """Single-gene effects = single-condition mean − control mean (training cells)."""
        cond = train.obs[condition_key].astype(str).to_numpy()
        is_ctrl = cond == CTRL
        if not is_ctrl.any():
            raise ValueError(f"linear: the training data has no {CTRL!r} cells in obs[{condition_key!r}]")
        ctrl = dense_mean(train[is_ctrl])
        singles = np.array([len(condition_genes(c)) == 1 for c in cond]) & ~is_ctrl
        self.effects_ = {}
        by_gene: dict[str, list[int]] = {}
        for i in np.flatnonzero(singles):
            by_gene.setdefault(condition_genes(cond[i])[0], []).append(int(i))
        for gene, idx in sorted(by_gene.items()):
            self.effects_[gene] = dense_mean(train[idx]) - ctrl
        pool = singles if singles.any() else ~is_ctrl
        self.fallback_ = dense_mean(train[pool]) - ctrl if pool.any() else np.zeros(train.n_vars)
        self.genes_ = train.var_names.copy()

    def predict_perturbation(self, control: ad.AnnData, conditions: Sequence[str]) -> pd.DataFrame:
        """``mean(control) + Σ effect(gene)`` for each condition."""
        if self.fallback_ is None or self.genes_ is None:
            raise RuntimeError("LinearAdditiveAdapter.predict_perturbation called before fit_perturbation")
        pos = self.genes_.get_indexer(control.var_names)
        base = dense_mean(control)
        rows = []
        for c in conditions:
            shift = sum(
                (self.effects_.get(g, self.fallback_) for g in condition_genes(c)), np.zeros(len(self.genes_))
            )
            rows.append(base + np.where(pos >= 0, shift[pos], 0.0))
        return pd.DataFrame(np.vstack(rows), index=list(conditions), columns=control.var_names)

    def extra_metrics(self) -> dict[str, float]:
        """How many single-gene effects were learnt."""
        return {"linear_n_single_effects": float(len(self.effects_))}


class TrainMeanShiftAdapter(_Control, BulkKnockoutMixin):
    """Bulk knockout: the pre-knockout profile plus the mean training change."""

    name = "train-mean-shift"
    description = "Control: before + mean(after - before) over the training pairs."
    capabilities = Capabilities(task_kinds=frozenset({TaskKind.BULK_KNOCKOUT}))

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.shift_: pd.Series | None = None

    def fit_knockout(self, train: ad.AnnData, ko_key: str = "ko_gene") -> None:
        """Average ``after − before`` over the pairs (``obs['pair_id']``, ``obs['state']``)."""
        X = pd.DataFrame(dense(train.X), index=train.obs_names, columns=train.var_names)
        obs = train.obs
        before = X[obs["state"].to_numpy() == "before"].set_axis(obs.loc[obs["state"] == "before", "pair_id"])
        after = X[obs["state"].to_numpy() == "after"].set_axis(obs.loc[obs["state"] == "after", "pair_id"])
        pairs = before.index.intersection(after.index)
        if len(pairs) == 0:
            raise ValueError("train-mean-shift: the training data has no complete before/after pair")
        self.shift_ = (after.loc[pairs] - before.loc[pairs]).mean(axis=0)

    def predict_knockout(self, before: ad.AnnData, ko_genes: Sequence[str]) -> np.ndarray:
        """``before + shift``."""
        if self.shift_ is None:
            raise RuntimeError("TrainMeanShiftAdapter.predict_knockout called before fit_knockout")
        return dense(before.X) + self.shift_.reindex(before.var_names).fillna(0.0).to_numpy()[None, :]
