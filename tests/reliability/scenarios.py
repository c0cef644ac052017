"""The billing and fault scenarios of the reliability proof, each measured over real HTTP.

Every function starts what it needs against an embedded server it is given, drives the
public API (``df.skinfix.submit``, the ledger, the client) and returns plain figures. The
tests in this folder run them small and assert the goals; ``benchmarks/reliability.py``
runs them at full size and prints the table.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterable
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pandas as pd

import skinfix_nb as sf
from skinfix_nb.ledger import Ledger
from skinfix_nb.local import LocalServer
from skinfix_nb.models import TERMINAL_STATUSES
from tests.conftest import FAKE_KEY

__all__ = [
    "CREATE_PATH",
    "RecordingTransport",
    "duplicate_runs",
    "frame_of",
    "kill_midway",
    "lost_run_ids",
    "payment_required_at",
    "rerun_three_times",
    "submit",
    "submit_under_faults",
    "two_kernels",
]

CREATE_PATH = "/v1/models/runflow/skin-fix/runs"
REPO = Path(__file__).resolve().parents[2]
PRICE = Decimal("0.12")


def frame_of(rows: int, *, tag: str) -> pd.DataFrame:
    """``rows`` distinct HTTPS image URLs (never fetched: the servers here run engine=None)."""
    urls = [f"https://img.example.test/{tag}/{i:05d}.jpg" for i in range(rows)]
    return pd.DataFrame({"image_url": urls})


def submit(server: LocalServer, frame: pd.DataFrame, ledger: Path, **options: Any) -> pd.DataFrame:
    """``frame.skinfix.submit`` with a fresh client on ``server`` and the ledger at ``ledger``."""
    with sf.connect(base_url=server.url, api_key=FAKE_KEY, **options.pop("client", {})) as client:
        out: pd.DataFrame = frame.skinfix.submit(
            "image_url", client=client, ledger=str(ledger), progress=False, **options
        )
    return out


def duplicate_runs(runs: Iterable[dict[str, Any]]) -> int:
    """Runs beyond the first for the same ``client_ref`` or the same image URL.

    Each URL of these scenarios is meant to be run once, so a second run of it was paid
    twice, whatever ``client_ref`` it carried.
    """
    runs = list(runs)
    per_ref = Counter(run.get("client_ref") for run in runs)
    per_url = Counter(run["input"]["image_url"] for run in runs)
    return max(
        sum(count - 1 for count in per_ref.values()), sum(count - 1 for count in per_url.values())
    )


def posts_beyond_first(requests: Iterable[Any], refs: Iterable[str] | None = None) -> int:
    """Create POSTs that made (or replayed) a run for a ``client_ref`` that already had one.

    Counts answers 2xx and connections dropped after the run was made (status 0). The
    embedded server replays an ``Idempotency-Key``, so these never became second runs
    here; Runflow documents that replay only for batches, so each one would be a second
    run (and a second charge) there.
    """
    wanted = None if refs is None else set(refs)
    made = Counter(
        record.client_ref
        for record in requests
        if record.method == "POST"
        and record.path == CREATE_PATH
        and (record.status == 0 or 200 <= record.status < 300)
        and (wanted is None or record.client_ref in wanted)
    )
    return sum(count - 1 for count in made.values())


def lost_run_ids(runs: Iterable[dict[str, Any]], frame: pd.DataFrame, ledger: Path) -> int:
    """Runs the server created whose id is neither in the final frame nor in the ledger."""
    known = {run_id for run_id in frame["run_id"].dropna()}
    with Ledger(str(ledger)) as book:
        known |= set(book.by_run_ids([run["id"] for run in runs]))
    return sum(1 for run in runs if run["id"] not in known)


def terminal_share(frame: pd.DataFrame) -> float:
    """Share of rows whose run reached a terminal API status (succeeded, failed, ...)."""
    return float(frame["status"].isin(TERMINAL_STATUSES).mean()) if len(frame) else 1.0


def creates(server: LocalServer) -> list[Any]:
    return [r for r in server.requests if r.method == "POST" and r.path == CREATE_PATH]


# -- re-running a cell -----------------------------------------------------------------


def rerun_three_times(server: LocalServer, *, rows: int, ledger: Path) -> dict[str, Any]:
    """The same submit three times on one ledger: only the first may POST."""
    frame = frame_of(rows, tag="rerun")
    first = submit(server, frame, ledger)
    posts_first = len(creates(server))
    for _ in range(2):
        again = submit(server, frame, ledger)
    posts_total = len(creates(server))
    return {
        "rows": rows,
        "posts_first_call": posts_first,
        "duplicate_posts": posts_total - posts_first,
        "duplicate_runs": duplicate_runs(server.runs()),
        "posts_beyond_first": posts_beyond_first(server.requests),
        "same_run_ids": bool((first["run_id"] == again["run_id"]).all()),
        "rows_terminal": terminal_share(again),
    }


# -- SIGKILL of a submitting process ---------------------------------------------------


def _submitter(
    server: LocalServer,
    ledger: Path,
    urls: list[str],
    *,
    workdir: Path,
    name: str,
    write_frame: bool = False,
    start_at: float | None = None,
) -> subprocess.Popen[bytes]:
    """Start a kernel stand-in submitting ``urls`` (its result CSV at ``workdir/name.csv``)."""
    listing = workdir / f"{name}.urls"
    listing.write_text("\n".join(urls))
    env = dict(os.environ, RUNFLOW_API_KEY=FAKE_KEY, PYTHONPATH=str(REPO))
    command = [
        sys.executable, "-m", "tests.reliability.submitter", "--base-url", server.url,
        "--ledger", str(ledger), "--urls", str(listing),
    ]  # fmt: skip
    if write_frame:
        command += ["--out", str(workdir / f"{name}.csv")]
    if start_at is not None:
        command += ["--start-at", repr(start_at)]
    return subprocess.Popen(
        command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )


def kill_midway(
    server: LocalServer, *, rows: int, fraction: float, ledger: Path, workdir: Path
) -> dict[str, Any]:
    """SIGKILL a process submitting ``rows`` rows once ``fraction`` of them exist, then re-run."""
    before = len(server.runs())
    tag = f"kill{fraction:.2f}"
    frame = frame_of(rows, tag=tag)
    process = _submitter(server, ledger, list(frame["image_url"]), workdir=workdir, name=tag)
    target = before + max(1, round(rows * fraction))
    deadline = time.monotonic() + 120
    try:
        while len(server.runs()) < target:
            if process.poll() is not None:
                raise RuntimeError(
                    f"the submitter ended before the kill: {process.stderr.read().decode()[-2000:]}"
                    if process.stderr
                    else "the submitter ended before the kill"
                )
            if time.monotonic() > deadline:
                raise TimeoutError("the submitter made no progress in 120 s")
            time.sleep(0.002)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        if process.stderr is not None:
            process.stderr.close()
    killed_at = len(server.runs()) - before
    out = submit(server, frame, ledger)
    runs = [run for run in server.runs() if run["input"]["image_url"] in set(frame["image_url"])]
    return {
        "rows": rows,
        "killed_at_runs": killed_at,
        "rows_terminal": terminal_share(out),
        "duplicate_runs": duplicate_runs(runs),
        "posts_beyond_first": posts_beyond_first(
            server.requests, (run["client_ref"] for run in runs)
        ),
        "run_ids_lost": lost_run_ids(runs, out, ledger),
    }


# -- faults at once --------------------------------------------------------------------

FAULTS: dict[str, Any] = {
    "error_rate": 0.20,
    "rate_limit_rate": 0.10,
    "retry_after": 0.05,
    "retry_after_fraction": 0.5,
    "drop_after_post_rate": 0.05,
    "failure_rate": 0.10,
}


def submit_under_faults(server: LocalServer, *, rows: int, ledger: Path) -> dict[str, Any]:
    """Submit with every fault on, then re-run the cell once for what the first call left."""
    server.set_faults(**FAULTS)
    frame = frame_of(rows, tag="faults")
    try:
        first = submit(server, frame, ledger, concurrency=16)
        rerun = submit(server, frame, ledger, concurrency=16)
    finally:
        server.set_faults(
            error_rate=0.0,
            rate_limit_rate=0.0,
            retry_after=None,
            retry_after_fraction=1.0,
            drop_after_post_rate=0.0,
            failure_rate=0.0,
        )
    runs = server.runs()
    succeeded = sum(1 for run in runs if run["status_code"] == "succeeded")
    statuses = Counter(r.status for r in server.requests)
    return {
        "rows": rows,
        "rows_terminal_first_call": terminal_share(first),
        "rows_terminal": terminal_share(rerun),
        "duplicate_runs": duplicate_runs(runs),
        "posts_beyond_first": posts_beyond_first(server.requests),
        "run_ids_lost": lost_run_ids(runs, rerun, ledger),
        "succeeded_runs": succeeded,
        "billed_usd": str(server.billed_usd()),
        "expected_usd": str(PRICE * succeeded),
        "billed_matches": server.billed_usd() == PRICE * succeeded,
        "frame_cost_usd": round(rerun.skinfix.cost(), 2),
        "injected_5xx": sum(n for status, n in statuses.items() if status >= 500),
        "injected_429": statuses.get(429, 0),
        "injected_drops": statuses.get(0, 0),
        "failed_runs": sum(1 for run in runs if run["status_code"] == "failed"),
    }


# -- two kernels on one ledger ---------------------------------------------------------


def two_kernels(server: LocalServer, *, rows: int, ledger: Path, workdir: Path) -> dict[str, Any]:
    """Two processes submit overlapping frames at the same moment, sharing one ledger.

    Both frames hold the middle half of the rows first, in the same order, so both
    processes reach every shared URL at about the same time.
    """
    urls = list(frame_of(rows, tag="two")["image_url"])
    quarter = rows // 4
    shared, head, tail = urls[quarter : rows - quarter], urls[:quarter], urls[rows - quarter :]
    start_at = time.time() + 4.0  # both have imported by then and start on the same tick
    processes = [
        _submitter(server, ledger, shared + head, workdir=workdir, name="kernel-a",
                   write_frame=True, start_at=start_at),
        _submitter(server, ledger, shared + tail, workdir=workdir, name="kernel-b",
                   write_frame=True, start_at=start_at),
    ]  # fmt: skip
    outs = [workdir / "kernel-a.csv", workdir / "kernel-b.csv"]
    failures = []
    for process in processes:
        _, stderr = process.communicate(timeout=300)
        if process.returncode != 0:
            failures.append(stderr.decode()[-2000:])
    if failures:
        raise RuntimeError("a kernel failed: " + "\n".join(failures))
    frames = [pd.read_csv(path) for path in outs]
    wanted = set().union(*(set(f["image_url"]) for f in frames))
    runs = [run for run in server.runs() if run["input"]["image_url"] in wanted]
    shared = set(frames[0]["image_url"]) & set(frames[1]["image_url"])
    return {
        "rows_per_kernel": [len(f) for f in frames],
        "shared_urls": len(shared),
        "distinct_urls": len(wanted),
        "runs_created": len(runs),
        "duplicate_runs": duplicate_runs(runs),
        "posts_beyond_first": posts_beyond_first(
            server.requests, (run["client_ref"] for run in runs)
        ),
        "rows_terminal": min(terminal_share(f) for f in frames),
    }


# -- 402 from the 50th POST -----------------------------------------------------------


class RecordingTransport(httpx.BaseTransport):
    """A real HTTP transport that notes when each request left and its answer came back."""

    def __init__(self) -> None:
        self._inner = httpx.HTTPTransport()
        self._lock = threading.Lock()
        self.log: list[tuple[str, str, float, float, int]] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        sent = time.monotonic()
        response = self._inner.handle_request(request)
        with self._lock:
            self.log.append(
                (request.method, request.url.path, sent, time.monotonic(), response.status_code)
            )
        return response

    def close(self) -> None:
        self._inner.close()


def payment_required_at(
    server: LocalServer, *, rows: int, nth: int, ledger: Path
) -> dict[str, Any]:
    """The server answers 402 from the ``nth`` create on: nothing more is posted after it."""
    server.set_faults(credit_runs=nth - 1)
    transport = RecordingTransport()
    frame = frame_of(rows, tag="credit")
    try:
        out = submit(server, frame, ledger, client={"transport": transport})
    finally:
        server.set_faults(credit_runs=None)
    posts = [entry for entry in transport.log if entry[0] == "POST" and entry[1] == CREATE_PATH]
    refused = [entry for entry in posts if entry[4] == 402]
    first_402 = min((entry[3] for entry in refused), default=None)
    after = 0 if first_402 is None else sum(1 for entry in posts if entry[2] > first_402)
    statuses = Counter(out["status"])
    # The server's log is in the order it answered: the position of its first 402.
    answered = [record.status for record in creates(server)]
    first_refused = answered.index(402) + 1 if 402 in answered else None
    return {
        "rows": rows,
        "first_402_at_post": first_refused,
        "posts_sent_after_402": after,
        "runs_created": len(server.runs()),
        "not_submitted": statuses.get("not_submitted", 0),
        "expected_not_submitted": rows - (nth - 1),
        "other_statuses": {k: v for k, v in statuses.items() if k != "not_submitted"},
    }
