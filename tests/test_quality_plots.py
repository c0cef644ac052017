"""Distribution plots: inline SVG without any plotting library, matplotlib when asked."""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET

import pandas as pd
import pytest

from skinfix_nb.quality import (
    QAThresholds,
    distribution_figure,
    distribution_svg,
    plot,
    reflag,
    worst_rows,
)
from skinfix_nb.quality.plots import PLOTTED, DistributionPlots, histogram_svg

SVG = "{http://www.w3.org/2000/svg}"


def qa_like() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "run_id": ["a", "b", "c", "d", None],
            "qa_ssim": [0.999, 0.70, 0.98, math.nan, math.nan],
            "qa_skin_change": [4.0, 10.0, 3.0, math.nan, math.nan],
            "qa_background_change": [0.1, 8.0, 0.3, math.nan, math.nan],
            "qa_background_altered_pct": [0.2, 60.0, 0.5, math.nan, math.nan],
            "qa_feature_sharpness_ratio": [0.99, 0.01, 0.97, math.nan, math.nan],
            "qa_sharpness_ratio": [0.95, 0.01, 0.96, math.nan, math.nan],
            "qa_delta_a": [0.0, 0.0, 3.0, math.nan, math.nan],
            "qa_delta_b": [0.1, 0.0, 3.0, math.nan, math.nan],
            "qa_error": [None, None, None, "HTTP 404", None],
            "qa_flag": [
                "",
                "background_changed,features_blurred,sharpness_drop",
                "colour_shift",
                "fetch_failed",
                None,
            ],
        }
    )


def test_histogram_marks_flagged_values_and_the_limit() -> None:
    svg = histogram_svg(
        [1.0, 2.0, 2.5, math.nan, math.inf],
        title="Change <skin>",
        flagged=[False, True, False, False, False],
        names=["a", "b", "c", "d", "e"],
        limit=2.2,
    )
    root = ET.fromstring(svg)  # well-formed, escaped XML
    dots = root.findall(f"{SVG}circle")
    assert len(dots) == 3  # NaN and inf are not drawn
    red = [d for d in dots if d.get("fill") == "#cf222e"]
    assert len(red) == 1
    assert red[0].findtext(f"{SVG}title") == "b: 2 (flagged)"
    assert any(line.get("stroke-dasharray") for line in root.findall(f"{SVG}line"))
    assert "Change <skin>" in "".join(root.itertext())
    assert "1 off scale" in "".join(root.itertext())


def test_histogram_of_nothing_says_so() -> None:
    assert "no measured pairs" in histogram_svg([math.nan], title="SSIM")


def test_distributions_cover_every_plotted_metric() -> None:
    block = distribution_svg(qa_like())
    assert block.count("<svg") == len(PLOTTED)
    assert "Colour cast" in block  # derived from Δa and Δb
    assert DistributionPlots(qa_like())._repr_html_() == block
    assert isinstance(plot(qa_like()), DistributionPlots)
    with pytest.raises(ValueError, match="backend"):
        plot(qa_like(), backend="bokeh")


def test_matplotlib_figure_when_installed() -> None:
    pytest.importorskip("matplotlib")
    figure = distribution_figure(qa_like())
    titles = [ax.get_title() for ax in figure.axes if ax.get_title()]
    assert titles == [p.title for p in PLOTTED]
    assert plot(qa_like(), backend="matplotlib").axes


def test_worst_rows_puts_most_flags_first() -> None:
    worst = worst_rows(qa_like(), 3)
    assert worst["run_id"].tolist() == ["b", "c", "d"]
    with pytest.raises(ValueError, match="qa_frame"):
        worst_rows(pd.DataFrame({"x": [1]}))


def test_reflag_applies_new_thresholds_without_measuring_again() -> None:
    lenient = QAThresholds(chroma_shift=10.0, background_altered_pct=99.0)
    flags = reflag(qa_like(), thresholds=lenient)["qa_flag"].tolist()
    assert flags[:4] == ["", "features_blurred,sharpness_drop", "", "fetch_failed"]
    assert pd.isna(flags[4])
