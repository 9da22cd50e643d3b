"""``majority``: predicts the most frequent reference label for every query cell (a control)."""

from __future__ import annotations

from typing import Any

import anndata as ad
import numpy as np

from benchmarks.interface import AnnotationMixin, Capabilities, Init, ModelAdapter, TaskKind


class MajorityAdapter(ModelAdapter, AnnotationMixin):
    """The annotation floor: accuracy equals the query share of the reference's top label.

    Ties between equally frequent labels are broken by label name, so results are
    deterministic.
    """

    name = "majority"
    description = "Control: predicts the most frequent reference label."
    is_control = True
    capabilities = Capabilities(task_kinds=frozenset({TaskKind.ANNOTATION}))

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.label_: str | None = None

    @property
    def init(self) -> Init:
        """A control has no weights."""
        return "none"

    def fit_classifier(self, reference: ad.AnnData, label_key: str) -> None:
        """Remember the most frequent label of the reference."""
        counts = reference.obs[label_key].astype(str).value_counts()
        top = counts[counts == counts.max()].index
        self.label_ = sorted(top)[0]

    def predict_labels(self, query: ad.AnnData) -> np.ndarray:
        """The remembered label for every query cell."""
        if self.label_ is None:
            raise RuntimeError("MajorityAdapter.predict_labels called before fit_classifier")
        return np.full(query.n_obs, self.label_, dtype=object)
