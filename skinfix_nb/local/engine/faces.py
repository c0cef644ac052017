"""Where the faces are, which pixels are skin, and which are eyes, brows and lips.

Everything here runs on a small proxy of the image (at most :data:`PROXY_SIDE` pixels on
the longest side), so its cost does not grow with the megapixels. Faces come from OpenCV's
Haar cascades, which ship inside the ``opencv-python-headless`` wheel (4.x): nothing is
downloaded. A box is kept only when its centre is skin-coloured and, when several boxes
compete, when an eye is found in its upper half; the astronaut's orange suit is the classic
false positive this removes.
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


def detect_faces(proxy: NDArray[np.uint8], *, colour: bool) -> list[Box]:
    """Face boxes in proxy pixels, false positives removed.

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
    if len(boxes) > 1:
        with_eyes = [b for b in boxes if _has_eye(grey, b, cascades)]
        boxes = with_eyes or [max(boxes, key=lambda b: b[2] * b[3])]
    return boxes


def _centre_is_skin(ycrcb: NDArray[np.uint8], box: Box) -> bool:
    """A broad chroma test on the box centre; rejects walls, shirts and sky."""
    x, y, w, h = box
    core = ycrcb[y + int(0.45 * h) : y + int(0.7 * h), x + int(0.3 * w) : x + int(0.7 * w)]
    if core.size == 0:
        return False
    cr, cb = float(np.median(core[..., 1])), float(np.median(core[..., 2]))
    return 130 <= cr <= 185 and 75 <= cb <= 135


def _has_eye(grey: NDArray[np.uint8], box: Box, cascades: _Cascades) -> bool:
    x, y, w, h = box
    upper = grey[y + int(0.15 * h) : y + int(0.6 * h), x : x + w]
    if min(upper.shape) < 12:
        return False
    side = max(8, w // 10)
    with cascades.lock:
        eyes = cascades.eye.detectMultiScale(
            upper, scaleFactor=1.1, minNeighbors=3, minSize=(side, side)
        )
    return len(eyes) > 0


def feature_zones(shape: tuple[int, int], boxes: list[Box], *, nostrils: bool) -> BoolMap:
    """Eyes, brows and lips (and the nostrils when asked) of every face, as a boolean map."""
    zones = np.zeros(shape, np.uint8)
    parts = _EYES + _BROWS + _LIPS + (_NOSTRILS if nostrils else ())
    for x, y, w, h in boxes:
        for cx, cy, rx, ry in parts:
            centre = (round(x + cx * w), round(y + cy * h))
            axes = (max(1, round(rx * w)), max(1, round(ry * h)))
            cv2.ellipse(zones, centre, axes, 0, 0, 360, 1, thickness=-1)
    return zones.astype(bool)


def skin_mask(proxy: NDArray[np.uint8], boxes: list[Box]) -> FloatMap:
    """Soft skin mask in [0, 1] on the proxy: colour x face oval x smoothness, features cut out.

    The colour model is a Gaussian in CrCb fitted on the cheeks and nose of each face, so it
    follows that person's skin and the light of that photo; the oval keeps it to the face and
    the smoothness gate removes hair and brows, whose chroma is often close to skin.
    """
    height, width = proxy.shape[:2]
    mask = np.zeros((height, width), np.float32)
    if not boxes:
        return mask
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
    zones = feature_zones((height, width), boxes, nostrils=False).astype(np.float32)
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
