"""The local skin-retouch engine: classical, CPU-only, offline.

:func:`retouch` finds faces, builds a soft skin mask (eyes, brows and lips cut out), heals
small round spots, evens out the skin's tone while keeping part of its texture, and blends
the result through the mask. Only the bounding box of the skin is processed at full
resolution; detection, masks and spot search run at small fixed scales. When no face is
found the image is returned unchanged, and :class:`RetouchInfo` says so: a wrong guess
would soften a wall or a shirt, which is worse than doing nothing.

Thread-safe: the server calls it from a thread pool. ``cv2.setNumThreads`` is left to the
caller.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray
from PIL import Image

from skinfix_nb.errors import ConfigurationError
from skinfix_nb.images import ImageSource, open_image
from skinfix_nb.local.engine.blemishes import WORK_FACE_WIDTH, heal_blemishes
from skinfix_nb.local.engine.faces import Face, detect_faces, feature_zones, proxy_of, skin_mask
from skinfix_nb.local.engine.smoothing import smoothing_delta

__all__ = ["FaceAnalysis", "RetouchInfo", "analyze_face", "retouch", "retouch_with_info"]

_KEPT_INFO = ("icc_profile", "exif", "dpi")
_MASK_FLOOR = 0.02  # skin weight below which a pixel is left exactly as it was


@dataclass(frozen=True)
class RetouchInfo:
    """What one :func:`retouch_with_info` call did.

    Attributes
    ----------
    faces : list of (x, y, w, h)
        Face boxes in input pixels.
    face_found : bool
        Whether any face was found.
    mode : str
        ``"face"`` (retouched), ``"no_face"`` (no face found: returned unchanged) or
        ``"off"`` (strength 0: returned unchanged).
    blemishes : int
        Spots healed.
    timing : dict of str to float
        Milliseconds per stage: ``decode``, ``detect``, ``mask``, ``blemish``, ``smooth``,
        ``blend`` and ``total``.
    """

    faces: list[tuple[int, int, int, int]]
    face_found: bool
    mode: str
    blemishes: int = 0
    timing: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready copy (lists, not tuples)."""
        data = asdict(self)
        data["faces"] = [list(box) for box in self.faces]
        return data


@dataclass(frozen=True, eq=False)
class FaceAnalysis:
    """Faces and masks at input size, as the engine sees them (used by QA).

    Attributes
    ----------
    faces : list of (x, y, w, h)
        Face boxes in input pixels.
    skin_mask : float32 array, H x W
        Where and how strongly the engine retouches, in [0, 1].
    feature_mask : bool array, H x W
        Eyes, brows and lips, which the engine leaves alone.
    face_found : bool
        Whether any face was found.
    """

    faces: list[tuple[int, int, int, int]]
    skin_mask: NDArray[np.float32]
    feature_mask: NDArray[np.bool_]
    face_found: bool


@dataclass(frozen=True)
class _Geometry:
    proxy_scale: float
    proxy_faces: list[Face]
    skin: NDArray[np.float32]  # on the proxy

    def faces(self) -> list[tuple[int, int, int, int]]:
        """Face boxes in input pixels."""
        return [face.box for face in self.faces_at(1.0)]

    def faces_at(self, scale: float, origin: tuple[float, float] = (0.0, 0.0)) -> list[Face]:
        """Faces on the grid at ``scale`` of the input whose pixel (0, 0) is input ``origin``."""
        shift = (origin[0] * scale, origin[1] * scale)
        return [face.mapped(scale / self.proxy_scale, shift) for face in self.proxy_faces]


def retouch(image: ImageSource, strength: float = 0.8) -> Image.Image:
    """Retouch the skin of the faces in ``image``; see :func:`retouch_with_info`."""
    return retouch_with_info(image, strength)[0]


def retouch_with_info(image: ImageSource, strength: float = 0.8) -> tuple[Image.Image, RetouchInfo]:
    """Retouch the skin of the faces in ``image`` and say what was done.

    Parameters
    ----------
    image : path, bytes, binary file or PIL.Image.Image
        Anything :func:`skinfix_nb.images.open_image` accepts.
    strength : float, default 0.8
        0 leaves the image as it is; 1 applies the full smoothing. Spots are healed fully
        from 0.5 up.

    Returns
    -------
    (PIL.Image.Image, RetouchInfo)
        The result has the input's size, its mode (``RGB``, ``RGBA`` with alpha untouched,
        or ``L``) and its ICC profile; EXIF orientation is already applied.
    """
    strength = _check_strength(strength)
    timing: dict[str, float] = {}
    clock = _Clock(timing)
    picture = open_image(image)
    rgb, alpha = _split(picture)
    clock.lap("decode")
    geometry = _analyse(rgb, picture.mode, clock)
    faces = geometry.faces()
    if not faces or strength == 0.0:
        clock.total()
        mode = "no_face" if not faces else "off"
        return _rebuild(rgb, alpha, picture), RetouchInfo(
            faces, face_found=bool(faces), mode=mode, timing=timing
        )
    result, healed = _retouch_rgb(rgb, geometry, strength, clock)
    output = _rebuild(result, alpha, picture)
    clock.total()
    return output, RetouchInfo(faces, face_found=True, mode="face", blemishes=healed, timing=timing)


