"""The HTML report opened in headless Chromium: every image shows, nothing is fetched."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from skinfix_nb import labels
from skinfix_nb.local.engine import retouch
from skinfix_nb.quality import report
from tests.browser.jupyterlab import CHROMIUM, CHROMIUM_FLAGS, artifacts_dir, missing_requirements

pytestmark = pytest.mark.browser

SAMPLES = Path(__file__).resolve().parents[1] / "skinfix_nb" / "samples"


@pytest.fixture
def report_path(tmp_path: Path) -> Path:
    reason = missing_requirements()
    if reason is not None:
        if os.environ.get("SKINFIX_REQUIRE_BROWSER") == "1":
            pytest.fail(f"SKINFIX_REQUIRE_BROWSER=1 but {reason}")
        pytest.skip(reason)
    rows = []
    for name in ("grace_hopper.jpg", "camera.png"):
        with Image.open(SAMPLES / name) as image:
            before = image.convert("RGB")
        output = tmp_path / f"out-{name}.png"
        retouch(before).save(output)
        rows.append((str(SAMPLES / name), str(output)))
    blurred = tmp_path / "blurred.png"
    Image.fromarray(cv2.GaussianBlur(np.asarray(before), (0, 0), 3)).save(blurred)
    rows += [(str(SAMPLES / "camera.png"), str(blurred)), (rows[0][0], str(tmp_path / "gone.png"))]
    df = pd.DataFrame(rows, columns=["image_url", "output_url"])
    df["run_id"] = [f"run-{i}" for i in range(len(df))]
    df["status"] = "succeeded"
    store = tmp_path / "labels.sqlite3"
    with labels.LabelStore(store) as saved:
        saved.set("run-0", "accepted")
        saved.set("run-2", "rejected", note="blurred all over")
    return report(df, tmp_path / "qa.html", labels=store, title="Browser check")


def test_report_renders_every_image_offline(report_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    requested: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_FLAGS
        )
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            page.on("request", lambda request: requested.append(request.url))
            page.goto(report_path.as_uri(), wait_until="load")
            images = page.evaluate(
                "() => [...document.images].map(i => ({alt: i.alt, ok: i.complete, "
                "width: i.naturalWidth, src: i.src.slice(0, 11)}))"
            )
            svgs = page.locator("svg.skinfix-plot").count()
            title = page.title()
            shot = artifacts_dir() / "qa_report.full.png"
            page.screenshot(path=str(shot), full_page=True)
        finally:
            browser.close()
    assert title == "Browser check"
    assert len(images) >= 10  # worst pairs (3 each) and flagged thumbnails (2 each)
    assert all(image["ok"] and image["width"] > 0 for image in images), images
    assert {image["src"] for image in images} == {"data:image/"}
    assert svgs == 6
    # only the report itself was loaded: no image, font, style or script from anywhere
    assert [url for url in requested if not url.startswith("data:")] == [report_path.as_uri()]
    assert shot.stat().st_size > 50_000
