"""Shared fixtures: an isolated toolkit home and the embedded server over real HTTP."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from skinfix_nb.local import LocalServer

# A recognisable fake key: tests/reliability searches every output for it.
FAKE_KEY = "rf_live_SECRETCANARY0123456789abcdef"


@pytest.fixture(autouse=True, scope="session")
def _isolated_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Keep ledgers and thumbnail caches out of the user's real cache folder."""
    home = tmp_path_factory.mktemp("skinfix-home")
    old = os.environ.get("SKINFIX_NB_HOME")
    os.environ["SKINFIX_NB_HOME"] = str(home)
    os.environ.pop("RUNFLOW_API_KEY", None)
    yield home
    if old is None:
        os.environ.pop("SKINFIX_NB_HOME", None)
    else:
        os.environ["SKINFIX_NB_HOME"] = old


@pytest.fixture(scope="session")
def server() -> Iterator[LocalServer]:
    """One embedded server (real engine) for the whole session, on a free loopback port."""
    from skinfix_nb.local import serve

    with serve(port=0, api_key=FAKE_KEY) as srv:
        yield srv


@pytest.fixture
def fresh_server() -> Iterator[LocalServer]:
    """A server of the test's own, for tests that set faults or count requests."""
    from skinfix_nb.local import serve

    with serve(port=0, api_key=FAKE_KEY) as srv:
        yield srv
