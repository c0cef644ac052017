"""A short soak: 64 concurrent clients for 5 s with faults on (the 60 s one is a benchmark)."""

from __future__ import annotations

from skinfix_nb.local import serve
from tests.conftest import FAKE_KEY
from tests.reliability.soak import soak


def test_64_clients_with_faults_see_only_injected_errors() -> None:
    with serve(engine=None, api_key=FAKE_KEY, seed=11) as server:
        result = soak(server, clients=64, seconds=5)
    counts = result["client_counts"]
    assert counts.get("run_succeeded", 0) >= 64  # every client got work done
    assert result["server_5xx"] > 0  # the faults were on
    assert result["server_429"] > 0
    assert result["unexpected_errors"] == 0, result["unexpected_examples"]
    assert result["server_error_logs"] == 0, result["server_error_examples"]
    finished = sum(n for name, n in counts.items() if name.startswith("run_"))
    assert finished <= result["runs_created"]  # no client saw a run the server never made
