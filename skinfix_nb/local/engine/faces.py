"""Where the faces are, which pixels are skin, and which are eyes, brows and lips.

Everything here runs on a small proxy of the image (at most :data:`PROXY_SIDE` pixels on
the longest side), so its cost does not grow with the megapixels. Faces come from OpenCV's
Haar cascades, which ship inside the ``opencv-python-headless`` wheel (4.x): nothing is
downloaded. A box is kept only when its centre is skin-coloured and, when several boxes
compete, when an eye is found in its upper half; the astronaut's orange suit is the classic
false positive this removes.

Eyes are found with the eye cascade inside each face box. When they are, the feature zones
(eyes, brows, nostrils, lips) are laid out from the eye line rather than from the face box:
the box's position and size vary by a fifth of a face from person to person, the eyes pin
the features to a few pixels, so the cut-outs can be tight and skin close to the features
still gets retouched.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass

import cv2
import numpy as np
from numpy.typing import NDArray

PROXY_SIDE = 640
"""Longest side of the proxy on which masks are built."""

DETECT_SIDE = 400
"""Longest side of the image the face cascade scans."""

Box = tuple[int, int, int, int]
Point = tuple[float, float]
FloatMap = NDArray[np.float32]
BoolMap = NDArray[np.bool_]

# Eye, brow, lip and nostril zones as ellipses (centre x, centre y, radius x, radius y) in
# units of the Haar face box, checked by eye on the bundled portraits.
_EYES = ((0.30, 0.41, 0.15, 0.09), (0.70, 0.41, 0.15, 0.09))
_BROWS = ((0.30, 0.27, 0.17, 0.07), (0.70, 0.27, 0.17, 0.07))
_LIPS = ((0.50, 0.79, 0.22, 0.11),)
_NOSTRILS = ((0.50, 0.65, 0.16, 0.08),)
# The face oval around the Haar box: forehead above it, chin just below it.
_OVAL = (0.50, 0.45, 0.56, 0.74)
# The same zones laid out from the eyes, in units of the distance between the eye centres
# (d). Brows sit about d/4 above the eyes and a little outwards; the mouth line is found in
# the image, 0.8-1.4 d below the eye line (1.1 d when it cannot be); the nostrils sit about
# three quarters of the way from the eye line to the mouth. Radii leave margin for faces
# that differ.
_EYE_RADII = (0.32, 0.18)
_BROW_FROM_EYE = (0.05, -0.25)  # outwards, downwards
_BROW_RADII = (0.45, 0.14)
_MOUTH_SEARCH = (0.8, 1.4)
_MOUTH_DROP = 1.1
_LIP_RADII = (0.55, 0.24)
_LIPS_BELOW_LINE = 0.05  # the lower lip is fuller: the lips' centre is a little below the line
_NOSE_BASE = 0.74
_NOSTRIL_RADII = (0.36, 0.14)
# Where an eye may be, relative to the face box (centre y range, size range).
_EYE_Y = (0.2, 0.55)
_EYE_SIZE = (0.1, 0.35)


@dataclass(frozen=True)
class Face:
    """A face box and, when the eye cascade found them, the eye centres (left, right).

    Coordinates are in the pixels of whatever image the face was mapped to; see
    :meth:`mapped`.
    """

    box: Box
    eyes: tuple[Point, Point] | None = None
    mouth_drop: float = _MOUTH_DROP
    """Distance of the mouth line below the eye line, in eye distances."""

    def mapped(self, scale: float, origin: Point = (0.0, 0.0)) -> Face:
        """The face in another grid: each coordinate becomes ``value * scale - origin``."""
        x, y, w, h = self.box
        ox, oy = origin
        box = (round(x * scale - ox), round(y * scale - oy), round(w * scale), round(h * scale))
        if self.eyes is None:
            return Face(box)
        (lx, ly), (rx, ry) = self.eyes
        eyes = ((lx * scale - ox, ly * scale - oy), (rx * scale - ox, ry * scale - oy))
        return Face(box, eyes, self.mouth_drop)


@dataclass(frozen=True)
class _Cascades:
    face: cv2.CascadeClassifier
    eye: cv2.CascadeClassifier
    lock: threading.Lock


_cascades: _Cascades | None = None
_cascades_lock = threading.Lock()


def _load_cascades() -> _Cascades:
    """Load the Haar cascades once; a cascade object is not safe to share, hence the lock."""
    global _cascades
    with _cascades_lock:
        if _cascades is None:
            folder = cv2.data.haarcascades  # type: ignore[attr-defined]
            face = cv2.CascadeClassifier(
                os.path.join(folder, "haarcascade_frontalface_default.xml")
            )
            eye = cv2.CascadeClassifier(os.path.join(folder, "haarcascade_eye.xml"))
            if face.empty() or eye.empty():
                raise RuntimeError(
                    f"OpenCV's Haar cascades are missing from {folder!r}; install "
                    "opencv-python-headless>=4.8,<5 (the 5.x wheels no longer ship them)"
                )
            _cascades = _Cascades(face, eye, threading.Lock())
        return _cascades


def proxy_of(rgb: NDArray[np.uint8]) -> tuple[NDArray[np.uint8], float]:
    """An area-downscaled copy with the longest side at most :data:`PROXY_SIDE`, and its scale."""
    height, width = rgb.shape[:2]
    scale = min(1.0, PROXY_SIDE / max(height, width))
    if scale == 1.0:
        return rgb, 1.0
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return np.asarray(cv2.resize(rgb, size, interpolation=cv2.INTER_AREA), np.uint8), scale


def detect_faces(proxy: NDArray[np.uint8], *, colour: bool) -> list[Face]:
    """Faces in proxy pixels, false positives removed, with their eyes when found.

    Parameters
    ----------
    proxy : uint8 array, H x W x 3 (RGB)
        The proxy image.
    colour : bool
        False for greyscale input, where the skin-centre check cannot apply.
    """
    height, width = proxy.shape[:2]
    if min(height, width) < 24:  # smaller than the cascade's own window
        return []
    grey = np.asarray(cv2.cvtColor(proxy, cv2.COLOR_RGB2GRAY), np.uint8)
    scale = min(1.0, DETECT_SIDE / max(height, width))
    small = cv2.resize(grey, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    min_side = max(24, int(0.08 * min(small.shape)))
    cascades = _load_cascades()
    with cascades.lock:
        found = cascades.face.detectMultiScale(
            cv2.equalizeHist(small), scaleFactor=1.1, minNeighbors=5, minSize=(min_side, min_side)
        )
    boxes: list[Box] = [
        (round(x / scale), round(y / scale), round(w / scale), round(h / scale))
        for x, y, w, h in found
    ]
    if colour:
        ycrcb = np.asarray(cv2.cvtColor(proxy, cv2.COLOR_RGB2YCrCb), np.uint8)
        boxes = [b for b in boxes if _centre_is_skin(ycrcb, b)]
    eye_boxes = [_eye_boxes(grey, b, cascades) for b in boxes]
    faces = [_face(grey, b, found) for b, found in zip(boxes, eye_boxes, strict=True)]
    if len(faces) > 1:
        with_eyes = [f for f, found in zip(faces, eye_boxes, strict=True) if found]
        faces = with_eyes or [max(faces, key=lambda f: f.box[2] * f.box[3])]
    return faces


def _centre_is_skin(ycrcb: NDArray[np.uint8], box: Box) -> bool:
    """A broad chroma test on the box centre; rejects walls, shirts and sky."""
    x, y, w, h = box
    core = ycrcb[y + int(0.45 * h) : y + int(0.7 * h), x + int(0.3 * w) : x + int(0.7 * w)]
    if core.size == 0:
        return False
    cr, cb = float(np.median(core[..., 1])), float(np.median(core[..., 2]))
    return 130 <= cr <= 185 and 75 <= cb <= 135


def _eye_boxes(grey: NDArray[np.uint8], box: Box, cascades: _Cascades) -> list[Box]:
    """Eye-cascade hits in the upper half of ``box``, in proxy pixels."""
    x, y, w, h = box
    top = y + int(0.15 * h)
    upper = grey[top : y + int(0.6 * h), x : x + w]
    if min(upper.shape) < 12:
        return []
    side = max(8, w // 10)
    with cascades.lock:
        found = cascades.eye.detectMultiScale(
            upper, scaleFactor=1.1, minNeighbors=3, minSize=(side, side)
        )
    return [(int(ex) + x, int(ey) + top, int(ew), int(eh)) for ex, ey, ew, eh in found]


def _face(grey: NDArray[np.uint8], box: Box, eye_boxes: list[Box]) -> Face:
    eyes = _eye_pair(box, eye_boxes)
    if eyes is None:
        return Face(box)
    return Face(box, eyes, _mouth_drop(grey, eyes))


def _mouth_drop(grey: NDArray[np.uint8], eyes: tuple[Point, Point]) -> float:
    """How far below the eye line the mouth is, in eye distances.

    The mouth line is the darkest stripe across the lower face: between the lips the light
    does not reach. Each row parallel to the eye line is summarised by its median over the
    mouth's width, so that nostrils or a dark spot, which cover only part of a row, do not
    pass for it.
    """
    (lx, ly), (rx, ry) = eyes
    d = float(np.hypot(rx - lx, ry - ly))
    along = np.array([(rx - lx) / d, (ry - ly) / d])
    down = np.array([-along[1], along[0]])
    middle = np.array([(lx + rx) / 2.0, (ly + ry) / 2.0])
    drops = np.linspace(*_MOUTH_SEARCH, max(8, round(d * (_MOUTH_SEARCH[1] - _MOUTH_SEARCH[0]))))
    across = np.linspace(-0.4, 0.4, max(5, round(0.8 * d)))
    points = (
        middle[None, None, :]
        + d * drops[:, None, None] * down[None, None, :]
        + d * across[None, :, None] * along[None, None, :]
    )
    height, width = grey.shape
    xs = np.clip(np.round(points[..., 0]).astype(int), 0, width - 1)
    ys = np.clip(np.round(points[..., 1]).astype(int), 0, height - 1)
    if d < 8 or not (points[..., 1].min() >= 0 and points[..., 1].max() < height):
        return _MOUTH_DROP
    rows = np.median(grey[ys, xs].astype(np.float32), axis=1)
    rows = np.convolve(rows, np.ones(3, np.float32) / 3.0, mode="valid")
    return float(drops[1 + int(np.argmin(rows))])


def _eye_pair(box: Box, eye_boxes: list[Box]) -> tuple[Point, Point] | None:
    """Left and right eye centres from cascade hits, or None when they are implausible.

    Hits must sit in the band and size range where eyes are in a face box; on each side the
    hit nearest the usual eye position wins. One missing eye (glasses often hide one from
    the cascade) is mirrored across the box's centre line.
    """
    x, y, w, h = box
    sides: list[Point | None] = []
    for cx, cy, _, _ in _EYES:
        best: Point | None = None
        best_distance = np.inf
        for ex, ey, ew, eh in eye_boxes:
            px, py = ex + ew / 2.0, ey + eh / 2.0
            inside_band = _EYE_Y[0] * h <= py - y <= _EYE_Y[1] * h
            plausible_size = _EYE_SIZE[0] * w <= ew <= _EYE_SIZE[1] * w
            same_side = (px - x < 0.5 * w) == (cx < 0.5)
            distance = float(np.hypot(px - (x + cx * w), py - (y + cy * h)))
            if inside_band and plausible_size and same_side and distance < best_distance:
                best, best_distance = (px, py), distance
        sides.append(best)
    left, right = sides
    centre_line = x + w / 2.0
    if left is None and right is not None:
        left = (2.0 * centre_line - right[0], right[1])
    if right is None and left is not None:
        right = (2.0 * centre_line - left[0], left[1])
    if left is None or right is None:
        return None
    spread = right[0] - left[0]
    if not 0.25 * w <= spread <= 0.6 * w or abs(right[1] - left[1]) > 0.25 * spread:
        return None
    return left, right


def feature_zones(shape: tuple[int, int], faces: list[Face], *, nostrils: bool) -> BoolMap:
    """Eyes, brows and lips (and the nostrils when asked) of every face, as a boolean map."""
    zones = np.zeros(shape, np.uint8)
    for face in faces:
        for (cx, cy), (rx, ry), angle in _zone_ellipses(face, nostrils=nostrils):
            centre = (round(cx), round(cy))
            axes = (max(1, round(rx)), max(1, round(ry)))
            cv2.ellipse(zones, centre, axes, angle, 0, 360, 1, thickness=-1)
    return zones.astype(bool)


def _zone_ellipses(face: Face, *, nostrils: bool) -> list[tuple[Point, Point, float]]:
    """(centre, radii, angle in degrees) of each feature zone of ``face``."""
    x, y, w, h = face.box
    if face.eyes is None:
        parts = _EYES + _BROWS + _LIPS + (_NOSTRILS if nostrils else ())
        return [((x + cx * w, y + cy * h), (rx * w, ry * h), 0.0) for cx, cy, rx, ry in parts]
    (lx, ly), (rx_, ry_) = face.eyes
    d = float(np.hypot(rx_ - lx, ry_ - ly))
    along = ((rx_ - lx) / d, (ry_ - ly) / d)  # unit vector along the eye line, left to right
    down = (-along[1], along[0])  # unit vector across it, towards the mouth
    angle = float(np.degrees(np.arctan2(along[1], along[0])))

    def at(origin: Point, offset_along: float, offset_down: float) -> Point:
        return (
            origin[0] + d * (offset_along * along[0] + offset_down * down[0]),
            origin[1] + d * (offset_along * along[1] + offset_down * down[1]),
        )

    middle = ((lx + rx_) / 2.0, (ly + ry_) / 2.0)
    eye_radii = (_EYE_RADII[0] * d, _EYE_RADII[1] * d)
    brow_radii = (_BROW_RADII[0] * d, _BROW_RADII[1] * d)
    ellipses: list[tuple[Point, Point, float]] = []
    for eye, outwards in (((lx, ly), -1.0), ((rx_, ry_), 1.0)):
        ellipses.append((eye, eye_radii, angle))
        brow = at(eye, outwards * _BROW_FROM_EYE[0], _BROW_FROM_EYE[1])
        ellipses.append((brow, brow_radii, angle))
    lips = at(middle, 0.0, face.mouth_drop + _LIPS_BELOW_LINE)
    ellipses.append((lips, (_LIP_RADII[0] * d, _LIP_RADII[1] * d), angle))
    if nostrils:
        nose = at(middle, 0.0, _NOSE_BASE * face.mouth_drop)
        ellipses.append((nose, (_NOSTRIL_RADII[0] * d, _NOSTRIL_RADII[1] * d), angle))
    return ellipses


def skin_mask(proxy: NDArray[np.uint8], faces: list[Face]) -> FloatMap:
    """Soft skin mask in [0, 1] on the proxy: colour x face oval x smoothness, features cut out.

    The colour model is a Gaussian in CrCb fitted on the cheeks and nose of each face, so it
    follows that person's skin and the light of that photo; the oval keeps it to the face and
    the smoothness gate removes hair and brows, whose chroma is often close to skin.
    """
    height, width = proxy.shape[:2]
    mask = np.zeros((height, width), np.float32)
    if not faces:
        return mask
    boxes = [face.box for face in faces]
    ycrcb = cv2.cvtColor(proxy, cv2.COLOR_RGB2YCrCb).astype(np.float32)
    grey = ycrcb[..., 0]
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    for box in boxes:
        face = _colour_likelihood(ycrcb, box) * _oval_prior(xx, yy, box)
        face *= _smoothness_gate(grey, box)
        np.maximum(mask, face, out=mask)
    face_width = max(b[2] for b in boxes)
    size = max(3, int(face_width / 25) | 1)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))
    closed = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, kernel)
    opened = cv2.morphologyEx(closed, cv2.MORPH_OPEN, kernel)
    mask = np.asarray(cv2.GaussianBlur(opened, (0, 0), max(0.8, face_width / 40)), np.float32)
    zones = feature_zones((height, width), faces, nostrils=False).astype(np.float32)
    cut = np.asarray(cv2.GaussianBlur(zones, (0, 0), max(0.6, face_width / 80)), np.float32)
    mask *= 1.0 - np.clip(cut * 1.5, 0.0, 1.0)
    return np.clip(mask, 0.0, 1.0)


def _colour_likelihood(ycrcb: NDArray[np.float32], box: Box) -> FloatMap:
    x, y, w, h = box
    core = ycrcb[y + int(0.5 * h) : y + int(0.72 * h), x + int(0.22 * w) : x + int(0.78 * w)]
    samples = core.reshape(-1, 3)
    if samples.shape[0] < 4:
        return np.ones(ycrcb.shape[:2], np.float32)
    luma = samples[:, 0]
    low, high = np.percentile(luma, [10, 95])
    chroma = samples[(luma >= low) & (luma <= high), 1:]
    if chroma.shape[0] < 4:
        chroma = samples[:, 1:]
    mean = chroma.mean(axis=0)
    # the floor keeps the model sane on greyscale or very uniform faces
    cov = np.cov(chroma, rowvar=False) + np.eye(2) * 4.0
    inv = np.linalg.inv(cov).astype(np.float32)
    dcr = ycrcb[..., 1] - np.float32(mean[0])
    dcb = ycrcb[..., 2] - np.float32(mean[1])
    d2 = inv[0, 0] * dcr * dcr + 2 * inv[0, 1] * dcr * dcb + inv[1, 1] * dcb * dcb
    # full weight within 1.5 sigma, none beyond 3 sigma
    return np.asarray(np.clip((3.0 - np.sqrt(d2)) / 1.5, 0.0, 1.0), np.float32)


def _oval_prior(xx: FloatMap, yy: FloatMap, box: Box) -> FloatMap:
    x, y, w, h = box
    cx, cy, rx, ry = _OVAL
    r = np.sqrt(((xx - (x + cx * w)) / (rx * w)) ** 2 + ((yy - (y + cy * h)) / (ry * h)) ** 2)
    return np.clip((1.05 - r) / 0.2, 0.0, 1.0).astype(np.float32)


def _smoothness_gate(grey: FloatMap, box: Box) -> FloatMap:
    """1 on skin, 0 on hair and brows: their fine texture is much denser than skin's."""
    x, y, w, h = box
    fine = np.abs(grey - cv2.GaussianBlur(grey, (0, 0), max(0.7, w / 100)))
    texture = cv2.GaussianBlur(fine, (0, 0), max(1.0, w / 40))
    core = texture[y + int(0.5 * h) : y + int(0.72 * h), x + int(0.22 * w) : x + int(0.78 * w)]
    typical = float(np.median(core)) if core.size else 1.0
    low, high = 2.0 * typical + 0.5, 4.0 * typical + 1.5
    return np.asarray(np.clip((high - texture) / (high - low), 0.0, 1.0), np.float32)
