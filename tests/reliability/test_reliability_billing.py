"""Money: re-runs, kills, faults, two kernels and running out of credit never bill twice.

Each test drives ``df.skinfix.submit`` over real HTTP against an embedded server in
benchmark mode (``engine=None``: runs take ``latency`` seconds and fetch nothing), so the
figures are about the client, the batch engine and the ledger. The full-size runs (300
rows, three kill points) are in ``benchmarks/reliability.py``.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest

from skinfix_nb.local import LocalServer, serve
from tests.conftest import FAKE_KEY
from tests.reliability import scenarios


@pytest.fixture
def quick_server() -> Iterator[LocalServer]:
    """A server whose runs take 20-80 ms and never touch an image."""
    with serve(engine=None, api_key=FAKE_KEY, latency=(0.02, 0.08), seed=7) as srv:
        yield srv


def test_rerunning_a_submit_three_times_posts_nothing_more(
    quick_server: LocalServer, tmp_path: Path
) -> None:
    result = scenarios.rerun_three_times(quick_server, rows=40, ledger=tmp_path / "ledger.db")
    assert result["posts_first_call"] == 40
    assert result["duplicate_posts"] == 0
    assert result["duplicate_runs"] == 0
    assert result["posts_beyond_first"] == 0
    assert result["same_run_ids"]
    assert result["rows_terminal"] == 1.0


@pytest.mark.parametrize("fraction", [0.25, 0.5, 0.9])
def test_sigkill_midway_then_rerun_loses_and_repeats_nothing(
    quick_server: LocalServer, tmp_path: Path, fraction: float
) -> None:
    result = scenarios.kill_midway(
        quick_server, rows=60, fraction=fraction, ledger=tmp_path / "ledger.db", workdir=tmp_path
    )
    assert 0 < result["killed_at_runs"] < 60  # the kill really landed midway
    assert result["rows_terminal"] == 1.0
    assert result["duplicate_runs"] == 0
    assert result["posts_beyond_first"] == 0  # the ledger, not the server's replay, saved it
    assert result["run_ids_lost"] == 0


def test_all_faults_at_once_bill_each_success_exactly_once(
    quick_server: LocalServer, tmp_path: Path
) -> None:
    result = scenarios.submit_under_faults(quick_server, rows=80, ledger=tmp_path / "ledger.db")
    # the faults really happened
    assert result["injected_5xx"] > 0
    assert result["injected_429"] > 0
    assert result["injected_drops"] > 0
    assert result["failed_runs"] > 0
    assert result["rows_terminal"] == 1.0
    assert result["duplicate_runs"] == 0
    assert result["posts_beyond_first"] == 0
    assert result["run_ids_lost"] == 0
    assert Decimal(result["billed_usd"]) == Decimal("0.12") * result["succeeded_runs"]
    assert result["frame_cost_usd"] == pytest.approx(float(result["billed_usd"]))


def test_two_kernels_on_one_ledger_never_create_a_run_twice(
    quick_server: LocalServer, tmp_path: Path
) -> None:
    result = scenarios.two_kernels(
        quick_server, rows=60, ledger=tmp_path / "ledger.db", workdir=tmp_path
    )
    assert result["shared_urls"] == 30
    assert result["runs_created"] == result["distinct_urls"] == 60
    assert result["duplicate_runs"] == 0
    assert result["posts_beyond_first"] == 0
    assert result["rows_terminal"] == 1.0


def test_402_from_the_50th_post_stops_sending_and_marks_the_rest(
    quick_server: LocalServer, tmp_path: Path
) -> None:
    result = scenarios.payment_required_at(
        quick_server, rows=80, nth=50, ledger=tmp_path / "ledger.db"
    )
    assert result["first_402_at_post"] == 50
    assert result["posts_sent_after_402"] == 0
    assert result["runs_created"] == 49
    assert result["not_submitted"] == result["expected_not_submitted"] == 31
    assert result["other_statuses"] == {"succeeded": 49}
