"""Named problems of a retouched pair, from its metrics and thresholds the user can change."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["FLAGS", "QAThresholds", "flag_names", "resolve_thresholds"]

FLAGS: dict[str, str] = {
    "fetch_failed": "the before or after image could not be fetched or decoded",
    "no_face": "no face was found in the before image, so skin metrics are missing",
    "background_changed": "the background (outside skin and features) was altered",
    "features_blurred": "eyes, brows or lips lost sharpness",
    "sharpness_drop": "the whole image lost much of its fine detail",
    "colour_shift": "the mean colour or lightness moved (a cast, not local retouching)",
    "size_differs": "the output has another size than the input",
    "nsfw": "the API reported nsfw_detected",
}
"""Every flag ``qa_flag`` can name, with what it means."""


@dataclass(frozen=True)
class QAThresholds:
    """Limits beyond which a metric raises a flag; override any with keywords.

    The defaults leave a good retouch unflagged even after lossy re-encoding (on the bundled
    portraits saved as WebP 75 or JPEG 75: background altered under 0.3 %, feature sharpness
    ratio 0.98-2.0, mean a/b shift under 0.3) while a global blur or a hue shift is flagged.

    Attributes
    ----------
    background_altered_pct : float
        ``background_changed`` when more than this percentage of the pixels outside skin and
        features was altered (``PairMetrics.background_altered_pct``: low-passed change over
        4 levels, so codec noise does not count).
    feature_sharpness_ratio : float
        ``features_blurred`` when the Laplacian variance on eyes, brows and lips falls
        below this fraction of the original's.
    sharpness_ratio : float
        ``sharpness_drop`` when the whole image's Laplacian variance falls below this
        fraction of the original's.
    chroma_shift : float
        ``colour_shift`` when the mean (a, b) shift in Lab is longer than this ...
    lightness_shift : float
        ... or the mean L shift (0-100 scale) exceeds this in size.
    """

    background_altered_pct: float = 2.0
    feature_sharpness_ratio: float = 0.6
    sharpness_ratio: float = 0.5
    chroma_shift: float = 1.0
    lightness_shift: float = 2.0


def resolve_thresholds(thresholds: QAThresholds | Mapping[str, float] | None) -> QAThresholds:
    """Accept a :class:`QAThresholds`, a mapping of overrides, or ``None`` for the defaults."""
    if thresholds is None:
        return QAThresholds()
    if isinstance(thresholds, QAThresholds):
        return thresholds
    if isinstance(thresholds, Mapping):
        known = {f.name for f in dataclasses.fields(QAThresholds)}
        unknown = sorted(set(thresholds) - known)
        if unknown:
            raise TypeError(
                f"unknown QA threshold(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
            )
        return QAThresholds(**thresholds)
    raise TypeError(
        f"thresholds must be a QAThresholds, a dict of overrides or None, "
        f"not {type(thresholds).__name__}"
    )


def flag_names(metrics: Mapping[str, Any], thresholds: QAThresholds) -> list[str]:
    """The flags a pair earns, in the order of :data:`FLAGS`.

    ``metrics`` holds :class:`~skinfix_nb.quality.metrics.PairMetrics` fields plus
    ``fetch_failed`` and ``nsfw`` (True, False or None when unknown). A missing or NaN
    metric never raises a flag.
    """
    if metrics.get("fetch_failed"):
        return ["fetch_failed"] + (["nsfw"] if metrics.get("nsfw") is True else [])
    flags: list[str] = []
    if metrics.get("face_found") is False:
        flags.append("no_face")
    if _above(metrics, "background_altered_pct", thresholds.background_altered_pct):
        flags.append("background_changed")
    if _below(metrics, "feature_sharpness_ratio", thresholds.feature_sharpness_ratio):
        flags.append("features_blurred")
    if _below(metrics, "sharpness_ratio", thresholds.sharpness_ratio):
        flags.append("sharpness_drop")
    chroma = math.hypot(_number(metrics, "delta_a"), _number(metrics, "delta_b"))
    if chroma > thresholds.chroma_shift or _above_abs(
        metrics, "delta_l", thresholds.lightness_shift
    ):
        flags.append("colour_shift")
    if metrics.get("size_differs") is True:
        flags.append("size_differs")
    if metrics.get("nsfw") is True:
        flags.append("nsfw")
    return flags


def _number(metrics: Mapping[str, Any], name: str) -> float:
    value = metrics.get(name)
    try:
        return math.nan if value is None else float(value)
    except (TypeError, ValueError):
        return math.nan


def _above(metrics: Mapping[str, Any], name: str, limit: float) -> bool:
    return _number(metrics, name) > limit


def _above_abs(metrics: Mapping[str, Any], name: str, limit: float) -> bool:
    return abs(_number(metrics, name)) > limit


def _below(metrics: Mapping[str, Any], name: str, limit: float) -> bool:
    return _number(metrics, name) < limit
