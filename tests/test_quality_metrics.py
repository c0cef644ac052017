"""Pair metrics and flags on known cases: identical, blurred, hue-shifted, really retouched."""

from __future__ import annotations

import io
import math
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from skinfix_nb.local.engine import retouch
from skinfix_nb.quality import QAThresholds, flag_names, pair_metrics
from skinfix_nb.quality.flags import resolve_thresholds
from skinfix_nb.quality.metrics import measure_arrays, ssim_luma

SAMPLES = Path(__file__).resolve().parents[1] / "skinfix_nb" / "samples"


def sample(name: str) -> Image.Image:
    with Image.open(SAMPLES / name) as image:
        return image.convert("RGB")


def blurred(image: Image.Image, sigma: float = 2.5) -> Image.Image:
    return Image.fromarray(cv2.GaussianBlur(np.asarray(image), (0, 0), sigma))


def hue_shifted(image: Image.Image, steps: int = 8) -> Image.Image:
    hsv = cv2.cvtColor(np.asarray(image), cv2.COLOR_RGB2HSV)
    hsv[..., 0] = (hsv[..., 0].astype(np.int16) + steps) % 180
    return Image.fromarray(cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB))


def flags(before: Image.Image, after: Image.Image, **limits: float) -> list[str]:
    metrics = pair_metrics(before, after)
    return flag_names(metrics.as_dict(), resolve_thresholds(limits or None))


@pytest.fixture(scope="module")
def grace() -> Image.Image:
    return sample("grace_hopper.jpg")


def test_identical_images_have_ssim_one_and_no_change(grace: Image.Image) -> None:
    metrics = pair_metrics(grace, grace.copy())
    assert metrics.ssim == pytest.approx(1.0, abs=1e-6)
    assert metrics.psnr == math.inf
    assert metrics.mean_abs_change == 0.0
    assert metrics.skin_change == 0.0
    assert metrics.background_change == 0.0
    assert metrics.background_changed_pct == 0.0
    assert metrics.background_altered_pct == 0.0
    assert metrics.sharpness_ratio == pytest.approx(1.0)
    assert metrics.delta_e == 0.0
    assert metrics.face_found
    assert not metrics.size_differs
    assert flag_names(metrics.as_dict(), QAThresholds()) == []


def test_global_blur_changes_the_background_and_drops_sharpness(grace: Image.Image) -> None:
    metrics = pair_metrics(grace, blurred(grace))
    assert metrics.background_change > 5.0
    assert metrics.background_changed_pct > 40.0
    assert metrics.background_altered_pct > 10.0
    assert metrics.sharpness_ratio < 0.05
    assert metrics.feature_sharpness_ratio < 0.05
    assert metrics.ssim < 0.8
    found = flag_names(metrics.as_dict(), QAThresholds())
    assert {"background_changed", "features_blurred", "sharpness_drop"} <= set(found)
    assert "colour_shift" not in found  # a blur moves no mean colour


def test_hue_shift_raises_a_colour_shift_flag() -> None:
    astronaut = sample("astronaut.png")
    metrics = pair_metrics(astronaut, hue_shifted(astronaut))
    assert math.hypot(metrics.delta_a, metrics.delta_b) > 3.0
    assert metrics.delta_e > 5.0
    assert "colour_shift" in flag_names(metrics.as_dict(), QAThresholds())
    assert "features_blurred" not in flag_names(metrics.as_dict(), QAThresholds())


@pytest.mark.parametrize("name", ["grace_hopper.jpg", "astronaut.png", "luispedro.jpg"])
def test_real_retouch_changes_skin_and_leaves_the_rest(name: str) -> None:
    before = sample(name)
    metrics = pair_metrics(before, retouch(before))
    assert metrics.face_found
    assert metrics.skin_change > 1.0
    assert metrics.skin_changed_pct > 20.0
    assert metrics.skin_change > 20 * metrics.background_change
    assert metrics.background_changed_pct < 1.0
    assert metrics.background_altered_pct < 0.5
    assert metrics.feature_sharpness_ratio > 0.9
    assert metrics.ssim > 0.95
    assert flag_names(metrics.as_dict(), QAThresholds()) == []


@pytest.mark.parametrize(("codec", "quality"), [("WEBP", 75), ("JPEG", 75)])
def test_lossy_re_encoding_alone_raises_no_flag(codec: str, quality: int) -> None:
    before = sample("astronaut.png")
    buffer = io.BytesIO()
    retouch(before).save(buffer, codec, quality=quality)
    metrics = pair_metrics(before, buffer.getvalue())
    assert metrics.background_changed_pct > 10.0  # codec noise: many pixels move a little
    assert metrics.background_altered_pct < 0.5  # but nothing was really altered
    assert flag_names(metrics.as_dict(), QAThresholds()) == []


