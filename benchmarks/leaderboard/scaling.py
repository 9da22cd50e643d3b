"""Control-scaled scores, as Open Problems computes them.

Per dataset and metric, a raw value ``x`` becomes ``(x − neg) / (pos − neg)`` where ``neg`` and
``pos`` are the mean scores of the suite's negative and positive controls
(:data:`benchmarks.leaderboard.definitions.REFERENCES`). The negative control scores 0 and the
positive 1 whichever way the metric points, so scaled scores of different metrics can be
averaged. When the positive control scores *worse* than the negative one on a metric, the
better of the two is taken as 1 (Open Problems v1 uses the min and max over its controls
likewise), so a higher scaled score is always better.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Scale:
    """Maps raw values of one metric on one dataset to control-scaled scores."""

    zero: float
    """Raw value scaled to 0 (the worse reference)."""
    one: float
    """Raw value scaled to 1 (the better reference)."""
    swapped: bool = False
    """Whether the positive control scored worse than the negative one."""

    def __call__(self, value: float) -> float:
        """The scaled score of ``value``."""
        return (float(value) - self.zero) / (self.one - self.zero)


def reference_scale(
    negative: Sequence[float], positive: Sequence[float], higher_is_better: bool
) -> Scale | None:
    """The scale between the means of the negative and positive control values.

    Parameters
    ----------
    negative, positive
        Mean scores of the negative and positive controls on the dataset (one per control).
    higher_is_better
        The metric's direction.

    Returns
    -------
    Scale or None
        ``None`` when a reference is missing, not finite, or both are equal (nothing to scale
        between).

    """
    if not negative or not positive:
        return None
    neg = math.fsum(negative) / len(negative)
    pos = math.fsum(positive) / len(positive)
    finite = math.isfinite(neg) and math.isfinite(pos)
    if not finite or math.isclose(neg, pos, rel_tol=1e-12, abs_tol=1e-12):
        return None
    pos_better = pos > neg if higher_is_better else pos < neg
    return Scale(neg, pos) if pos_better else Scale(pos, neg, swapped=True)
