"""The local retouch engine on real portraits: it must heal, keep what is not skin, and keep format."""

from __future__ import annotations

import io
import json
from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np
import pytest
from PIL import Image, ImageCms

from skinfix_nb import samples
from skinfix_nb.errors import ConfigurationError, InvalidImageError
from skinfix_nb.local.engine import analyze_face, retouch, retouch_with_info

# Flat cheek points of luispedro.jpg (x, y), read off the image by hand.
CHEEK_SPOTS = ((63, 209), (152, 204), (169, 181))


def _paint_dark_spot(rgb: np.ndarray, x: int, y: int, radius: float) -> None:
    yy, xx = np.mgrid[0 : rgb.shape[0], 0 : rgb.shape[1]]
    profile = np.exp(-0.5 * ((xx - x) ** 2 + (yy - y) ** 2) / (0.6 * radius) ** 2)[..., None]
    mole = np.array([95, 62, 45], np.float32)
    rgb[:] = np.clip(rgb + 0.65 * profile * (mole - rgb) + 0.5, 0, 255)


def _spot_contrast(rgb: np.ndarray, x: int, y: int, radius: float) -> float:
    """Mean luma of the ring 1.5r-3r minus mean luma of the disk: how dark the spot is."""
    luma = rgb.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    yy, xx = np.mgrid[0 : rgb.shape[0], 0 : rgb.shape[1]]
    distance = np.hypot(xx - x, yy - y)
    ring = (distance >= 1.5 * radius) & (distance <= 3 * radius)
    return float(luma[ring].mean() - luma[distance <= radius].mean())


def test_retouch_heals_painted_spots_on_a_portrait() -> None:
    clean = np.asarray(samples.load("luispedro"), np.float32)
    blemished = clean.copy()
    radius = 4.0
    for x, y in CHEEK_SPOTS:
        _paint_dark_spot(blemished, x, y, radius)
    blemished_u8 = blemished.astype(np.uint8)

    output, info = retouch_with_info(Image.fromarray(blemished_u8))
    result = np.asarray(output)

    assert info.mode == "face"
    assert info.blemishes >= len(CHEEK_SPOTS)
    for x, y in CHEEK_SPOTS:
        painted = _spot_contrast(blemished_u8, x, y, radius) - _spot_contrast(clean, x, y, radius)
        left = _spot_contrast(result, x, y, radius) - _spot_contrast(clean, x, y, radius)
        assert painted > 20, "the painted spot should be clearly visible"
        assert left < 0.3 * painted, f"spot at {(x, y)}: {left:.1f} of {painted:.1f} levels left"


def test_spots_beside_the_nose_and_under_the_eye_are_healed() -> None:
    # close to the features, but on skin: the feature cut-outs follow the detected eyes and
    # mouth, so they no longer swallow these
    spots = ((150, 182), (100, 200), (128, 205))  # luispedro.jpg, placed by hand
    clean = np.asarray(samples.load("luispedro"), np.float32)
    blemished = clean.copy()
    for x, y in spots:
        _paint_dark_spot(blemished, x, y, 4.0)
    blemished_u8 = blemished.astype(np.uint8)

    result = np.asarray(retouch(Image.fromarray(blemished_u8)))

    for x, y in spots:
        painted = _spot_contrast(blemished_u8, x, y, 4.0) - _spot_contrast(clean, x, y, 4.0)
        left = _spot_contrast(result, x, y, 4.0) - _spot_contrast(clean, x, y, 4.0)
        assert painted > 20, "the painted spot should be clearly visible"
        assert left < 0.3 * painted, f"spot at {(x, y)}: {left:.1f} of {painted:.1f} levels left"


def test_a_wrinkle_like_line_is_not_healed_as_a_spot() -> None:
    clean = np.asarray(samples.load("luispedro").convert("RGB"))
    line = np.zeros(clean.shape[:2], np.float32)
    cv2.line(line, (55, 200), (85, 228), 1.0, 2, cv2.LINE_AA)  # a dark crease on the cheek
    line = cv2.GaussianBlur(line, (0, 0), 0.7)[..., None]
    creased = np.clip(clean * (1.0 - 0.5 * line), 0, 255).astype(np.uint8)

    out_clean, info_clean = retouch_with_info(Image.fromarray(clean))
    out_creased, info_creased = retouch_with_info(Image.fromarray(creased))

    assert info_creased.blemishes == info_clean.blemishes
    on_line = line[..., 0] > 0.5
    weights = np.array([0.299, 0.587, 0.114], np.float32)
    painted = ((clean - creased.astype(np.float32)) @ weights)[on_line].mean()
    kept = ((np.asarray(out_clean, np.float32) - np.asarray(out_creased, np.float32)) @ weights)[
        on_line
    ].mean()
    assert painted > 30
    assert kept > 0.85 * painted, f"the crease kept {kept:.1f} of {painted:.1f} levels"