def test_image_without_a_face_is_flagged_and_has_no_skin_figures() -> None:
    camera = sample("camera.png")
    metrics = pair_metrics(camera, camera.copy())
    assert not metrics.face_found
    assert math.isnan(metrics.skin_change)
    assert math.isnan(metrics.feature_sharpness_ratio)
    assert metrics.background_change == 0.0
    assert flag_names(metrics.as_dict(), QAThresholds()) == ["no_face"]


def test_output_of_another_size_is_compared_at_the_input_size(grace: Image.Image) -> None:
    bigger = grace.resize((grace.width * 2, grace.height * 2), Image.Resampling.LANCZOS)
    metrics = pair_metrics(grace, bigger)
    assert metrics.size_differs
    assert (metrics.width, metrics.height) == grace.size
    assert metrics.ssim > 0.9  # the same picture, only resampled
    assert "size_differs" in flag_names(metrics.as_dict(), QAThresholds())


def test_large_pairs_are_measured_on_a_copy_within_the_pixel_budget(grace: Image.Image) -> None:
    large = grace.resize((3000, 3516), Image.Resampling.BILINEAR)
    metrics = pair_metrics(large, large.copy(), max_pixels=250_000)
    assert metrics.width * metrics.height <= 250_000
    assert metrics.width / metrics.height == pytest.approx(3000 / 3516, rel=0.01)
    assert metrics.ssim == pytest.approx(1.0, abs=1e-6)


def test_inputs_may_be_paths_and_bytes(tmp_path: Path, grace: Image.Image) -> None:
    path = tmp_path / "after.png"
    blurred(grace).save(path)
    from_path = pair_metrics(SAMPLES / "grace_hopper.jpg", path)
    from_bytes = pair_metrics((SAMPLES / "grace_hopper.jpg").read_bytes(), path.read_bytes())
    assert from_path == from_bytes
    assert from_path.background_change > 5.0


def test_thresholds_are_user_settable(grace: Image.Image) -> None:
    after = blurred(grace)
    assert "background_changed" in flags(grace, after)
    lenient = {"background_altered_pct": 100.0}
    assert "background_changed" not in flags(grace, after, **lenient)
    with pytest.raises(TypeError, match="background_chnage"):
        resolve_thresholds({"background_chnage": 1.0})
    with pytest.raises(TypeError, match="QAThresholds"):
        resolve_thresholds(3.0)  # type: ignore[arg-type]
    with pytest.raises(AttributeError):
        QAThresholds().background_altered_pct = 1.0  # type: ignore[misc]


def test_flags_ignore_missing_figures() -> None:
    assert flag_names({"ssim": math.nan, "delta_a": None}, QAThresholds()) == []
    assert flag_names({"fetch_failed": True, "nsfw": True}, QAThresholds()) == [
        "fetch_failed",
        "nsfw",
    ]


def test_bad_arguments_say_what_is_wrong(grace: Image.Image) -> None:
    with pytest.raises(ValueError, match="max_pixels"):
        pair_metrics(grace, grace, max_pixels=0)
    rgb = np.zeros((4, 4, 3), np.uint8)
    with pytest.raises(ValueError, match="one shape"):
        measure_arrays(
            rgb,
            np.zeros((4, 5, 3), np.uint8),
            skin_mask=np.zeros((4, 4), np.float32),
            feature_mask=np.zeros((4, 4), bool),
        )


def test_ssim_matches_the_reference_definition(grace: Image.Image) -> None:
    skimage_metrics = pytest.importorskip("skimage.metrics")
    before = cv2.cvtColor(np.asarray(grace).astype(np.float32), cv2.COLOR_RGB2GRAY)
    after = cv2.cvtColor(np.asarray(blurred(grace, 1.2)).astype(np.float32), cv2.COLOR_RGB2GRAY)
    reference = skimage_metrics.structural_similarity(
        before.astype(np.float64),
        after.astype(np.float64),
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
        data_range=255.0,
    )
    assert ssim_luma(before, after) == pytest.approx(reference, abs=0.01)


def test_metrics_need_neither_scikit_image_nor_matplotlib() -> None:
    code = (
        "import sys\n"
        "from skinfix_nb.quality import pair_metrics\n"
        f"pair_metrics({str(SAMPLES / 'astronaut.png')!r}, {str(SAMPLES / 'astronaut.png')!r})\n"
        "print(sorted(m for m in ('skimage', 'matplotlib', 'scipy') if m in sys.modules))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == "[]"
