"""Before/after metrics for one retouched pair, with numpy and OpenCV only.

Every metric is computed on an area-downscaled copy of at most ``max_pixels`` pixels
(1 MP by default): retouch problems (a changed background, blurred eyes, a colour cast)
show at that scale, and a 12 MP pair then costs a small fraction of a second instead of
the 7-16 s an exact full-size SSIM or CIEDE2000 would take.

Regions come from the engine's face analysis of the *before* image: ``skin`` is where the
skin mask is at least 0.5, ``features`` is the eyes/brows/lips mask, and ``background`` is
everything clearly outside both (skin mask below 0.05), so the feathered rim of the mask
counts in neither.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np
import numpy.typing as npt
from PIL import Image

from skinfix_nb.images import ImageSource, open_image

if TYPE_CHECKING:
    from skinfix_nb.local.engine import FaceAnalysis

__all__ = [
    "ALTERED_LEVELS",
    "ALTERED_SIGMA",
    "CHANGED_LEVELS",
    "DEFAULT_MAX_PIXELS",
    "PairMetrics",
    "pair_metrics",
]

DEFAULT_MAX_PIXELS = 1_000_000
"""Pixel budget of the copy the metrics are computed on."""

CHANGED_LEVELS = 2.0
"""A pixel counts as changed when its mean absolute RGB change exceeds this (0-255 levels)."""

ALTERED_LEVELS = 4.0
"""A pixel counts as altered when its low-passed change exceeds this (0-255 levels)."""

ALTERED_SIGMA = 2.0
"""Gaussian sigma (pixels of the metric copy) of the low-pass behind ``*_altered_pct``.

