"""Before/after QA of retouched portraits: metrics, flags, plots and a shareable report.

>>> from skinfix_nb import quality
>>> quality.pair_metrics("before.jpg", "after.jpg").ssim
>>> checked = quality.qa_frame(out)            # metric columns + qa_flag per row
>>> quality.plot(checked)                      # distributions, flagged pairs in red
>>> quality.worst_pairs(checked)               # before / after / difference of the worst
>>> quality.report(checked, "qa.html")         # one self-contained HTML file

Only numpy and OpenCV are needed; matplotlib is used when asked for and installed.
"""

from skinfix_nb.quality.flags import FLAGS, QAThresholds, flag_names
from skinfix_nb.quality.frame import METRIC_COLUMNS, QA_COLUMNS, qa_frame, reflag
from skinfix_nb.quality.metrics import PairMetrics, pair_metrics
from skinfix_nb.quality.plots import (
    DistributionPlots,
    distribution_figure,
    distribution_svg,
    plot,
    worst_rows,
)
from skinfix_nb.quality.report import WorstPairs, report, worst_pairs

__all__ = [
    "FLAGS",
    "METRIC_COLUMNS",
    "QA_COLUMNS",
    "DistributionPlots",
    "PairMetrics",
    "QAThresholds",
    "WorstPairs",
    "distribution_figure",
    "distribution_svg",
    "flag_names",
    "pair_metrics",
    "plot",
    "qa_frame",
    "reflag",
    "report",
    "worst_pairs",
    "worst_rows",
]
