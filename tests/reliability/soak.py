"""The embedded server under many concurrent clients with faults on, for a fixed time.

The parent (``soak``) keeps the server in its own process, so its RSS is the server's;
the clients run in a child process (``python -m tests.reliability.soak``), each its own
:class:`~skinfix_nb.client.AsyncSkinFix`, looping submit -> wait -> get, and report what
they saw as JSON on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

from skinfix_nb.client import AsyncSkinFix
from skinfix_nb.errors import APIConnectionError, RateLimitError, ServerError
from skinfix_nb.local import LocalServer
from tests.conftest import FAKE_KEY

__all__ = ["SOAK_FAULTS", "rss_mb", "soak"]

REPO = Path(__file__).resolve().parents[2]
SOAK_FAULTS: dict[str, Any] = {
    "latency": (0.05, 0.2),
    "error_rate": 0.05,
    "rate_limit_rate": 0.05,
    "retry_after": 0.1,
    "retry_after_fraction": 0.5,
    "drop_after_post_rate": 0.02,
    "failure_rate": 0.05,
}
# What the injected faults can surface as once retries are spent; anything else is a defect.
_INJECTED = (ServerError, RateLimitError, APIConnectionError)


def rss_mb() -> float:
    """Resident memory of this process in MB (Linux ``/proc``)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class _ErrorLog(logging.Handler):
    """Counts ERROR records from the server's and aiohttp's loggers (uncaught failures)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(f"{record.name}: {record.getMessage()}"[:300])


def soak(server: LocalServer, *, clients: int, seconds: float) -> dict[str, Any]:
    """Run ``clients`` concurrent clients against ``server`` for ``seconds`` with faults on."""
    server.set_faults(**SOAK_FAULTS)
    watched = [logging.getLogger(name) for name in ("skinfix_nb.local", "aiohttp")]
    errors = _ErrorLog()
    for logger in watched:
        logger.addHandler(errors)
    runs_before = len(server.runs())
    rss_before = rss_mb()
    samples: list[float] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(1.0):
            samples.append(rss_mb())

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    env = dict(os.environ, PYTHONPATH=str(REPO))
    command = [sys.executable, "-m", "tests.reliability.soak", "--base-url", server.url]
    command += ["--clients", str(clients), "--seconds", str(seconds)]
    try:
        done = subprocess.run(
            command, cwd=REPO, env=env, capture_output=True, timeout=seconds + 120, check=False
        )
    finally:
        stop.set()
        sampler.join()
        for logger in watched:
            logger.removeHandler(errors)
        server.set_faults(**{name: 0.0 for name in SOAK_FAULTS if name.endswith("rate")})
    if done.returncode != 0:
        raise RuntimeError(f"the soak clients failed: {done.stderr.decode()[-2000:]}")
    seen = json.loads(done.stdout)
    statuses = Counter(record.status for record in server.requests)
    runs = len(server.runs()) - runs_before
    rss_after = rss_mb()
    half = samples[len(samples) // 2] if samples else rss_after
    return {
        "clients": clients,
        "seconds": seconds,
        **seen,
        "runs_created": runs,
        "server_5xx": sum(n for status, n in statuses.items() if status >= 500),
        "server_429": statuses.get(429, 0),
        "server_drops": statuses.get(0, 0),
        "server_error_logs": len(errors.records),
        "server_error_examples": errors.records[:3],
        "rss_before_mb": round(rss_before, 1),
        "rss_half_mb": round(half, 1),
        "rss_after_mb": round(rss_after, 1),
        "rss_peak_mb": round(max([*samples, rss_after]), 1),
        "rss_kb_per_run": round((rss_after - rss_before) * 1024 / max(runs, 1), 2),
    }


async def _client_loop(
    client: AsyncSkinFix, deadline: float, tally: Counter[str], odd: dict[str, str]
) -> None:
    while time.monotonic() < deadline:
        try:
            run = await client.submit(
                f"https://img.example.test/soak/{uuid.uuid4().hex}.jpg",
                client_ref=f"soak-{uuid.uuid4().hex}",
            )
            run = await client.wait(run, timeout=60)
            tally[f"run_{run.status}"] += 1
            await client.get(run)
            tally["ops"] += 3
        except _INJECTED as exc:
            tally[f"injected_{type(exc).__name__}"] += 1
        except Exception as exc:  # the figure: anything not injected
            tally["unexpected"] += 1
            odd.setdefault(type(exc).__name__, str(exc)[:200])


async def _clients(base_url: str, clients: int, seconds: float) -> dict[str, Any]:
    tally: Counter[str] = Counter()
    odd: dict[str, str] = {}
    # Made before the clock starts: building an httpx client loads TLS settings (blocking).
    pool = [AsyncSkinFix(FAKE_KEY, base_url=base_url, max_connections=2) for _ in range(clients)]
    deadline = time.monotonic() + seconds
    try:
        await asyncio.gather(*(_client_loop(client, deadline, tally, odd) for client in pool))
    finally:
        for client in pool:
            await client.close()
    return {"client_counts": dict(tally), "unexpected_errors": tally["unexpected"],
            "unexpected_examples": odd}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=60.0)
    args = parser.parse_args()
    result = asyncio.run(_clients(args.base_url, args.clients, args.seconds))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
