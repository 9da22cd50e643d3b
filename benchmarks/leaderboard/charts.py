"""Inline SVG bar charts (mean with ± sd error bars), so the site needs no plotting library."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from html import escape


@dataclass(frozen=True)
class Bar:
    """One bar: a model's mean and sd over seeds."""

    label: str
    mean: float
    sd: float
    is_control: bool = False
    best: bool = False


def _fmt(x: float) -> str:
    return f"{x:.3g}"


def bar_chart(metric: str, bars: Sequence[Bar], higher_is_better: bool = True, width: int = 420) -> str:
    """A horizontal bar chart of ``bars`` as an SVG string.

    Parameters
    ----------
    metric
        Title of the chart.
    bars
        One bar per model; controls are drawn grey and hatched, the best model dark.
    higher_is_better
        Shown in the title as ↑ or ↓.
    width
        Total width in pixels.

    """
    label_w, value_w, row_h, top = 150, 56, 20, 26
    plot_w = width - label_w - value_w
    lows = [b.mean - b.sd for b in bars] + [0.0]
    highs = [b.mean + b.sd for b in bars] + [0.0]
    lo, hi = min(lows), max(highs)
    if hi - lo < 1e-12:
        hi = lo + 1.0

    def x(v: float) -> float:
        return label_w + (v - lo) / (hi - lo) * plot_w

    height = top + row_h * len(bars) + 18
    arrow = "↑" if higher_is_better else "↓"
    parts = [
        f'<svg class="chart" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{escape(metric)}: mean ± sd over seeds">',
        f'<text x="4" y="15" class="ct">{escape(metric)} {arrow} <tspan class="cs">mean ± sd</tspan></text>',
    ]
    x0 = x(0.0)
    for i, b in enumerate(bars):
        y = top + i * row_h
        cls = "bc" if b.is_control else ("bb" if b.best else "bm")
        left, right = sorted((x0, x(b.mean)))
        bar_w = max(right - left, 0.8)
        parts.append(
            f'<text x="{label_w - 6}" y="{y + 13}" class="cl" text-anchor="end">{escape(b.label[:24])}</text>'
            f'<rect class="{cls}" x="{left:.1f}" y="{y + 3}" width="{bar_w:.1f}" height="{row_h - 6}">'
            f"<title>{escape(b.label)}: {_fmt(b.mean)} ± {_fmt(b.sd)}</title></rect>"
        )
        if b.sd > 0:
            e0, e1, ym = x(b.mean - b.sd), x(b.mean + b.sd), y + row_h / 2
            parts.append(
                f'<path class="eb" d="M{e0:.1f},{ym:.1f}H{e1:.1f}M{e0:.1f},{ym - 4:.1f}V{ym + 4:.1f}'
                f'M{e1:.1f},{ym - 4:.1f}V{ym + 4:.1f}"/>'
            )
        parts.append(f'<text x="{width - value_w + 4}" y="{y + 13}" class="cv">{_fmt(b.mean)}</text>')
    axis_y = top + row_h * len(bars) + 2
    parts.append(
        f'<path class="ax" d="M{x0:.1f},{top - 2}V{axis_y}M{label_w},{axis_y}H{label_w + plot_w}"/>'
        f'<text x="{label_w}" y="{axis_y + 13}" class="cs">{_fmt(lo)}</text>'
        f'<text x="{label_w + plot_w}" y="{axis_y + 13}" class="cs" text-anchor="end">{_fmt(hi)}</text>'
    )
    parts.append("</svg>")
    return "".join(parts)


def _cell_colour(value: float) -> str:
    """White (≤ 0, the negative control) → green (1, the positive control) → dark green (> 1)."""
    v = min(max(value, 0.0), 1.25) / 1.25
    r, g, b = (int(255 + (c1 - 255) * v) for c1 in (11, 107, 58))
    return f"#{r:02x}{g:02x}{b:02x}"


def heatmap(
    methods: Sequence[str],
    suites: Sequence[str],
    values: dict[tuple[str, str], tuple[float, int]],
    controls: frozenset[str] = frozenset(),
    title: str = "",
) -> str:
    """A methods × suites table of control-scaled scores as an SVG string.

    Parameters
    ----------
    methods, suites
        Row and column labels, in display order.
    values
        ``(method, suite)`` → (mean scaled score over the suite's datasets, number of datasets);
        a missing pair is drawn as an empty grey cell ("not run").
    controls
        Methods drawn in italics (controls).
    title
        Caption above the table.

    """
    label_w, cell_w, cell_h, top = 220, 104, 22, 58
    width = label_w + cell_w * len(suites) + 10
    height = top + cell_h * len(methods) + 30
    parts = [
        f'<svg class="chart summary" id="summary-figure" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title or "summary")}">',
        f'<text x="4" y="16" class="ct">{escape(title)}</text>',
    ]
    for j, suite in enumerate(suites):
        x = label_w + j * cell_w + cell_w / 2
        parts.append(
            f'<text x="{x:.0f}" y="{top - 8}" class="cl" text-anchor="middle">{escape(suite)}</text>'
        )
    for i, method in enumerate(methods):
        y = top + i * cell_h
        style = ' font-style="italic"' if method in controls else ""
        parts.append(
            f'<text x="{label_w - 6}" y="{y + 15}" class="cl" text-anchor="end"{style}>'
            f"{escape(method[:34])}</text>"
        )
        for j, suite in enumerate(suites):
            x = label_w + j * cell_w
            cell = values.get((method, suite))
            if cell is None:
                parts.append(
                    f'<rect class="hm-empty" x="{x + 1}" y="{y + 1}" width="{cell_w - 2}" '
                    f'height="{cell_h - 2}" '
                    f'fill="#f1f1f1"><title>{escape(method)} · {escape(suite)}: not scored</title></rect>'
                )
                continue
            score, n = cell
            text_fill = "#fff" if score > 0.7 else "#1d232a"
            parts.append(
                f'<rect class="hm-cell" data-method="{escape(method)}" data-suite="{escape(suite)}" '
                f'x="{x + 1}" y="{y + 1}" width="{cell_w - 2}" height="{cell_h - 2}" '
                f'fill="{_cell_colour(score)}">'
                f"<title>{escape(method)} · {escape(suite)}: {score:.2f} (mean over {n} dataset"
                f"{'' if n == 1 else 's'})</title></rect>"
                f'<text x="{x + cell_w / 2:.0f}" y="{y + 15}" class="cv" text-anchor="middle" '
                f'fill="{text_fill}">'
                f"{score:.2f}</text>"
            )
    parts.append(
        f'<text x="4" y="{height - 8}" class="cs">0 = negative control, 1 = positive control '
        "(per dataset, then averaged over the suite's ranked datasets); grey: not scored</text></svg>"
    )
    return "".join(parts)
