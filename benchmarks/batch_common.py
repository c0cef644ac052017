"""Shared parts of the batch benchmarks: the embedded server in its own process.

The server runs in a child process so that the client's CPU time (``time.process_time``
in this process) is the client's alone, and so that both sides do not share one GIL. The
child answers two commands on stdin: ``requests`` (the server's request log as JSON
lines) and ``runs`` (every stored run), and stops when stdin closes.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import Any

RESULTS = Path(__file__).parent / "results"
KEY = "rf_live_benchmark"

_CHILD = """
import json, sys
from skinfix_nb.local import serve

options = json.loads(sys.argv[1])
with serve(port=0, api_key=sys.argv[2], engine=None, **options) as server:
    print(server.url, flush=True)
    for line in sys.stdin:
        command = line.strip()
        if command == "requests":
            rows = [record._asdict() for record in server.requests]
        elif command == "runs":
            rows = server.runs()
        else:
            continue
        print(json.dumps(rows, default=str), flush=True)
"""


class ServerProcess:
    """``serve(engine=None, **options)`` in a child process; ``.url`` once started."""

    def __init__(self, **options: Any) -> None:
        self._process = subprocess.Popen(
            [sys.executable, "-c", _CHILD, json.dumps(options), KEY],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self._process.stdout is not None
        self.url = self._process.stdout.readline().strip()
        if not self.url.startswith("http://"):
            self.stop()
            raise RuntimeError("the benchmark server did not start")

    def _ask(self, command: str) -> list[dict[str, Any]]:
        assert self._process.stdin is not None
        assert self._process.stdout is not None
        self._process.stdin.write(command + "\n")
        self._process.stdin.flush()
        rows: list[dict[str, Any]] = json.loads(self._process.stdout.readline())
        return rows

    def requests(self) -> list[dict[str, Any]]:
        """The server's request log: method, path, status, idempotency_key, client_ref, at."""
        return self._ask("requests")

    def runs(self) -> list[dict[str, Any]]:
        """Every run the server stored, as the API shows it."""
        return self._ask("runs")

    def stop(self) -> None:
        if self._process.stdin is not None:
            self._process.stdin.close()
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def image_urls(server_url: str, count: int, *, tag: str) -> list[str]:
    """Distinct loopback image URLs (benchmark mode never fetches them)."""
    return [f"{server_url}/bench/{tag}/{i}.jpg" for i in range(count)]


def machine() -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
    }


def write_results(name: str, payload: dict[str, Any]) -> Path:
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    payload = {
        "benchmark": name,
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": machine(),
        **payload,
    }
    path.write_text(json.dumps(payload, indent=2) + "\n")
    return path


def table(rows: list[tuple[str, str, str]]) -> str:
    """A plain three-column table: what, measured, goal."""
    width = [max(len(row[i]) for row in rows) for i in range(3)]
    return "\n".join(
        f"{row[0]:<{width[0]}}  {row[1]:>{width[1]}}  {row[2]:<{width[2]}}" for row in rows
    )
