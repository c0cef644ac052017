"""The review widget in real JupyterLab: labels clicked in the browser survive a kernel restart."""

from __future__ import annotations

import pytest

from tests.browser.jupyterlab import LabPage

pytestmark = pytest.mark.browser

_RESTART = """
async () => {
  const w = window.__lab_nb;
  await w.sessionContext.restartKernel();
  return true;
}
"""
_KERNEL_IDLE = """
() => { const k = window.__lab_nb.sessionContext.session && window.__lab_nb.sessionContext.session.kernel;
        return !!k && k.connectionStatus === 'connected' && k.status === 'idle'; }
"""


def progress(lab_page: LabPage) -> str:
    return str(lab_page.page.locator(".skinfix-review .skinfix-review-progress").inner_text())


def test_labels_given_in_the_browser_survive_a_kernel_restart(lab_page: LabPage) -> None:
    lab_page.open("review_widget.ipynb")
    state = lab_page.run_all()
    assert lab_page.problems(state) == []
    assert sum(cell["widgets_rendered"] for cell in state["cells"]) == 2  # one pair, and grid
    assert progress(lab_page).startswith("0 of 4 reviewed")
    assert lab_page.page.locator(".skinfix-review-tile").count() == 4
    images = lab_page.page.locator(".skinfix-review img")
    images.first.wait_for(state="visible")
    widths = images.evaluate_all("imgs => imgs.map(i => i.naturalWidth)")
    assert len(widths) == 2
    assert all(width > 0 for width in widths)

    lab_page.click_button("Accept")
    lab_page.wait_for_kernel("w.reviewed == 1 and w.position == 1")
    lab_page.click_button("Accept")
    lab_page.wait_for_kernel("w.reviewed == 2 and w.position == 2")
    note = lab_page.page.locator(".skinfix-review textarea")
    note.fill("skin looks waxy")
    lab_page.click_button("Reject")  # leaving the note box sends the note first
    lab_page.wait_for_kernel("w.reviewed == 3")
    lab_page.page.locator(".skinfix-review-progress", has_text="3 of 4 reviewed").wait_for()
    lab_page.screenshot_widgets("review_widget.before-restart")

    lab_page.page.evaluate(_RESTART)
    lab_page.page.wait_for_function(_KERNEL_IDLE)
    assert lab_page.kernel("print('w' in globals())").strip() == "False"  # a fresh kernel
    state = lab_page.run_all()
    assert lab_page.problems(state) == []

    labels = lab_page.kernel("print(w.labels()[['qa_label', 'qa_note']].values.tolist())")
    assert labels.strip() == (
        "[['accepted', ''], ['accepted', ''], ['rejected', 'skin looks waxy'], [None, '']]"
    )
    merged = lab_page.kernel(
        "from skinfix_nb import labels; print(labels.load(results)['qa_label'].tolist())"
    )
    assert merged.strip() == "['accepted', 'accepted', 'rejected', None]"
    assert lab_page.kernel("print(w.position)").strip() == "3"  # opens at the unreviewed pair
    assert lab_page.kernel("print([c.value for c in g.choices])").strip() == (
        "['accepted', 'accepted', 'rejected', '']"
    )
    lab_page.page.locator(
        ".skinfix-review .skinfix-review-progress", has_text="3 of 4 reviewed"
    ).wait_for()

    # keyboard: a focused button takes Space, the shortcut box takes single keys
    lab_page.page.locator(".skinfix-review button", has_text="Flag").focus()
    lab_page.page.keyboard.press("Space")
    lab_page.wait_for_kernel("w.reviewed == 4")
    lab_page.page.locator(
        ".skinfix-review .skinfix-review-progress", has_text="4 of 4 reviewed"
    ).wait_for()
    lab_page.page.locator(".skinfix-review input[type=text]").press_sequentially("p")
    lab_page.wait_for_kernel("w.position == 2")
    assert lab_page.problems() == []
    lab_page.screenshot_widgets("review_widget.after-restart")
