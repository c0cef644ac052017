"""Frequency-separation smoothing: even out the skin's tone, keep part of its fine texture.

The image splits into a low band (a Gaussian blur whose width follows the face) and a high
band (the rest: pores, fine hair, grain). The low band goes through a guided filter, which
flattens blotches but stops at real edges (jaw, nose, glasses); about half of the high band
is kept, so the skin still looks like skin. Both bands are smooth at the scale they are
computed, so the work is done on a reduced copy and only the final blend touches every pixel.
"""

from __future__ import annotations

import cv2
import numpy as np
from numpy.typing import NDArray

TEXTURE_KEPT = 0.55
"""Share of the fine texture (high band) kept where the skin mask is 1."""

_EPS = (0.035 * 255.0) ** 2  # guided-filter edge threshold: tone steps above ~9 levels stay


def smoothing_delta(roi: NDArray[np.float32], face_width: float) -> NDArray[np.float32]:
    """The change that fully smoothed skin would need, per pixel of ``roi`` (float32, H x W x 3).

    The caller blends it through the skin mask: ``out = roi + strength * mask * delta``.
    """
    height, width = roi.shape[:2]
    low_sigma = max(0.8, face_width / 180.0)
    radius = max(2.0, face_width / 18.0)
    factor = max(1.0, low_sigma / 2.0)  # the low band is smooth enough to compute smaller
    if factor > 1.0:
        small_size = (max(1, round(width / factor)), max(1, round(height / factor)))
        small = _f32(cv2.resize(roi, small_size, interpolation=cv2.INTER_AREA))
    else:
        small = roi
    low = _f32(cv2.GaussianBlur(small, (0, 0), low_sigma / factor))
    flattened = fast_guided_filter(low, radius=radius / factor, eps=_EPS)
    tone_change = flattened - low
    if factor > 1.0:
        low = _f32(cv2.resize(low, (width, height), interpolation=cv2.INTER_LINEAR))
        tone_change = _f32(cv2.resize(tone_change, (width, height), interpolation=cv2.INTER_LINEAR))
    # delta = (flattened - low) - (1 - kept) * (roi - low), computed in place to save memory
    delta = _f32(cv2.subtract(roi, low))
    del low
    delta *= np.float32(-(1.0 - TEXTURE_KEPT))
    delta += tone_change
    return delta


def fast_guided_filter(
    image: NDArray[np.float32], *, radius: float, eps: float
) -> NDArray[np.float32]:
    """Edge-preserving smoothing of an RGB float image, guided by its own luma (He & Sun 2015).

    The linear coefficients are computed on a copy sub-sampled by about ``radius / 4``, where
    box filters are cheap, then upsampled: the result is close to the full guided filter at a
    small fraction of its cost. ``eps`` is in squared 0-255 levels.
    """
    height, width = image.shape[:2]
    guide = _f32(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY))
    step = max(1.0, radius / 4.0)
    size = (max(1, round(width / step)), max(1, round(height / step)))
    small_guide = _f32(cv2.resize(guide, size, interpolation=cv2.INTER_AREA))
    small_image = _f32(cv2.resize(image, size, interpolation=cv2.INTER_AREA))
    side = 2 * max(1, round(radius / step)) + 1
    box = (side, side)
    mean_guide = _f32(cv2.boxFilter(small_guide, -1, box))
    var_guide = _f32(cv2.boxFilter(small_guide * small_guide, -1, box)) - mean_guide * mean_guide
    mean_image = _f32(cv2.boxFilter(small_image, -1, box))
    corr = _f32(cv2.boxFilter(small_image * small_guide[..., None], -1, box))
    small_gain = (corr - mean_image * mean_guide[..., None]) / (
        var_guide[..., None] + np.float32(eps)
    )
    small_offset = mean_image - small_gain * mean_guide[..., None]
    full = (width, height)
    gain = _f32(
        cv2.resize(cv2.boxFilter(small_gain, -1, box), full, interpolation=cv2.INTER_LINEAR)
    )
    offset = _f32(
        cv2.resize(cv2.boxFilter(small_offset, -1, box), full, interpolation=cv2.INTER_LINEAR)
    )
    gain *= guide[..., None]
    gain += offset
    return gain


def _f32(array: object) -> NDArray[np.float32]:
    """OpenCV's results typed as what they are (no copy when already float32)."""
    return np.asarray(array, np.float32)
