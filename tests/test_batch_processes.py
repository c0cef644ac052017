"""Batches in real processes: killed with SIGKILL, stopped with Ctrl-C, two at once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from skinfix_nb.client import SkinFix
from skinfix_nb.local import LocalServer, serve
from tests.conftest import FAKE_KEY

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")

# One notebook cell, as a script: submit a column and print the statuses and run ids.
# With "loop" the cell runs the way Jupyter runs it: blocking code inside a running event
# loop, and Ctrl-C raising KeyboardInterrupt in the main thread.
CELL = """
import asyncio, json, sys
import pandas as pd
import skinfix_nb
from skinfix_nb.client import SkinFix

url, key, ledger, count, concurrency, mode = sys.argv[1:7]
frame = pd.DataFrame({"image_url": [f"{url}/img/{i}.jpg" for i in range(int(count))]})
with SkinFix(key, base_url=url) as client:
    def cell():
        return frame.skinfix.submit(
            "image_url", client=client, concurrency=int(concurrency), progress=False, ledger=ledger
        )
    async def in_running_loop():
        return cell()
    print("started", flush=True)
    if mode == "script":
        out = cell()
    else:
        out = asyncio.new_event_loop().run_until_complete(in_running_loop())
print(json.dumps({"status": out["status"].tolist(), "run_id": out["run_id"].tolist()}), flush=True)
"""

ROWS = 120


@pytest.fixture
def slow_server() -> Iterator[LocalServer]:
    """Benchmark-mode server whose runs take 0.1 s, so a batch is still busy when stopped."""
    with serve(port=0, api_key=FAKE_KEY, engine=None, latency=0.1) as srv:
        yield srv


def start_cell(
    server: LocalServer, ledger: Path, *, concurrency: int = 8, mode: str = "script"
) -> subprocess.Popen[str]:
    args = [server.url, FAKE_KEY, str(ledger), str(ROWS), str(concurrency), mode]
    process = subprocess.Popen(
        [sys.executable, "-c", CELL, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).parent.parent,
    )
    assert process.stdout is not None
    assert process.stdout.readline().strip() == "started"
    return process


def wait_for_runs(server: LocalServer, count: int, *, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while len(server.runs()) < count:
        assert time.monotonic() < deadline, "the batch never got going"
        time.sleep(0.005)


def result_of(process: subprocess.Popen[str]) -> dict[str, list[Any]]:
    out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    return dict(json.loads(out.strip().splitlines()[-1]))


def rerun(server: LocalServer, ledger: Path) -> pd.DataFrame:
    frame = pd.DataFrame({"image_url": [f"{server.url}/img/{i}.jpg" for i in range(ROWS)]})
    with SkinFix(FAKE_KEY, base_url=server.url) as client:
        out = frame.skinfix.submit(
            "image_url", client=client, concurrency=16, progress=False, ledger=ledger
        )
    assert out is not None
    return out


def assert_each_image_ran_once(server: LocalServer, out: pd.DataFrame) -> None:
    runs = server.runs()
    refs = Counter(run["client_ref"] for run in runs)
    assert len(refs) == ROWS
    assert set(refs.values()) == {1}  # no duplicate run
    assert set(out["run_id"]) == {run["id"] for run in runs}  # no run id lost
    assert (out["status"] == "succeeded").all()


def test_sigkill_halfway_then_rerun_finishes_without_duplicates(
    slow_server: LocalServer, tmp_path: Path
) -> None:
    ledger = tmp_path / "ledger.sqlite3"
    process = start_cell(slow_server, ledger)
    wait_for_runs(slow_server, ROWS // 2)
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=30)  # reaps it and closes its pipes
    killed_at = len(slow_server.runs())
    assert killed_at < ROWS  # it really died half-way

    out = rerun(slow_server, ledger)
    assert_each_image_ran_once(slow_server, out)
    posts = [r for r in slow_server.requests if r.method == "POST"]
    assert len(posts) == ROWS  # the re-run sent only what was never sent


@pytest.mark.parametrize("mode", ["script", "loop"])
def test_ctrl_c_returns_the_partial_frame_and_keeps_every_run_id(
    slow_server: LocalServer, tmp_path: Path, mode: str
) -> None:
    ledger = tmp_path / "ledger.sqlite3"
    process = start_cell(slow_server, ledger, concurrency=4, mode=mode)
    wait_for_runs(slow_server, 20)
    process.send_signal(signal.SIGINT)
    result = result_of(process)
    created = {run["id"] for run in slow_server.runs()}
    statuses = Counter(result["status"])
    assert statuses["not_submitted"] > 0
    assert created <= set(result["run_id"])  # every run created before the stop is kept
    kept = {run_id for run_id in result["run_id"] if isinstance(run_id, str)}
    assert kept == created

    out = rerun(slow_server, ledger)
    assert_each_image_ran_once(slow_server, out)


def test_two_kernels_sharing_a_ledger_pay_once(slow_server: LocalServer, tmp_path: Path) -> None:
    ledger = tmp_path / "ledger.sqlite3"
    first = start_cell(slow_server, ledger)
    second = start_cell(slow_server, ledger)
    one, two = result_of(first), result_of(second)
    assert one["status"] == two["status"] == ["succeeded"] * ROWS
    assert one["run_id"] == two["run_id"]
    refs = Counter(run["client_ref"] for run in slow_server.runs())
    assert len(refs) == ROWS
    assert set(refs.values()) == {1}
    assert os.path.exists(ledger)
