"""Fixtures for the browser tests: one JupyterLab server per module, a fresh tab per test.

Tests marked ``browser`` skip with the reason when Chromium or Playwright is missing, unless
``SKINFIX_REQUIRE_BROWSER=1`` (CI sets it): then they fail, so a broken set-up cannot pass
as green.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.browser.jupyterlab import JupyterLab, LabPage, require_browser

NOTEBOOKS = Path(__file__).parent / "notebooks"


@pytest.fixture(autouse=True)
def _browser_available(request: pytest.FixtureRequest) -> None:
    if request.node.get_closest_marker("browser") is not None:
        require_browser()


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[JupyterLab]:
    """JupyterLab serving a copy of tests/browser/notebooks, kernel home kept apart."""
    require_browser()  # module fixtures run before the autouse one: decide here too
    home = tmp_path_factory.mktemp("lab-home")
    with JupyterLab(
        files=sorted(NOTEBOOKS.glob("*.ipynb")), env={"SKINFIX_NB_HOME": str(home)}
    ) as server:
        yield server


@pytest.fixture
def lab_page(lab: JupyterLab) -> Iterator[LabPage]:
    """A Chromium tab on the module's JupyterLab."""
    with lab.page() as page:
        yield page