def analyze_face(image: ImageSource) -> FaceAnalysis:
    """Faces, skin mask and feature mask of ``image`` at its own size."""
    picture = open_image(image)
    rgb, _ = _split(picture)
    geometry = _analyse(rgb, picture.mode, _Clock({}))
    height, width = rgb.shape[:2]
    skin = _warp_from_proxy(geometry.skin, geometry.proxy_scale, (0, 0), (width, height), 1.0)
    faces = geometry.faces()
    features = feature_zones((height, width), geometry.faces_at(1.0), nostrils=False)
    return FaceAnalysis(faces, np.clip(skin, 0.0, 1.0), features, bool(faces))


def _check_strength(strength: float) -> float:
    if (
        isinstance(strength, bool)
        or not isinstance(strength, int | float)
        or not math.isfinite(strength)
    ):
        raise ConfigurationError(f"strength must be a number between 0 and 1, got {strength!r}")
    if not 0.0 <= strength <= 1.0:
        raise ConfigurationError(f"strength must be between 0 and 1, got {strength}")
    return float(strength)


class _Clock:
    def __init__(self, timing: dict[str, float]) -> None:
        self._timing = timing
        self._start = self._last = time.perf_counter()

    def lap(self, stage: str) -> None:
        now = time.perf_counter()
        self._timing[stage] = round((now - self._last) * 1000.0, 2)
        self._last = now

    def total(self) -> None:
        self._timing["total"] = round((time.perf_counter() - self._start) * 1000.0, 2)


def _split(picture: Image.Image) -> tuple[NDArray[np.uint8], NDArray[np.uint8] | None]:
    """RGB pixels (grey replicated) and the alpha channel, if any."""
    if picture.mode == "RGBA":
        pixels = np.asarray(picture)
        return np.ascontiguousarray(pixels[..., :3]), pixels[..., 3].copy()
    if picture.mode == "L":
        return np.asarray(cv2.cvtColor(np.asarray(picture), cv2.COLOR_GRAY2RGB), np.uint8), None
    return np.array(picture, np.uint8), None


def _rebuild(
    rgb: NDArray[np.uint8], alpha: NDArray[np.uint8] | None, like: Image.Image
) -> Image.Image:
    if like.mode == "L":
        output = Image.fromarray(np.ascontiguousarray(rgb[..., 0]))
    elif alpha is not None:
        output = Image.fromarray(np.dstack([rgb, alpha]))
    else:
        output = Image.fromarray(rgb)
    for key in _KEPT_INFO:
        if key in like.info:
            output.info[key] = like.info[key]
    return output


def _analyse(rgb: NDArray[np.uint8], mode: str, clock: _Clock) -> _Geometry:
    proxy, scale = proxy_of(rgb)
    faces = detect_faces(proxy, colour=mode != "L")
    clock.lap("detect")
    skin = skin_mask(proxy, faces)
    clock.lap("mask")
    return _Geometry(scale, faces, skin)


def _retouch_rgb(
    rgb: NDArray[np.uint8], geometry: _Geometry, strength: float, clock: _Clock
) -> tuple[NDArray[np.uint8], int]:
    """Retouch inside the skin's bounding box; everything outside it stays byte-identical."""
    height, width = rgb.shape[:2]
    roi = _skin_box(geometry, (width, height))
    if roi is None:
        return rgb, 0
    x0, y0, x1, y1 = roi
    faces = geometry.faces()
    face_width = float(max(w for _, _, w, _ in faces))
    region = rgb[y0:y1, x0:x1].astype(np.float32)
    mask = _warp_from_proxy(geometry.skin, geometry.proxy_scale, (x0, y0), (x1 - x0, y1 - y0), 1.0)

    healed = _heal(rgb[y0:y1, x0:x1], region, geometry, (x0, y0), face_width, strength)
    clock.lap("blemish")
    delta = smoothing_delta(region, face_width)
    clock.lap("smooth")
    mask *= np.float32(strength)
    delta *= mask[..., None]
    delta += region
    output = rgb.copy()
    output[y0:y1, x0:x1] = cv2.convertScaleAbs(delta)
    clock.lap("blend")
    return output, healed