Re-encoding alone (WebP at quality 80, JPEG at 75) moves half of all pixels by more than
2 levels, but as fine-grained noise: after this low-pass it alters under 0.3 % of them by
more than 4 levels, while a real edit (a blur, a brightness change, painted content) keeps
altering a large share.
"""

_SKIN_INSIDE = 0.5
_SKIN_OUTSIDE = 0.05
_MIN_REGION_PIXELS = 64
# Wang et al. 2004: 11x11 Gaussian window, sigma 1.5, K1 = 0.01, K2 = 0.03, L = 255.
_SSIM_SIGMA = 1.5
_SSIM_C1 = (0.01 * 255) ** 2
_SSIM_C2 = (0.03 * 255) ** 2

_CHANNEL_MEAN = np.full((1, 3), 1.0 / 3.0, dtype=np.float32)
_CHANNEL_SUM = np.ones((1, 3), dtype=np.float32)

FloatArray = npt.NDArray[Any]  # float32 planes; OpenCV's stubs type results loosely
BoolArray = npt.NDArray[np.bool_]


@dataclass(frozen=True)
class PairMetrics:
    """What changed between a before and an after image.

    Changes are in 0-255 levels (mean over R, G, B); ``*_changed_pct`` are percentages of
    the region's pixels changed by more than :data:`CHANGED_LEVELS`. Region figures are NaN
    when the region is empty (no face found means no skin and no features).

    Attributes
    ----------
    ssim : float
        Structural similarity of the luma, 1.0 for identical images.
    psnr : float
        Peak signal-to-noise ratio over RGB in dB; ``inf`` for identical images.
    mean_abs_change : float
        Mean absolute change over the whole image.
    skin_change, skin_changed_pct : float
        Change inside the skin mask: where a retouch should act.
    background_change, background_changed_pct : float
        Change clearly outside skin and features: a retouch should leave it alone. Lossy
        re-encoding of the output alone shows here (WebP at quality 80: about 2.5 levels,
        half of the pixels over 2 levels).
    background_altered_pct : float
        Percentage of background pixels altered by more than :data:`ALTERED_LEVELS` once
        the difference is low-passed (:data:`ALTERED_SIGMA`): real edits, without codec noise.
    feature_change, feature_changed_pct : float
        Change on eyes, brows and lips.
    sharpness_before, sharpness_after, sharpness_ratio : float
        Variance of the Laplacian of the luma, and after / before (1.0 = as sharp).
    feature_sharpness_ratio : float
        The same ratio over the feature mask only: below 1 means blurred eyes or lips.
    delta_e : float
        Mean CIE76 colour difference (Lab); about 2.3 is just noticeable.
    delta_l, delta_a, delta_b : float
        Mean signed shift of L, a, b (after - before): a cast shows as a non-zero a or b.
    size_differs : bool
        The after image has another size than the before image.
    face_found : bool
        The face analysis found a face in the before image.
    width, height : int
        Size of the downscaled copy the metrics were computed on.
    """

    ssim: float
    psnr: float
    mean_abs_change: float
    skin_change: float
    skin_changed_pct: float
    background_change: float
    background_changed_pct: float
    background_altered_pct: float
    feature_change: float
    feature_changed_pct: float
    sharpness_before: float
    sharpness_after: float
    sharpness_ratio: float
    feature_sharpness_ratio: float
    delta_e: float
    delta_l: float
    delta_a: float
    delta_b: float
    size_differs: bool
    face_found: bool
    width: int
    height: int

    def as_dict(self) -> dict[str, Any]:
        """The metrics as a plain dict (for a DataFrame row or JSON)."""
        return asdict(self)


def pair_metrics(
    before: ImageSource,
    after: ImageSource,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    analyze: Callable[[Image.Image], FaceAnalysis] | None = None,
) -> PairMetrics:
    """Measure what a retouch changed between ``before`` and ``after``.

    Parameters
    ----------
    before, after : path, bytes, file object or PIL.Image.Image
        The original and the retouched image (anything :func:`~skinfix_nb.images.open_image`
        takes). An ``after`` of another size is resized to the ``before`` copy's size and
        reported through ``size_differs``.
    max_pixels : int
        Pixel budget of the downscaled copy the metrics are computed on.
    analyze : callable, optional
        Face analysis of the downscaled before image; default the local engine's
        :func:`~skinfix_nb.local.engine.analyze_face`.

    Returns
    -------
    PairMetrics
    """
    if max_pixels < 1:
        raise ValueError(f"max_pixels must be a positive pixel count, got {max_pixels!r}")
    before_image = _as_image(before)
    after_image = _as_image(after)
    size_differs = before_image.size != after_image.size
    before_rgb = _downscaled_rgb(before_image, max_pixels)
    height, width = before_rgb.shape[:2]
    after_rgb = (
        _downscaled_rgb(after_image, max_pixels, size=(width, height))
        if size_differs
        else _downscaled_rgb(after_image, max_pixels)  # the same reduction as the before image
    )
    if analyze is None:
        from skinfix_nb.local.engine import analyze_face

        analyze = analyze_face
    analysis = analyze(Image.fromarray(before_rgb))
    skin = np.asarray(analysis.skin_mask, dtype=np.float32)
    features = np.asarray(analysis.feature_mask, dtype=bool)
    if skin.shape != (height, width) or features.shape != (height, width):
        raise ValueError(
            f"face analysis masks are {skin.shape} and {features.shape}, expected "
            f"{(height, width)}: the analysis must return masks of the image's size"
        )
    return measure_arrays(
        before_rgb,
        after_rgb,
        skin_mask=skin,
        feature_mask=features,
        size_differs=size_differs,
        face_found=bool(analysis.face_found),
    )


def measure_arrays(
    before_rgb: npt.NDArray[np.uint8],
    after_rgb: npt.NDArray[np.uint8],
    *,
    skin_mask: FloatArray,
    feature_mask: BoolArray,
    size_differs: bool = False,
    face_found: bool = True,
) -> PairMetrics:
    """The metrics for two ``uint8`` RGB arrays of the same shape and their masks."""
    if before_rgb.shape != after_rgb.shape or before_rgb.ndim != 3 or before_rgb.shape[2] != 3:
        raise ValueError(
            f"expected two HxWx3 arrays of one shape, got {before_rgb.shape} and {after_rgb.shape}"
        )
    before_f = before_rgb.astype(np.float32)
    after_f = after_rgb.astype(np.float32)
    difference = after_f - before_f
    change = cv2.transform(np.abs(difference), _CHANNEL_MEAN)
    low_passed = cv2.GaussianBlur(difference, (0, 0), ALTERED_SIGMA)
    altered = cv2.transform(np.abs(low_passed), _CHANNEL_MEAN)
    skin = skin_mask >= _SKIN_INSIDE
    features = feature_mask & ~skin
    background = (skin_mask < _SKIN_OUTSIDE) & ~feature_mask
    luma_before = cv2.cvtColor(before_f, cv2.COLOR_RGB2GRAY)
    luma_after = cv2.cvtColor(after_f, cv2.COLOR_RGB2GRAY)
    lap_before = cv2.Laplacian(luma_before, cv2.CV_32F)
    lap_after = cv2.Laplacian(luma_after, cv2.CV_32F)
    sharp_before = float(lap_before.var(dtype=np.float64))
    sharp_after = float(lap_after.var(dtype=np.float64))
    delta_e, delta_l, delta_a, delta_b = _colour_shift(before_f, after_f)
    height, width = before_rgb.shape[:2]
    return PairMetrics(
        ssim=ssim_luma(luma_before, luma_after),
        psnr=psnr(before_f, after_f),
        mean_abs_change=float(change.mean()),
        skin_change=_region_mean(change, skin),
        skin_changed_pct=_region_changed_pct(change, skin),
        background_change=_region_mean(change, background),
        background_changed_pct=_region_changed_pct(change, background),
        background_altered_pct=_region_changed_pct(altered, background, ALTERED_LEVELS),
        feature_change=_region_mean(change, features),
        feature_changed_pct=_region_changed_pct(change, features),
        sharpness_before=sharp_before,
        sharpness_after=sharp_after,
        sharpness_ratio=_ratio(sharp_after, sharp_before),
        feature_sharpness_ratio=_ratio(
            _region_var(lap_after, features), _region_var(lap_before, features)
        ),
        delta_e=delta_e,
        delta_l=delta_l,
        delta_a=delta_a,
        delta_b=delta_b,
        size_differs=size_differs,
        face_found=face_found,
        width=width,
        height=height,
    )


def ssim_luma(before: FloatArray, after: FloatArray) -> float:
    """Mean SSIM of two float32 luma planes (0-255) with an 11x11, sigma 1.5 Gaussian window."""

    def blur(plane: FloatArray) -> FloatArray:
        return cv2.GaussianBlur(plane, (11, 11), _SSIM_SIGMA, borderType=cv2.BORDER_REFLECT)

    mu_x = blur(before)
    mu_y = blur(after)
    mu_xx = mu_x * mu_x
    mu_yy = mu_y * mu_y
    mu_xy = mu_x * mu_y
    var_x = blur(before * before) - mu_xx
    var_y = blur(after * after) - mu_yy
    cov = blur(before * after) - mu_xy
    ssim_map = ((2 * mu_xy + _SSIM_C1) * (2 * cov + _SSIM_C2)) / (
        (mu_xx + mu_yy + _SSIM_C1) * (var_x + var_y + _SSIM_C2)
    )
    return float(ssim_map.mean(dtype=np.float64))


def psnr(before: FloatArray, after: FloatArray) -> float:
    """PSNR in dB for 0-255 images; ``inf`` when they are identical."""
    mse = float(np.mean((after - before) ** 2, dtype=np.float64))
    return math.inf if mse == 0.0 else 10.0 * math.log10(255.0**2 / mse)


def _colour_shift(before: FloatArray, after: FloatArray) -> tuple[float, float, float, float]:
    """Mean CIE76 difference and mean signed L, a, b shift (OpenCV float Lab: L 0-100)."""
    diff = cv2.cvtColor(after / 255.0, cv2.COLOR_RGB2Lab) - cv2.cvtColor(
        before / 255.0, cv2.COLOR_RGB2Lab
    )
    delta_e = cv2.sqrt(cv2.transform(diff * diff, _CHANNEL_SUM))
    mean_l, mean_a, mean_b, _ = cv2.mean(diff)
    return float(cv2.mean(delta_e)[0]), float(mean_l), float(mean_a), float(mean_b)


def _as_image(source: ImageSource) -> Image.Image:
    """A decoded image; PIL images are taken as they are (no full-size copy)."""
    return source if isinstance(source, Image.Image) else open_image(source)


def _downscaled_rgb(
    image: Image.Image, max_pixels: int, *, size: tuple[int, int] | None = None
) -> npt.NDArray[np.uint8]:
    """An RGB uint8 array, area-downscaled to ``size`` or to fit ``max_pixels``.

    Without ``size`` the image is box-averaged by the smallest whole factor that fits the
    budget (Pillow's ``reduce``, done before any pixel reaches numpy): that is what keeps a
    12 MP pair cheap. With ``size`` (the other image of the pair), a whole-factor reduction
    does the bulk and OpenCV's area interpolation the exact rest.
    """
    width, height = image.size
    if size is None:
        factor = _fitting_factor(width, height, max_pixels)
        reduced = image.reduce(factor) if factor > 1 else image
        return _rgb_array(reduced)
    factor = min(width // size[0], height // size[1])
    reduced = image.reduce(factor) if factor >= 2 else image
    rgb = _rgb_array(reduced)
    if (rgb.shape[1], rgb.shape[0]) == size:
        return rgb
    shrinking = size[0] * size[1] <= rgb.shape[0] * rgb.shape[1]
    interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    return np.asarray(cv2.resize(rgb, size, interpolation=interpolation), dtype=np.uint8)


def _fitting_factor(width: int, height: int, max_pixels: int) -> int:
    """The smallest whole factor whose ``reduce`` result has at most ``max_pixels`` pixels."""
    factor = max(1, math.ceil(math.sqrt(width * height / max_pixels)))
    while math.ceil(width / factor) * math.ceil(height / factor) > max_pixels:
        factor += 1
    return factor


def _rgb_array(image: Image.Image) -> npt.NDArray[np.uint8]:
    return np.asarray(image if image.mode == "RGB" else image.convert("RGB"))


def _region_mean(values: FloatArray, region: BoolArray) -> float:
    if int(region.sum()) < _MIN_REGION_PIXELS:
        return math.nan
    return float(values[region].mean(dtype=np.float64))


def _region_changed_pct(
    change: FloatArray, region: BoolArray, levels: float = CHANGED_LEVELS
) -> float:
    count = int(region.sum())
    if count < _MIN_REGION_PIXELS:
        return math.nan
    return 100.0 * int((change[region] > levels).sum()) / count


def _region_var(values: FloatArray, region: BoolArray) -> float:
    if int(region.sum()) < _MIN_REGION_PIXELS:
        return math.nan
    return float(values[region].var(dtype=np.float64))


def _ratio(after: float, before: float) -> float:
    if math.isnan(after) or math.isnan(before) or before <= 0.0:
        return math.nan
    return after / before
