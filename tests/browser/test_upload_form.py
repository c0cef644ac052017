"""The upload form and the display helpers, live in JupyterLab 4 and headless Chromium."""

from __future__ import annotations

from pathlib import Path

import pytest

import skinfix_nb
from tests.browser.jupyterlab import LabPage

pytestmark = pytest.mark.browser

PORTRAIT = Path(skinfix_nb.__file__).parent / "samples" / "grace_hopper.jpg"


def test_upload_form_retouches_a_file_picked_in_the_browser(lab_page: LabPage) -> None:
    lab_page.open("upload_form.ipynb")
    state = lab_page.run_all()
    assert lab_page.problems(state) == []
    assert sum(cell["widgets_rendered"] for cell in state["cells"]) == 1

    lab_page.pick_file(PORTRAIT)
    lab_page.wait_for_kernel("form.received is not None")
    lab_page.click_button("Retouch")
    lab_page.wait_for_kernel("not form.pending and form.run is not None")

    # the kernel got the exact file, ran it, and holds the comparison it shows
    report = lab_page.kernel(
        "print(form.received.name, form.received.size, form.error, form.run.status, "
        "form.run.cost, form.comparison is not None)"
    )
    assert report.split() == [
        PORTRAIT.name,
        str(PORTRAIT.stat().st_size),
        "None",
        "succeeded",
        "0.12",
        "True",
    ]
    comparison = lab_page.page.locator(".skinfix-compare")
    comparison.wait_for(state="visible")
    decoded = comparison.locator("img").evaluate_all(
        "imgs => imgs.map(i => i.complete && i.naturalWidth)"
    )
    assert len(decoded) == 2
    assert all(width > 0 for width in decoded)
    assert "$0.12" in lab_page.page.locator(".widget-html", has_text="Done").inner_text()

    assert lab_page.problems() == []
    assert not [e for e in lab_page.console_errors if "widget" in e.lower()], (
        lab_page.console_errors
    )
    shots = lab_page.screenshot_widgets("upload_form.after-retouch")
    assert all(path.stat().st_size > 0 for path in shots)


def test_display_helpers_render_and_gallery_opens_a_comparison(lab_page: LabPage) -> None:
    lab_page.open("display_helpers.ipynb")
    state = lab_page.run_all()
    assert lab_page.problems(state) == []
    # interactive comparison and gallery are widgets; the static comparison is HTML
    assert sum(cell["widgets_rendered"] for cell in state["cells"]) == 2
    assert lab_page.page.locator(".skinfix-compare").count() == 1
    assert lab_page.page.locator(".skinfix-tile").count() == 2
    lab_page.page.locator(".skinfix-tile", has_text="succeeded").first.wait_for(state="visible")

    selected = lab_page.page.locator(".widget-dropdown select").evaluate(
        "select => select.selectedIndex >= 0 ? select.options[select.selectedIndex].text : ''"
    )
    assert selected.replace("\xa0", " ") == "all (3)"  # ipywidgets renders spaces as NBSP
    lab_page.click_button("Next")
    lab_page.wait_for_kernel("grid.page == 1")
    assert lab_page.page.locator(".skinfix-tile").inner_text().count("no face found <script>") == 1
    assert lab_page.page.locator("button.jupyter-button", has_text="Compare").is_disabled()
    lab_page.click_button("Previous")
    lab_page.wait_for_kernel("grid.page == 0")
    lab_page.click_button("Compare", index=1)
    lab_page.wait_for_kernel(
        "len(grid.detail.children) == 2 and grid.detail.children[1].pair.run_id == runs[1].id"
    )
    lab_page.page.locator(".jupyter-button", has_text="Close").wait_for(state="visible")

    lab_page.click_button("Blend")
    lab_page.wait_for_kernel("view.mode.value == 'blend'")
    assert lab_page.problems() == []
    assert not [e for e in lab_page.console_errors if "widget" in e.lower()], (
        lab_page.console_errors
    )
    lab_page.screenshot_widgets("display_helpers")