def test_background_outside_the_face_is_untouched() -> None:
    source = samples.load("grace_hopper")
    output, info = retouch_with_info(source)
    before, after = np.asarray(source), np.asarray(output)
    x, y, w, h = info.faces[0]
    assert np.array_equal(before[:, : max(0, x - w // 2)], after[:, : max(0, x - w // 2)])
    assert np.array_equal(before[y + 2 * h :], after[y + 2 * h :])
    assert not np.array_equal(before, after)


@pytest.mark.parametrize("name", samples.PORTRAITS)
def test_each_portrait_has_a_face_and_a_plausible_mask(name: str) -> None:
    image = samples.load(name)
    analysis = analyze_face(image)
    assert analysis.face_found
    assert len(analysis.faces) == 1
    assert analysis.skin_mask.shape == analysis.feature_mask.shape == (image.height, image.width)
    assert analysis.skin_mask.dtype == np.float32
    assert analysis.skin_mask.min() >= 0.0
    assert analysis.skin_mask.max() <= 1.0
    x, y, w, h = analysis.faces[0]
    cheek = analysis.skin_mask[y + int(0.6 * h), x + int(0.25 * w) : x + int(0.75 * w)]
    assert cheek.max() > 0.8
    assert analysis.skin_mask[:5, :5].max() == 0.0  # a corner is never skin here
    assert not (analysis.feature_mask & (analysis.skin_mask > 0.5)).any()


def test_eyes_and_lips_of_luispedro_are_protected() -> None:
    analysis = analyze_face(samples.load("luispedro"))
    for x, y in ((67, 171), (145, 160), (104, 259)):  # eye, eye, lips: placed by hand
        assert analysis.feature_mask[y, x]
        assert analysis.skin_mask[y, x] < 0.1


@pytest.mark.parametrize(
    "image",
    [
        samples.load("camera"),
        Image.fromarray(np.tile(np.linspace(0, 255, 320, dtype=np.uint8), (240, 1))).convert("RGB"),
    ],
    ids=["camera", "gradient"],
)
def test_no_face_leaves_the_image_untouched(image: Image.Image) -> None:
    output, info = retouch_with_info(image)
    assert (info.face_found, info.mode, info.blemishes) == (False, "no_face", 0)
    assert output.mode == image.mode
    assert np.array_equal(np.asarray(output), np.asarray(image))


@pytest.mark.parametrize("size", [(1, 1), (8, 8), (3, 200)])
def test_tiny_images_pass_through(size: tuple[int, int]) -> None:
    image = Image.new("RGB", size, (200, 150, 120))
    output, info = retouch_with_info(image)
    assert output.size == size
    assert info.mode == "no_face"


def test_rgba_keeps_its_alpha_exactly() -> None:
    rgb = samples.load("astronaut")
    alpha = Image.fromarray(
        np.tile(np.linspace(0, 255, rgb.width, dtype=np.uint8), (rgb.height, 1))
    )
    rgba = rgb.copy()
    rgba.putalpha(alpha)
    output, info = retouch_with_info(rgba)
    assert output.mode == "RGBA"
    assert info.mode == "face"
    assert np.array_equal(np.asarray(output)[..., 3], np.asarray(alpha))


def test_greyscale_stays_greyscale_and_is_retouched() -> None:
    grey = samples.load("grace_hopper").convert("L")
    output, info = retouch_with_info(grey)
    assert output.mode == "L"
    assert output.size == grey.size
    assert info.face_found
    assert not np.array_equal(np.asarray(output), np.asarray(grey))


def test_icc_profile_and_exif_orientation() -> None:
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    upright = samples.load("grace_hopper")
    exif = Image.Exif()
    exif[0x0112] = 8  # stored rotated: display turned 90 degrees counter-clockwise
    buffer = io.BytesIO()
    upright.transpose(Image.Transpose.ROTATE_270).save(
        buffer, "JPEG", quality=95, exif=exif, icc_profile=icc
    )

    output, info = retouch_with_info(buffer.getvalue())

    assert output.size == upright.size
    assert output.info["icc_profile"] == icc
    assert info.face_found  # only upright faces are found: orientation was applied


def test_strength_zero_is_identity_and_bad_strength_is_refused() -> None:
    image = samples.load("luispedro")
    output, info = retouch_with_info(image, 0.0)
    assert info.mode == "off"
    assert np.array_equal(np.asarray(output), np.asarray(image))
    for bad in (-0.1, 1.5, float("nan"), "strong"):
        with pytest.raises(ConfigurationError, match="strength"):
            retouch(image, bad)  # type: ignore[arg-type]


def test_stronger_retouch_changes_more() -> None:
    image = samples.load("grace_hopper")
    base = np.asarray(image, np.float32)
    light = np.abs(np.asarray(retouch(image, 0.3), np.float32) - base).mean()
    strong = np.abs(np.asarray(retouch(image, 1.0), np.float32) - base).mean()
    assert 0 < light < strong


def test_bad_input_raises_invalid_image_error() -> None:
    with pytest.raises(InvalidImageError, match="not an image"):
        retouch(b"not an image at all")


def test_info_is_json_ready() -> None:
    _, info = retouch_with_info(samples.load("astronaut"))
    data = json.loads(json.dumps(info.as_dict()))
    assert data["mode"] == "face"
    assert data["face_found"] is True
    assert len(data["faces"]) == 1
    assert len(data["faces"][0]) == 4
    assert {"decode", "detect", "mask", "blemish", "smooth", "blend", "total"} <= set(
        data["timing"]
    )


def test_concurrent_calls_give_the_same_result_as_serial_ones() -> None:
    images = [samples.load(name) for name in (*samples.PORTRAITS, "camera")] * 2
    serial = [np.asarray(retouch(image)) for image in images]
    with ThreadPoolExecutor(max_workers=4) as pool:
        parallel = [np.asarray(out) for out in pool.map(retouch, images)]
    assert all(np.array_equal(a, b) for a, b in zip(serial, parallel, strict=True))