def _skin_box(geometry: _Geometry, size: tuple[int, int]) -> tuple[int, int, int, int] | None:
    """Bounding box (x0, y0, x1, y1) in input pixels of every pixel the mask touches."""
    ys, xs = np.nonzero(geometry.skin > _MASK_FLOOR)
    if xs.size == 0:
        return None
    s = geometry.proxy_scale
    width, height = size
    x0 = max(0, math.floor(xs.min() / s) - 2)
    y0 = max(0, math.floor(ys.min() / s) - 2)
    x1 = min(width, math.ceil((xs.max() + 1) / s) + 2)
    y1 = min(height, math.ceil((ys.max() + 1) / s) + 2)
    return x0, y0, x1, y1


def _warp_from_proxy(
    proxy_map: NDArray[np.float32],
    proxy_scale: float,
    origin: tuple[int, int],
    size: tuple[int, int],
    target_scale: float,
) -> NDArray[np.float32]:
    """Resample a proxy map onto a grid of ``size`` at ``target_scale`` starting at ``origin``.

    ``origin`` is in input pixels; pixel centres are aligned exactly, so masks built on the
    proxy land where they belong at any scale.
    """
    ratio = proxy_scale / target_scale
    x0, y0 = origin
    matrix = np.array(
        [
            [ratio, 0.0, (x0 * target_scale + 0.5) * ratio - 0.5],
            [0.0, ratio, (y0 * target_scale + 0.5) * ratio - 0.5],
        ],
        np.float64,
    )
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    warped = cv2.warpAffine(proxy_map, matrix, size, flags=flags, borderMode=cv2.BORDER_REPLICATE)
    return np.asarray(warped, np.float32)


def _heal(
    pixels: NDArray[np.uint8],
    region: NDArray[np.float32],
    geometry: _Geometry,
    origin: tuple[int, int],
    face_width: float,
    strength: float,
) -> int:
    """Heal spots at the working scale and add the correction to ``region`` in place."""
    height, width = pixels.shape[:2]
    work = min(1.0, WORK_FACE_WIDTH / face_width)
    work_size = (max(1, round(width * work)), max(1, round(height * work)))
    small = pixels if work == 1.0 else cv2.resize(pixels, work_size, interpolation=cv2.INTER_AREA)
    skin = _warp_from_proxy(geometry.skin, geometry.proxy_scale, origin, work_size, work)
    local_faces = geometry.faces_at(work, origin)
    keep_out = feature_zones((work_size[1], work_size[0]), local_faces, nostrils=True)
    healing = heal_blemishes(np.ascontiguousarray(small), skin, keep_out, face_width * work)
    weight = np.float32(min(1.0, 2.0 * strength))
    for bx, by, bw, bh in _merge_boxes(healing.boxes, pad=2):
        # the healed disks' footprint in input pixels, and the exact map back to working pixels
        fx0, fy0 = max(0, math.floor(bx / work)), max(0, math.floor(by / work))
        fx1, fy1 = min(width, math.ceil((bx + bw) / work)), min(height, math.ceil((by + bh) / work))
        if fx1 <= fx0 or fy1 <= fy0:
            continue
        matrix = np.array(
            [[work, 0.0, (fx0 + 0.5) * work - 0.5], [0.0, work, (fy0 + 0.5) * work - 0.5]],
            np.float64,
        )
        patch = cv2.warpAffine(
            healing.correction,
            matrix,
            (fx1 - fx0, fy1 - fy0),
            flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
            borderMode=cv2.BORDER_CONSTANT,
        )
        region[fy0:fy1, fx0:fx1] += weight * patch
    return len(healing.boxes)


def _merge_boxes(
    boxes: list[tuple[int, int, int, int]], *, pad: int
) -> list[tuple[int, int, int, int]]:
    """Grow boxes by ``pad`` and merge those that touch, so no pixel is corrected twice."""
    merged = [(x - pad, y - pad, x + w + pad, y + h + pad) for x, y, w, h in boxes]
    changed = True
    while changed:
        changed = False
        for i in range(len(merged)):
            for j in range(i + 1, len(merged)):
                a, b = merged[i], merged[j]
                if a[0] <= b[2] and b[0] <= a[2] and a[1] <= b[3] and b[1] <= a[3]:
                    merged[i] = (min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3]))
                    del merged[j]
                    changed = True
                    break
            if changed:
                break
    return [(x0, y0, x1 - x0, y1 - y0) for x0, y0, x1, y1 in merged]
