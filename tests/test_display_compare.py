"""The static comparison: self-contained, escaped, small; and the interactive view."""

from __future__ import annotations

import base64
import io
import re
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
from PIL import Image

import skinfix_nb
from skinfix_nb import SkinFix
from skinfix_nb.display.comparison import Comparison, compare
from skinfix_nb.display.interactive import InteractiveComparison
from skinfix_nb.local import LocalServer
from skinfix_nb.models import Run
from tests.conftest import FAKE_KEY

SAMPLES = Path(skinfix_nb.__file__).parent / "samples"
PORTRAIT = SAMPLES / "grace_hopper.jpg"
DATA_URI = re.compile(r'src="data:(image/(?:webp|jpeg));base64,([A-Za-z0-9+/=]+)"')


@pytest.fixture(scope="module")
def client(server: LocalServer) -> Iterator[SkinFix]:
    with SkinFix(FAKE_KEY, base_url=server.url) as sf_client:
        yield sf_client


@pytest.fixture(scope="module")
def run(client: SkinFix) -> Run:
    return client.run(client.upload(PORTRAIT))


def embedded_images(markup: str) -> list[Image.Image]:
    return [Image.open(io.BytesIO(base64.b64decode(data))) for _, data in DATA_URI.findall(markup)]


def test_run_comparison_is_self_contained_html(run: Run, client: SkinFix) -> None:
    view = compare(run, client=client)
    markup = view._repr_html_()
    images = embedded_images(markup)
    assert len(images) == 2
    assert all(max(image.size) <= 512 for image in images)
    assert "<script" not in markup
    assert "http://" not in markup  # nothing left to fetch: survives URL expiry and no kernel
    assert "succeeded" in markup
    assert "$0.12" in markup
    assert "512×600 px" in markup
    bundle = view._repr_mimebundle_()
    assert bundle["text/html"] == markup
    assert "cost: $0.12" in bundle["text/plain"]
    assert "sig=" not in bundle["text/plain"]  # presigned query strings stay out


def test_large_images_are_squeezed_under_the_size_limit() -> None:
    view = compare(SAMPLES / "astronaut.png", SAMPLES / "camera.png")
    bundle = view._repr_mimebundle_()
    assert len(bundle["text/html"].encode()) + len(bundle["text/plain"].encode()) <= 60_000
    small = compare(SAMPLES / "astronaut.png", SAMPLES / "camera.png", max_bytes=20_000)
    assert len(small._repr_html_().encode()) < 20_000
    assert len(embedded_images(small._repr_html_())) == 2


def test_bytes_pil_images_and_max_side() -> None:
    before = PORTRAIT.read_bytes()
    after = Image.new("RGB", (640, 480), "teal")
    view = compare(before, after, max_side=200, labels=("Original", "Flat"))
    markup = view._repr_html_()
    assert [max(image.size) for image in embedded_images(markup)] == [200, 200]
    assert "Original" in markup
    assert "640×480 px" in markup
    assert "61306 bytes" in repr(view)


def test_failed_row_shows_its_error_escaped_and_no_output(run: Run) -> None:
    row = pd.Series(
        {"image_url": run.image_url, "output_url": np.nan, "status": "failed",
         "cost": np.nan, "error": "<b>no face</b>", "run_id": "r1"}
    )  # fmt: skip
    markup = compare(row)._repr_html_()
    assert "&lt;b&gt;no face&lt;/b&gt;" in markup
    assert "<b>no face</b>" not in markup
    assert "no output (failed)" in markup
    assert len(embedded_images(markup)) == 1


def test_row_with_cost_and_custom_columns(run: Run) -> None:
    row = pd.Series(
        {"src": run.image_url, "dst": run.output_url, "status": "succeeded", "cost": "0.120000"}
    )
    view = compare(row, columns=("src", "dst"))
    assert view.pair.cost == Decimal("0.12")
    assert "$0.12" in view._repr_html_()
    with pytest.raises(ValueError, match="no 'image_url' column"):
        compare(row)


def test_bad_inputs_are_refused_with_what_to_pass(run: Run) -> None:
    with pytest.raises(TypeError, match="pass a URL, a path, bytes, a PIL image, a Run"):
        compare(42)
    with pytest.raises(ValueError, match="already holds both images"):
        compare(run, PORTRAIT)
    with pytest.raises(ValueError, match="max_side"):
        Comparison(compare(PORTRAIT).pair, max_side=10)


def synthetic_pair() -> tuple[Image.Image, Image.Image]:
    ramp = np.tile(np.linspace(0, 255, 300, dtype=np.uint8), (200, 1))
    before = Image.fromarray(np.stack([ramp, ramp, ramp], axis=2))
    edited = np.asarray(before).copy()
    edited[50:100, 200:260] = 0  # the "retouch" touched only this block
    return before, Image.fromarray(edited)


def test_interactive_wipe_blend_and_heatmap_are_composited_in_the_kernel() -> None:
    before, after = synthetic_pair()
    view = compare(before, after, interactive=True)
    assert isinstance(view, InteractiveComparison)
    assert Image.open(io.BytesIO(view.view.value)).size == (300, 200)

    view.position.value = 0.0
    wiped = np.asarray(view.composite(), dtype=np.int16)
    assert np.abs(wiped[:, 5:] - np.asarray(after, dtype=np.int16)[:, 5:]).max() == 0

    view.mode.value = "blend"
    view.position.value = 0.5
    blended = np.asarray(view.composite(full_resolution=True), dtype=np.int16)
    expected = (np.asarray(before, dtype=np.int16) + np.asarray(after, dtype=np.int16)) / 2
    assert np.abs(blended - expected).max() <= 1

    view.heatmap.value = True
    assert view.position.disabled
    heat = np.asarray(view.composite()).sum(axis=2)
    assert heat[60:90, 210:250].min() > 0
    assert heat[150:, :].max() == 0


def test_interactive_zoom_is_one_to_one_around_the_face() -> None:
    view = compare(PORTRAIT, PORTRAIT, interactive=True)
    left, top, right, bottom = view.zoom_box()
    assert (right - left, bottom - top) == (256, 256)
    assert Image.open(io.BytesIO(view.zoom_before.value)).size == (256, 256)
    face = view._face
    assert face is not None  # the engine finds Grace Hopper's face
    x, y, w, h = face
    assert left <= x + w / 2 <= right
    assert top <= y + h / 2 <= bottom
    view.zoom_to(0, 0)
    assert view.zoom_box() == (0, 0, 256, 256)
    with pytest.raises(ValueError, match="outside the 512x600 image"):
        view.zoom_to(600, 10)


def test_save_writes_the_result_at_full_resolution(
    run: Run, client: SkinFix, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    view = compare(run, client=client, interactive=True)
    target = view.save(tmp_path / "result.jpg")
    with Image.open(target) as saved:
        assert saved.size == (512, 600)
    assert run.output_url is not None
    assert (
        target.read_bytes() == httpx.get(run.output_url).content
    )  # the exact file, not re-encoded
    view.save_button.click()
    assert "Saved to" in view.message.value
    assert (tmp_path / f"skinfix-{run.id}.jpg").read_bytes() == target.read_bytes()


def test_interactive_needs_both_images(run: Run) -> None:
    failed = pd.Series({"image_url": run.image_url, "output_url": None, "status": "failed"})
    with pytest.raises(ValueError, match="no after image \\(run status: failed\\)"):
        compare(failed, interactive=True)
