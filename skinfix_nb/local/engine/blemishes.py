"""Find small round dark or red spots on skin and heal them with ``cv2.inpaint``.

Spots are scored by the scale-normalised smallest Hessian eigenvalue of log-luma (dark
spots) and of log-redness (red spots): a round bump is curved in every direction, so the
smallest curvature is large, while a wrinkle or an edge is flat along its length and scores
near zero. This runs at a working scale where the face is at most ``WORK_FACE_WIDTH`` pixels
wide, so its cost stays flat as the megapixels grow.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from numpy.typing import NDArray

WORK_FACE_WIDTH = 320
"""Face width, in pixels, at which spots are searched and healed."""

_MAX_SPOT_SHARE = 0.04  # never heal more than this share of the skin: wrinkles are not spots
_MAX_CANDIDATES = 120
# limits of the robust threshold, in scale-normalised log units
_THRESHOLD_FLOOR = 0.02
_THRESHOLD_CEILING = 0.04
# Deep dark holes (nostrils, pupils, glasses rims, gaps in hair) score far above blemishes.
_PEAK_CEILING = 0.2


@dataclass(frozen=True)
class Healing:
    """The result of :func:`heal_blemishes` at the working scale.

    ``correction`` is float32 H x W x 3, zero outside the healed disks, to be added to the
    image; ``boxes`` are the healed disks' bounding boxes (x, y, w, h).
    """

    correction: NDArray[np.float32]
    boxes: list[tuple[int, int, int, int]]


def heal_blemishes(
    rgb: NDArray[np.uint8],
    skin: NDArray[np.float32],
    keep_out: NDArray[np.bool_],
    face_width: float,
) -> Healing:
    """Detect spots on ``skin`` (away from ``keep_out``) and inpaint them.

    Parameters
    ----------
    rgb : uint8 array, H x W x 3
        The region of interest at the working scale.
    skin : float32 array, H x W
        Soft skin mask in [0, 1].
    keep_out : bool array, H x W
        Eyes, brows, lips and nostrils: dark round shapes that must never be "healed".
    face_width : float
        Width of the face at this scale; spot sizes are relative to it.
    """
    height, width = rgb.shape[:2]
    empty = Healing(np.zeros((height, width, 3), np.float32), [])
    on_skin = (skin > 0.3) & ~keep_out
    skin_pixels = int(on_skin.sum())
    if skin_pixels < 64:
        return empty
    score, sigma = _spot_score(rgb, face_width)
    values = score[on_skin]
    median = float(np.median(values))
    mad = float(np.median(np.abs(values - median)))
    threshold = float(np.clip(median + 5.0 * 1.4826 * mad, _THRESHOLD_FLOOR, _THRESHOLD_CEILING))
    candidates = ((score > threshold) & on_skin).astype(np.uint8)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(candidates, connectivity=8)
    if count <= 1:
        return empty
    peaks = _component_peaks(score, np.asarray(labels, np.int32), count)
    order = np.argsort(-peaks[1:])[:_MAX_CANDIDATES] + 1
    heal = np.zeros((height, width), np.uint8)
    boxes: list[tuple[int, int, int, int]] = []
    budget = _MAX_SPOT_SHARE * skin_pixels
    max_radius = face_width / 18
    for label in order:
        if peaks[label] > _PEAK_CEILING:
            continue
        x, y, w, h, area = (int(v) for v in stats[label])
        if area > np.pi * max_radius**2 or max(w, h) > 3 * max(1, min(w, h)):
            continue
        ys, xs = np.nonzero(labels[y : y + h, x : x + w] == label)
        cx, cy = x + float(xs.mean()), y + float(ys.mean())
        radius = float(np.sqrt(2.0) * sigma[int(round(cy)), int(round(cx))])
        radius = max(radius, float(np.sqrt(area / np.pi)))
        if radius > max_radius or not _ringed_by_skin(skin, cx, cy, radius):
            continue
        budget -= area
        if budget < 0:
            break
        heal_radius = int(np.ceil(1.5 * radius + 1))
        cv2.circle(heal, (round(cx), round(cy)), heal_radius, 255, thickness=-1)
        boxes.append(
            (
                round(cx) - heal_radius,
                round(cy) - heal_radius,
                2 * heal_radius + 1,
                2 * heal_radius + 1,
            )
        )
    if not boxes:
        return empty
    healed = cv2.inpaint(rgb, heal, 3, cv2.INPAINT_TELEA)
    correction = healed.astype(np.float32) - rgb.astype(np.float32)
    correction[heal == 0] = 0.0
    return Healing(correction, boxes)


def _spot_score(
    rgb: NDArray[np.uint8], face_width: float
) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
    """Best score over three scales, and the sigma that gave it, per pixel."""
    pixels = rgb.astype(np.float32) + 1.0
    red, green, blue = pixels[..., 0], pixels[..., 1], pixels[..., 2]
    log_luma = np.log(0.299 * red + 0.587 * green + 0.114 * blue)
    log_redness = np.log(red / (0.5 * (green + blue)))
    best = np.full(rgb.shape[:2], -np.inf, np.float32)
    best_sigma = np.zeros(rgb.shape[:2], np.float32)
    for sigma in (max(1.0, face_width / k) for k in (130.0, 85.0, 55.0)):
        dark = _smallest_curvature(log_luma, sigma)
        redness = _smallest_curvature(-log_redness, sigma)
        score = np.maximum(dark, redness) * np.float32(sigma * sigma)
        better = score > best
        best[better] = score[better]
        best_sigma[better] = sigma
    return best, best_sigma


def _smallest_curvature(image: NDArray[np.float32], sigma: float) -> NDArray[np.float32]:
    """Smallest eigenvalue of the Hessian of ``image`` smoothed at ``sigma``: large in a pit."""
    smooth = cv2.GaussianBlur(image, (0, 0), sigma)
    dxx = cv2.Sobel(smooth, cv2.CV_32F, 2, 0, ksize=1)
    dyy = cv2.Sobel(smooth, cv2.CV_32F, 0, 2, ksize=1)
    dxy = cv2.Sobel(smooth, cv2.CV_32F, 1, 1, ksize=3) * np.float32(0.25)
    half_trace = 0.5 * (dxx + dyy)
    spread = np.sqrt((0.5 * (dxx - dyy)) ** 2 + dxy * dxy)
    return np.asarray(half_trace - spread, np.float32)


def _component_peaks(
    score: NDArray[np.float32], labels: NDArray[np.int32], count: int
) -> NDArray[np.float64]:
    peaks = np.zeros(count, np.float64)
    np.maximum.at(peaks, labels.ravel(), score.ravel().astype(np.float64))
    return peaks


def _ringed_by_skin(skin: NDArray[np.float32], cx: float, cy: float, radius: float) -> bool:
    """True when the ring 1.6-2.6 radii around the spot is mostly skin."""
    outer = int(np.ceil(2.6 * radius)) + 1
    height, width = skin.shape
    x0, x1 = max(0, int(cx) - outer), min(width, int(cx) + outer + 1)
    y0, y1 = max(0, int(cy) - outer), min(height, int(cy) + outer + 1)
    yy, xx = np.mgrid[y0:y1, x0:x1]
    distance = np.hypot(xx - cx, yy - cy)
    ring = (distance >= 1.6 * radius) & (distance <= 2.6 * radius)
    expected = np.pi * ((2.6 * radius) ** 2 - (1.6 * radius) ** 2)
    on_skin = float((skin[y0:y1, x0:x1][ring] > 0.3).sum())
    return on_skin >= 0.7 * expected
