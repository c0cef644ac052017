"""Every notebook, opened in real JupyterLab in headless Chromium: runs all, renders its widgets.

Screenshots of each widget output and of each whole notebook go to ``artifacts_dir()``
(``$SKINFIX_ARTIFACTS``, else ``./artifacts/browser``). Without Chromium, Playwright or
JupyterLab these tests skip, unless ``SKINFIX_REQUIRE_BROWSER=1`` (CI), where they fail.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.browser.jupyterlab import JupyterLab, artifacts_dir, missing_requirements

pytestmark = [pytest.mark.browser, pytest.mark.slow]

NOTEBOOKS = sorted((Path(__file__).resolve().parents[2] / "notebooks").glob("*.ipynb"))
# Notebooks whose cells show widgets (upload form, gallery, review, comparison).
WIDGET_NOTEBOOKS = {"01_quickstart", "02_batch_dataframe", "03_quality_review", "colab_demo"}


@pytest.fixture(scope="module")
def notebooks_lab() -> Iterator[JupyterLab]:
    """One JupyterLab holding every project notebook; each test opens its own in a fresh tab.

    Module-scoped, so it starts before the per-test skip-or-fail check in conftest.py: it makes
    the same decision itself.
    """
    reason = missing_requirements()
    if reason is not None:
        if os.environ.get("SKINFIX_REQUIRE_BROWSER") == "1":
            pytest.fail(f"browser tests required (SKINFIX_REQUIRE_BROWSER=1) but {reason}")
        pytest.skip(reason)
    with JupyterLab(files=NOTEBOOKS) as server:
        yield server


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_renders_in_jupyterlab(notebooks_lab: JupyterLab, path: Path) -> None:
    assert "RUNFLOW_API_KEY" not in os.environ  # the kernel inherits this: no key
    with notebooks_lab.page(timeout=180) as page:
        page.open(path.name)
        state = page.run_all()
        assert page.problems(state) == []
        assert not [e for e in page.console_errors if "widget" in e.lower()], page.console_errors
        shots = page.screenshot_widgets(f"notebook-{path.stem}")
        widget_cells = [cell for cell in state["cells"] if cell["widget_outputs"]]
        if path.stem in WIDGET_NOTEBOOKS:
            assert widget_cells, f"{path.name} rendered no widget"
        assert all(shot.parent == artifacts_dir() and shot.stat().st_size > 2000 for shot in shots)
        if path.stem == "01_quickstart":
            assert page.kernel("print(run.status)").strip() == "succeeded"
