"""The harness's own rule: skip without a browser stack, fail instead when CI requires it."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.browser.jupyterlab import missing_requirements, require_browser


def test_missing_chromium_is_named(tmp_path: Path) -> None:
    reason = missing_requirements(chromium=tmp_path / "chromium")
    assert reason is not None
    assert str(tmp_path / "chromium") in reason


def test_missing_browser_skips_locally_and_fails_when_required(tmp_path: Path) -> None:
    absent = tmp_path / "chromium"
    with pytest.raises(pytest.skip.Exception, match="no Chromium"):
        require_browser(chromium=absent, environ={})
    with pytest.raises(pytest.fail.Exception, match="SKINFIX_REQUIRE_BROWSER=1 but no Chromium"):
        require_browser(chromium=absent, environ={"SKINFIX_REQUIRE_BROWSER": "1"})
