"""Fixtures for the browser tests: one JupyterLab server per module, a fresh tab per test.

Tests marked ``browser`` skip with the reason when Chromium or Playwright is missing, unless
``SKINFIX_REQUIRE_BROWSER=1`` (CI sets it): then they fail, so a broken set-up cannot pass
as green.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.browser.jupyterlab import JupyterLab, LabPage, missing_requirements

NOTEBOOKS = Path(__file__).parent / "notebooks"


@pytest.fixture(autouse=True)
def _browser_available(request: pytest.FixtureRequest) -> None:
    if request.node.get_closest_marker("browser") is None:
        return
    reason = missing_requirements()
    if reason is None:
        return
    if os.environ.get("SKINFIX_REQUIRE_BROWSER") == "1":
        pytest.fail(f"SKINFIX_REQUIRE_BROWSER=1 but {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[JupyterLab]:
    """JupyterLab serving a copy of tests/browser/notebooks, kernel home kept apart."""
    if missing_requirements() is not None:
        pytest.skip(str(missing_requirements()))  # the autouse fixture decides skip vs fail
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
