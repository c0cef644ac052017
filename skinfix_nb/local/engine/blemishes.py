"""Find small round dark or red spots on skin and heal them with ``cv2.inpaint``.

Spots are scored by the scale-normalised smallest Hessian eigenvalue of log-luma (dark
spots), of log-redness (red spots) and of their difference (spots both darker and redder):
a round bump is curved in every direction, so the smallest curvature is large, while a
wrinkle or an edge is flat along its length and scores near zero. Candidates must then be
round and stand out from the skin around them (see :func:`heal_blemishes`); old, wrinkled
skin is full of strong but line-like or cluttered candidates that must not be healed.
This runs at a working scale where the face is at most ``WORK_FACE_WIDTH`` pixels wide, so
its cost stays flat as the megapixels grow.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from numpy.typing import NDArray

WORK_FACE_WIDTH = 320
"""Face width, in pixels, at which spots are searched and healed."""

_MAX_SPOT_SHARE = 0.04  # never heal more than this share of the skin: wrinkles are not spots
_MAX_CANDIDATES = 300
# limits of the robust threshold, in scale-normalised log units
_THRESHOLD_FLOOR = 0.02
_THRESHOLD_CEILING = 0.04
# Deep dark holes (nostrils, pupils, glasses rims, gaps in hair) score far above blemishes.
_PEAK_CEILING = 0.2
# smallest / largest Hessian eigenvalue at the peak: 1 for a disk, near 0 for a line
_MIN_ROUNDNESS = 0.5
# contrast against the surrounding ring, in units of the ring's own texture
_MIN_CONSPICUITY = 3.0


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

    Candidates are the components where the spot score passes a robust threshold. Each is
    kept only when it is round (both Hessian eigenvalues alike: a wrinkle is a line), small,
    ringed by skin, and *conspicuous*: its colour contrast against the ring around it in
    CIELAB is several times the ring's own texture. A dark point inside a wrinkled, hairy
    or framed area fails that test, and healing it would smear its surroundings. The most
    conspicuous spots are healed first, within a budget of a few percent of the skin.

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
    response = _spot_score(rgb, face_width)
    score = response.score
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
    lab = _lab(rgb)
    max_radius = face_width / 18
    spots: list[_Spot] = []
    for label in order:
        if peaks[label] > _PEAK_CEILING:
            continue
        x, y, w, h, area = (int(v) for v in stats[label])
        if area > np.pi * max_radius**2 or max(w, h) > 3 * max(1, min(w, h)):
            continue
        inside = labels[y : y + h, x : x + w] == label
        local = np.where(inside, score[y : y + h, x : x + w], -np.inf)
        peak_y, peak_x = np.unravel_index(int(np.argmax(local)), inside.shape)
        px, py = x + int(peak_x), y + int(peak_y)
        if response.roundness[py, px] < _MIN_ROUNDNESS:
            continue
        ys, xs = np.nonzero(inside)
        cx, cy = x + float(xs.mean()), y + float(ys.mean())
        # the blob's own size, from the scale that fits it best; the component can be wider
        size = float(np.sqrt(2.0) * response.sigma[py, px])
        radius = max(size, float(np.sqrt(area / np.pi)))
        if radius > max_radius or not _ringed_by_skin(skin, cx, cy, radius):
            continue
        # the best-fitting scale can be inflated by shading around the spot: try smaller rings
        conspicuity = max(_conspicuity(lab, cx, cy, f * size) for f in (0.6, 0.8, 1.0))
        if conspicuity >= _MIN_CONSPICUITY:
            spots.append(_Spot(cx, cy, radius, area, conspicuity))
    heal = np.zeros((height, width), np.uint8)
    boxes: list[tuple[int, int, int, int]] = []
    budget = _MAX_SPOT_SHARE * skin_pixels
    for spot in sorted(spots, key=lambda s: -s.conspicuity):
        budget -= spot.area
        if budget < 0:
            break
        heal_radius = int(np.ceil(1.5 * spot.radius + 1))
        centre = (round(spot.x), round(spot.y))
        cv2.circle(heal, centre, heal_radius, 255, thickness=-1)
        side = 2 * heal_radius + 1
        boxes.append((centre[0] - heal_radius, centre[1] - heal_radius, side, side))
    if not boxes:
        return empty
    healed = cv2.inpaint(rgb, heal, 3, cv2.INPAINT_TELEA)
    correction = healed.astype(np.float32) - rgb.astype(np.float32)
    correction[heal == 0] = 0.0
    return Healing(correction, boxes)


@dataclass(frozen=True)
class _Spot:
    x: float
    y: float
    radius: float
    area: int
    conspicuity: float


@dataclass(frozen=True)
class _Response:
    """Per pixel: best spot score over scales, its sigma, and its roundness in [0, 1]."""

    score: NDArray[np.float32]
    sigma: NDArray[np.float32]
    roundness: NDArray[np.float32]


def _spot_score(rgb: NDArray[np.uint8], face_width: float) -> _Response:
    """Best score over three scales and three channels: darkness, redness and both at once.

    A red papule is darker *and* redder than the skin around it; on ruddy skin neither
    change alone stands out, their sum does.
    """
    pixels = rgb.astype(np.float32) + 1.0
    red, green, blue = pixels[..., 0], pixels[..., 1], pixels[..., 2]
    log_luma = np.log(0.299 * red + 0.587 * green + 0.114 * blue)
    log_redness = np.log(red / (0.5 * (green + blue)))
    channels = (log_luma, -log_redness, log_luma - log_redness)
    best = np.full(rgb.shape[:2], -np.inf, np.float32)
    best_sigma = np.zeros(rgb.shape[:2], np.float32)
    roundness = np.zeros(rgb.shape[:2], np.float32)
    for sigma in (max(1.0, face_width / k) for k in (130.0, 85.0, 55.0)):
        for channel in channels:
            smallest, largest = _curvatures(channel, sigma)
            score = smallest * np.float32(sigma * sigma)
            better = score > best
            best[better] = score[better]
            best_sigma[better] = sigma
            roundness[better] = smallest[better] / np.maximum(largest[better], 1e-12)
    return _Response(best, best_sigma, roundness)


def _curvatures(
    image: NDArray[np.float32], sigma: float
) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
    """Smallest and largest Hessian eigenvalues of ``image`` smoothed at ``sigma``.

    Both are large in a round pit; along a wrinkle or an edge the smallest is near zero.
    """
    smooth = cv2.GaussianBlur(image, (0, 0), sigma)
    dxx = cv2.Sobel(smooth, cv2.CV_32F, 2, 0, ksize=1)
    dyy = cv2.Sobel(smooth, cv2.CV_32F, 0, 2, ksize=1)
    dxy = cv2.Sobel(smooth, cv2.CV_32F, 1, 1, ksize=3) * np.float32(0.25)
    half_trace = 0.5 * (dxx + dyy)
    spread = np.sqrt((0.5 * (dxx - dyy)) ** 2 + dxy * dxy)
    return np.asarray(half_trace - spread, np.float32), np.asarray(half_trace + spread, np.float32)


def _lab(rgb: NDArray[np.uint8]) -> NDArray[np.float32]:
    """CIELAB (L in 0-100), from OpenCV's float path."""
    return np.asarray(cv2.cvtColor(rgb.astype(np.float32) / 255.0, cv2.COLOR_RGB2LAB), np.float32)


def _conspicuity(lab: NDArray[np.float32], cx: float, cy: float, radius: float) -> float:
    """Colour contrast of the spot against its ring 1.5-2.5 radii, over the ring's texture.

    The contrast is the CIELAB distance between the spot's core and the ring's median
    colour; the texture is the standard deviation of L in the ring, floored at one unit
    so that very flat skin does not make faint spots look conspicuous.
    """
    outer = int(np.ceil(2.5 * radius)) + 1
    height, width = lab.shape[:2]
    x0, x1 = max(0, int(cx) - outer), min(width, int(cx) + outer + 1)
    y0, y1 = max(0, int(cy) - outer), min(height, int(cy) + outer + 1)
    yy, xx = np.mgrid[y0:y1, x0:x1]
    distance = np.hypot(xx - cx, yy - cy)
    patch = lab[y0:y1, x0:x1]
    core = patch[distance <= max(1.0, 0.6 * radius)]
    ring = patch[(distance >= 1.5 * radius) & (distance <= 2.5 * radius)]
    if core.size == 0 or ring.shape[0] < 8:
        return 0.0
    contrast = float(np.linalg.norm(core.mean(axis=0) - np.median(ring, axis=0)))
    return contrast / max(1.0, float(ring[:, 0].std()))


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
