"""Requests per image and how soon a finished run is noticed, with 3-second runs.

Run: ``python benchmarks/batch_requests.py [--rows 200] [--latency 3] [--concurrency 16]``

Setup: the embedded server in its own process, benchmark mode (``engine=None``), every
run taking ``latency`` seconds. The batch engine behind ``df.skinfix.submit`` runs
``rows`` distinct images with the given concurrency, once polling and once with a local
:class:`~skinfix_nb.callbacks.CallbackReceiver`. Requests are counted from the server's
own request log (every POST and GET it answered, retries included). The moment a run is
noticed is when the client first holds a response showing it terminal (recorded by a thin
wrapper around the client's ``list_runs`` / ``get`` and the receiver's queue); the moment
it happened is the server's ``completed_at``. Both clocks are this machine's.

The baseline, measured in the same run, is the polling a hand-written loop does: one GET
per run every 2 s (the official JS SDK's interval), which costs ``1 + latency / 2``
requests per image and notices a completion 1 s late on average.

Goals: <= 1.3 HTTP requests per image in total (POST included), a median notice delay
<= 1.0 s, and client CPU <= 1 ms per image when polling (``time.process_time`` of this
process; the server's CPU is in its own process). With callbacks the receiver is an HTTP
server in this process, answering one POST per run, so its CPU is shown but not held to
the polling goal.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections import Counter
from typing import Any

from batch_common import KEY, ServerProcess, image_urls, table, write_results

from skinfix_nb.aiohttp_transport import AiohttpTransport
from skinfix_nb.batch import Batch
from skinfix_nb.callbacks import CallbackReceiver
from skinfix_nb.client import AsyncSkinFix
from skinfix_nb.ledger import Ledger
from skinfix_nb.models import Run, RunPage


class NoticingClient:
    """The client, plus the wall-clock time each run was first seen terminal."""

    def __init__(self, client: AsyncSkinFix) -> None:
        self._client = client
        self.model = client.model
        self.base_url = client.base_url
        self.noticed: dict[str, float] = {}

    def _see(self, runs: list[Run]) -> None:
        now = time.time()
        for run in runs:
            if run.id and run.is_terminal:
                self.noticed.setdefault(run.id, now)

    async def submit(self, image_url: str, **options: Any) -> Run:
        run = await self._client.submit(image_url, **options)
        self._see([run])
        return run

    async def get(self, run: Run | str) -> Run:
        found = await self._client.get(run)
        self._see([found])
        return found

    async def list_runs(self, **options: Any) -> RunPage:
        page = await self._client.list_runs(**options)
        self._see(page.items)
        return page

    async def find_by_client_ref(self, client_ref: str) -> Run | None:
        return await self._client.find_by_client_ref(client_ref)


async def _run(url: str, images: list[str], concurrency: int, *, callbacks: bool) -> NoticingClient:
    transport = AiohttpTransport(max_connections=concurrency + 4)
    async with AsyncSkinFix(KEY, base_url=url, transport=transport) as client:
        noticing = NoticingClient(client)
        receiver = CallbackReceiver(secret=None).start() if callbacks else None
        try:
            batch = Batch(
                images,
                client=noticing,
                ledger=Ledger(":memory:"),
                concurrency=concurrency,
                progress=False,
                callback_url=receiver,
            )
            if receiver is not None:
                # The receiver's queue is drained by the batch; note arrival times as it does.
                original = receiver.events.put

                def put(event: Any, *args: Any, **kwargs: Any) -> None:
                    noticing.noticed.setdefault(event.run_id, time.time())
                    original(event, *args, **kwargs)

                receiver.events.put = put  # type: ignore[method-assign]
            await batch.run()
        finally:
            if receiver is not None:
                receiver.stop()
    return noticing


def measure(
    server: ServerProcess, rows: int, concurrency: int, *, callbacks: bool
) -> dict[str, Any]:
    before = len(server.requests())
    images = image_urls(server.url, rows, tag=f"req-{callbacks}-{time.time()}")
    wall, cpu = time.perf_counter(), time.process_time()
    noticing = asyncio.run(_run(server.url, images, concurrency, callbacks=callbacks))
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    requests = server.requests()[before:]
    mine = {run["id"]: run for run in server.runs() if run["input"]["image_url"] in set(images)}
    delays = [
        noticing.noticed[run_id] - _timestamp(run["completed_at"])
        for run_id, run in mine.items()
        if run_id in noticing.noticed and run.get("completed_at")
    ]
    kinds = Counter(
        f"{r['method']} {'/v1/runs' if r['path'] == '/v1/runs' else r['path'].rsplit('/', 1)[0]}"
        for r in requests
    )
    return {
        "mode": "callbacks" if callbacks else "polling",
        "rows": rows,
        "wall_s": wall,
        "cpu_ms_per_image": cpu / rows * 1000,
        "requests": len(requests),
        "requests_by_kind": dict(kinds),
        "requests_per_image": len(requests) / rows,
        "runs_created": len(mine),
        "noticed": len(delays),
        "notice_delay_median_s": statistics.median(delays),
        "notice_delay_p90_s": sorted(delays)[int(0.9 * len(delays))],
    }


def _timestamp(text: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=200)
    parser.add_argument("--latency", type=float, default=3.0)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    with ServerProcess(latency=args.latency) as server:
        polling = measure(server, args.rows, args.concurrency, callbacks=False)
        callbacks = measure(server, args.rows, args.concurrency, callbacks=True)
    baseline_requests = 1 + args.latency / 2.0
    goals = {
        "polling_requests_per_image": polling["requests_per_image"] <= 1.3,
        "polling_notice_median": polling["notice_delay_median_s"] <= 1.0,
        "callbacks_requests_per_image": callbacks["requests_per_image"] <= 1.3,
        "callbacks_notice_median": callbacks["notice_delay_median_s"] <= 1.0,
        "every_run_once": polling["runs_created"] == args.rows == callbacks["runs_created"],
        "polling_cpu_ms_per_image": polling["cpu_ms_per_image"] <= 1.0,
    }
    path = write_results(
        "batch_requests",
        {
            "latency_s": args.latency,
            "concurrency": args.concurrency,
            "polling": polling,
            "callbacks": callbacks,
            "baseline_2s_get_requests_per_image": baseline_requests,
            "baseline_2s_get_notice_mean_s": 1.0,
            "requests_vs_baseline": polling["requests_per_image"] / baseline_requests,
            "goals_met": goals,
        },
    )
    rows = [("measure", "value", "goal")]
    for result in (polling, callbacks):
        mode = result["mode"]
        rows += [
            (f"{mode}: HTTP requests per image", f"{result['requests_per_image']:.3f}", "<= 1.3"),
            (
                f"{mode}: notice delay, median",
                f"{result['notice_delay_median_s']:.3f} s",
                "<= 1.0 s",
            ),
            (f"{mode}: notice delay, p90", f"{result['notice_delay_p90_s']:.3f} s", ""),
            (f"{mode}: wall", f"{result['wall_s']:.1f} s", ""),
            (
                f"{mode}: client CPU per image",
                f"{result['cpu_ms_per_image']:.3f} ms",
                "<= 1 ms" if mode == "polling" else "(receiver in this process)",
            ),
        ]
    rows.append(("2 s GET loop: requests per image", f"{baseline_requests:.2f}", "baseline"))
    print(table(rows))
    print("requests:", polling["requests_by_kind"], callbacks["requests_by_kind"])
    print(f"goals met: {all(goals.values())} {goals}")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
