"""Pictures of a QA frame: metric distributions with flagged rows marked, and the worst rows.

The default path is plain inline SVG (histograms with a strip of one dot per pair, flagged
pairs in red, the flag limit as a dashed line, a tooltip naming each dot), so it needs no
plotting library and renders in a notebook, a saved notebook on GitHub, and a mailed HTML
report alike. :func:`distribution_figure` draws the same with matplotlib when the ``plots``
extra is installed.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from skinfix_nb.quality.flags import QAThresholds, resolve_thresholds

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "PLOTTED",
    "DistributionPlots",
    "Plotted",
    "distribution_figure",
    "distribution_svg",
    "histogram_svg",
    "plot",
    "worst_rows",
]

_RED = "#cf222e"
_GREY = "#8c959f"
_INK = "#24292f"
_FONT = "font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif"


@dataclass(frozen=True)
class Plotted:
    """One metric drawn as a distribution.

    ``limit`` names the :class:`QAThresholds` field drawn as a dashed line, if any.
    """

    column: str
    title: str
    limit: str | None = None


PLOTTED = (
    Plotted("qa_ssim", "SSIM (luma)"),
    Plotted("qa_skin_change", "Change on skin (levels)"),
    Plotted("qa_background_altered_pct", "Background altered (% pixels)", "background_altered_pct"),
    Plotted("qa_feature_sharpness_ratio", "Eyes/lips sharpness kept", "feature_sharpness_ratio"),
    Plotted("qa_sharpness_ratio", "Whole-image sharpness kept", "sharpness_ratio"),
    Plotted("qa_chroma_shift", "Colour cast |Δa, Δb|", "chroma_shift"),
)
"""The distributions drawn, in order. ``qa_chroma_shift`` is derived from Δa and Δb."""


def histogram_svg(
    values: Sequence[float],
    *,
    title: str,
    flagged: Sequence[bool] | None = None,
    names: Sequence[str] | None = None,
    limit: float | None = None,
    bins: int = 20,
    width: int = 320,
    height: int = 150,
) -> str:
    """An inline SVG histogram with one dot per value underneath.

    Parameters
    ----------
    values : sequence of float
        NaN values are left out (and counted in the caption); infinities likewise.
    title : str
        Shown above the plot.
    flagged : sequence of bool, optional
        Values drawn in red (stacked on top in the bars, red dots in the strip).
    names : sequence of str, optional
        Tooltip of each dot (e.g. the run id).
    limit : float, optional
        Drawn as a dashed vertical line.
    """
    data = np.asarray(values, dtype=np.float64)
    marks = np.asarray(flagged if flagged is not None else [False] * len(data), dtype=bool)
    labels = list(names) if names is not None else [str(i) for i in range(len(data))]
    finite = np.isfinite(data)
    shown, shown_marks = data[finite], marks[finite]
    shown_names = [labels[i] for i in np.flatnonzero(finite)]
    left, right, top = 10.0, 10.0, 22.0
    bars_h, strip_h = height - top - 44.0, 18.0
    plot_w = width - left - right
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="skinfix-plot" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="{html.escape(title)}" style="{_FONT};font-size:11px">',
        f'<text x="{left}" y="14" fill="{_INK}" font-weight="600">{html.escape(title)}</text>',
    ]
    if shown.size == 0:
        parts.append(f'<text x="{left}" y="{top + 30}" fill="{_GREY}">no measured pairs</text>')
        parts.append("</svg>")
        return "".join(parts)
    low, high = _range(shown, limit)
    edges = np.linspace(low, high, bins + 1)
    plain_counts, _ = np.histogram(shown[~shown_marks], bins=edges)
    red_counts, _ = np.histogram(shown[shown_marks], bins=edges)
    tallest = max(1, int((plain_counts + red_counts).max()))
    bar_w = plot_w / bins

    def x_of(value: float) -> float:
        return left + (value - low) / (high - low) * plot_w

    base = top + bars_h
    for i in range(bins):
        x = left + i * bar_w
        plain_h = plain_counts[i] / tallest * bars_h
        red_h = red_counts[i] / tallest * bars_h
        if plain_h:
            parts.append(_rect(x, base - plain_h, bar_w, plain_h, _GREY, plain_counts[i], edges, i))
        if red_h:
            parts.append(
                _rect(x, base - plain_h - red_h, bar_w, red_h, _RED, red_counts[i], edges, i)
            )
    parts.append(
        f'<line x1="{left}" y1="{base}" x2="{width - right}" y2="{base}" stroke="{_INK}" '
        'stroke-width="0.5"/>'
    )
    for k, (value, red, name) in enumerate(zip(shown, shown_marks, shown_names, strict=True)):
        y = base + 5 + (k * 7 % 11) / 11 * (strip_h - 8)
        colour = _RED if red else _GREY
        parts.append(
            f'<circle cx="{x_of(float(value)):.1f}" cy="{y:.1f}" r="2.6" fill="{colour}" '
            f'fill-opacity="0.8"><title>{html.escape(name)}: {_fmt(float(value))}'
            f"{' (flagged)' if red else ''}</title></circle>"
        )
    if limit is not None and math.isfinite(limit):
        x = x_of(limit)
        parts.append(
            f'<line x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{base + strip_h}" stroke="{_RED}" '
            f'stroke-dasharray="4 3" stroke-width="1"><title>flag limit {_fmt(limit)}</title></line>'
        )
    axis_y = base + strip_h + 12
    parts.append(f'<text x="{left}" y="{axis_y}" fill="{_GREY}">{_fmt(low)}</text>')
    parts.append(
        f'<text x="{width - right}" y="{axis_y}" fill="{_GREY}" text-anchor="end">'
        f"{_fmt(high)}</text>"
    )
    caption = f"{shown.size} pairs, {int(shown_marks.sum())} flagged"
    hidden = int((~finite & ~np.isnan(data)).sum())
    if hidden:
        caption += f", {hidden} off scale (∞)"
    parts.append(
        f'<text x="{width / 2:.0f}" y="{axis_y}" fill="{_GREY}" text-anchor="middle">'
        f"{html.escape(caption)}</text>"
    )
    parts.append("</svg>")
    return "".join(parts)


def distribution_svg(
    df: pd.DataFrame, *, thresholds: QAThresholds | Mapping[str, float] | None = None
) -> str:
    """The :data:`PLOTTED` distributions of a QA frame as one HTML block of inline SVGs."""
    limits = resolve_thresholds(thresholds)
    frame = _with_derived(df)
    flagged = _flagged(frame)
    names = _names(frame)
    plots = []
    for plotted in PLOTTED:
        if plotted.column not in frame.columns:
            continue
        limit = float(getattr(limits, plotted.limit)) if plotted.limit else None
        plots.append(
            histogram_svg(
                pd.to_numeric(frame[plotted.column], errors="coerce").tolist(),
                title=plotted.title,
                flagged=flagged,
                names=names,
                limit=limit,
            )
        )
    return (
        '<div class="skinfix-plots" style="display:flex;flex-wrap:wrap;gap:12px">'
        + "".join(plots)
        + "</div>"
    )


class DistributionPlots:
    """The distributions of a QA frame, shown as inline SVG by IPython."""

    def __init__(
        self, df: pd.DataFrame, *, thresholds: QAThresholds | Mapping[str, float] | None = None
    ) -> None:
        self._df = df
        self._thresholds = thresholds

    def __repr__(self) -> str:
        return f"<DistributionPlots of {len(self._df)} rows>"

    def _repr_html_(self) -> str:
        return distribution_svg(self._df, thresholds=self._thresholds)


def distribution_figure(
    df: pd.DataFrame, *, thresholds: QAThresholds | Mapping[str, float] | None = None
) -> Figure:
    """The same distributions as a matplotlib figure (needs the ``plots`` extra).

    Raises
    ------
    ImportError
        matplotlib is not installed; ``pip install 'skinfix-nb[plots]'`` adds it.
    """
    try:
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise ImportError(
            "distribution_figure needs matplotlib: pip install 'skinfix-nb[plots]' "
            "(or use distribution_svg, which needs nothing)"
        ) from exc
    limits = resolve_thresholds(thresholds)
    frame = _with_derived(df)
    flagged = np.asarray(_flagged(frame), dtype=bool)
    shown = [p for p in PLOTTED if p.column in frame.columns]
    columns = 3
    rows = max(1, math.ceil(len(shown) / columns))
    figure = Figure(figsize=(4 * columns, 2.6 * rows), layout="constrained")
    axes = figure.subplots(rows, columns, squeeze=False).ravel()
    for ax, plotted in zip(axes, shown, strict=False):
        values = pd.to_numeric(frame[plotted.column], errors="coerce").to_numpy(dtype=np.float64)
        finite = np.isfinite(values)
        ax.hist(
            [values[finite & ~flagged], values[finite & flagged]],
            bins=20,
            stacked=True,
            color=[_GREY, _RED],
            label=["ok", "flagged"],
        )
        ax.plot(values[finite], np.zeros(int(finite.sum())), "|", color=_INK, markersize=8)
        if plotted.limit:
            ax.axvline(float(getattr(limits, plotted.limit)), color=_RED, linestyle="--")
        ax.set_title(plotted.title, fontsize=10)
    for ax in axes[len(shown) :]:
        ax.set_axis_off()
    return figure


def plot(
    df: pd.DataFrame,
    *,
    thresholds: QAThresholds | Mapping[str, float] | None = None,
    backend: str = "svg",
) -> DistributionPlots | Figure:
    """The QA distributions of ``df``: inline SVG (``backend="svg"``) or a matplotlib figure."""
    if backend == "svg":
        return DistributionPlots(df, thresholds=thresholds)
    if backend == "matplotlib":
        return distribution_figure(df, thresholds=thresholds)
    raise ValueError(f"backend must be 'svg' or 'matplotlib', got {backend!r}")


def worst_rows(df: pd.DataFrame, n: int = 8) -> pd.DataFrame:
    """The ``n`` measured rows that look worst: most flags first, then lowest SSIM."""
    if "qa_flag" not in df.columns:
        raise ValueError("the frame has no qa_flag column: run quality.qa_frame(df) first")
    measured = df[df["qa_flag"].notna()]
    flag_count = measured["qa_flag"].map(lambda text: len(str(text).split(",")) if text else 0)
    ssim = (
        pd.to_numeric(measured["qa_ssim"], errors="coerce")
        if "qa_ssim" in measured.columns
        else pd.Series(math.nan, index=measured.index)
    )
    order = sorted(
        range(len(measured)),
        key=lambda i: (-int(flag_count.iloc[i]), _nan_last(float(ssim.iloc[i]))),
    )
    return measured.iloc[order[: max(0, n)]]


def _with_derived(df: pd.DataFrame) -> pd.DataFrame:
    if {"qa_delta_a", "qa_delta_b"} <= set(df.columns):
        a = pd.to_numeric(df["qa_delta_a"], errors="coerce")
        b = pd.to_numeric(df["qa_delta_b"], errors="coerce")
        return df.assign(qa_chroma_shift=np.hypot(a, b))
    return df


def _flagged(df: pd.DataFrame) -> list[bool]:
    if "qa_flag" not in df.columns:
        return [False] * len(df)
    return [isinstance(v, str) and bool(v) for v in df["qa_flag"]]


def _names(df: pd.DataFrame) -> list[str]:
    if "run_id" in df.columns:
        return [str(v) if isinstance(v, str) else f"row {i}" for i, v in enumerate(df["run_id"])]
    return [str(i) for i in df.index]


def _range(values: Any, limit: float | None) -> tuple[float, float]:
    low, high = float(values.min()), float(values.max())
    if limit is not None and math.isfinite(limit):
        low, high = min(low, limit), max(high, limit)
    if high - low < 1e-9:
        pad = max(abs(low) * 0.05, 0.5)
        low, high = low - pad, high + pad
    return low, high


def _rect(
    x: float, y: float, w: float, h: float, colour: str, count: int, edges: Any, i: int
) -> str:
    return (
        f'<rect x="{x:.1f}" y="{y:.1f}" width="{max(w - 1, 0.5):.1f}" height="{h:.1f}" '
        f'fill="{colour}"><title>{count} between {_fmt(float(edges[i]))} and '
        f"{_fmt(float(edges[i + 1]))}</title></rect>"
    )


def _fmt(value: float) -> str:
    return f"{value:.3g}"


def _nan_last(value: float) -> float:
    return math.inf if math.isnan(value) else value
