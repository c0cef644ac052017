"""Requests per second the embedded server sustains with 64 concurrent keep-alive clients.

Run: ``python benchmarks/server_rps.py [--seconds 5] [--rounds 3] [--prefill 10000]``

Setup: the server under test runs in its own process (``serve(engine=None, latency=0)``,
benchmark mode, so no image work: only the HTTP API, auth, validation, the store and the
run state machine). The load generator runs in this process: 64 aiohttp client tasks,
each holding one keep-alive connection and looping "POST create, then GET that run" (a
50/50 mix). The baseline is a trivial aiohttp app on the same machine, started the same
way and hit with the same load: a POST that parses the JSON body and answers 201 with a
small object, and a GET that answers a small object, no middlewares. The figure that
matters is the ratio (how much of aiohttp's raw throughput the real API keeps), since
absolute numbers move with the machine. Rounds run back to back in pairs (baseline, then
skinfix) and the median of the paired ratios is reported. Throughput on a small shared
machine is noisy (the load generator competes for the same cores), so the server
process's CPU time per request is measured too: its ratio is the steadier figure.

``--prefill N`` creates N runs in each server before the measured rounds (each with its own
``client_ref``) and adds three listing figures (the newest 50, one ``client_ref.EQ``
lookup, and a batch poll: ``created_at>=`` a recent moment), to show whether the store
slows down as it grows.

Goal: both ratios >= 0.3 (the API does real work per request: auth, JSON validation, a
UUIDv7, a run record and a task per run, a request log entry).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import aiohttp

RESULTS = Path(__file__).parent / "results"
CLIENTS = 64
KEY = "rf_live_benchmark"
CREATE = "/v1/models/runflow/skin-fix/runs"


def _serve_skinfix() -> None:
    from skinfix_nb.local import serve

    with serve(port=0, api_key=KEY, engine=None, latency=0.0) as server:
        print(server.url, flush=True)
        sys.stdin.read()  # until the parent closes our stdin


def _serve_baseline() -> None:
    from aiohttp import web

    async def create(request: web.Request) -> web.Response:
        body = await request.json()
        return web.json_response({"id": "run-1", "input": body["input"]}, status=201)

    async def get(request: web.Request) -> web.Response:
        return web.json_response({"id": request.match_info["run_id"], "status_code": "queued"})

    async def main() -> None:
        app = web.Application()
        app.router.add_post(CREATE, create)
        app.router.add_get("/v1/runs/{run_id}", get)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, backlog=512)
        await site.start()
        host, port = runner.addresses[0][:2]
        print(f"http://{host}:{port}", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
        await runner.cleanup()

    asyncio.run(main())


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux ``/proc``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _prefill(session: aiohttp.ClientSession, url: str, count: int) -> None:
    """``count`` runs with distinct client_refs, ``CLIENTS`` at a time."""
    next_index = iter(range(count))

    async def worker() -> None:
        for index in next_index:
            body = {"input": {"image_url": f"https://example.com/{index}.jpg"}}
            async with session.post(url + CREATE, json={**body, "client_ref": f"p{index}"}) as r:
                await r.read()

    await asyncio.gather(*(worker() for _ in range(CLIENTS)))


async def _listing_ms(session: aiohttp.ClientSession, url: str, count: int) -> dict[str, float]:
    """Median milliseconds of a newest-50 listing, a client_ref lookup and a batch poll.

    The batch poll is what ``df.skinfix`` sends: the runs created after a recent moment
    (here the 50th newest run's ``created_at``), with ``fields=``.
    """
    figures: dict[str, float] = {}
    async with session.get(url + "/v1/runs", params={"limit": "50"}) as response:
        since = (await response.json())["items"][-1]["created_at"]
    queries = {
        "list_newest_50_ms": {"limit": "50"},
        "client_ref_eq_ms": {"q": f"client_ref.EQ:'p{count // 2}'", "limit": "1"},
        "poll_window_ms": {
            "q": f"created_at>={since}",
            "limit": "500",
            "fields": "id,status_code,client_ref,output,cost,created_at,completed_at",
        },
    }
    for name, params in queries.items():
        times = []
        for _ in range(15):
            started = time.perf_counter()
            async with session.get(url + "/v1/runs", params=params) as response:
                await response.read()
            times.append(1000 * (time.perf_counter() - started))
        figures[name] = statistics.median(times)
    return figures


async def _load(
    url: str, seconds: float, pid: int, *, prefill: int = 0, lists: bool = False
) -> dict[str, float]:
    """64 keep-alive clients looping create+get for ``seconds``.

    Returns requests/s, latency percentiles and the server's CPU time per request, which
    moves much less than throughput when other work shares the machine.
    """
    headers = {"Authorization": f"Bearer {KEY}"}
    connector = aiohttp.TCPConnector(limit=CLIENTS, force_close=False)
    latencies: list[float] = []
    errors = 0
    stop_at = 0.0

    async def client(session: aiohttp.ClientSession, index: int) -> None:
        nonlocal errors
        body = {"input": {"image_url": f"https://example.com/{index}.jpg"}}
        while time.perf_counter() < stop_at:
            started = time.perf_counter()
            async with session.post(url + CREATE, json=body) as response:
                created = await response.json()
                errors += response.status != 201
            middle = time.perf_counter()
            async with session.get(f"{url}/v1/runs/{created['id']}") as response:
                await response.read()
                errors += response.status != 200
            ended = time.perf_counter()
            latencies.extend((middle - started, ended - middle))

    async with aiohttp.ClientSession(connector=connector, headers=headers) as session:
        listing: dict[str, float] = {}
        if prefill:
            await _prefill(session, url, prefill)
            if lists:
                listing = await _listing_ms(session, url, prefill)
        stop_at = time.perf_counter() + 0.5  # warm-up: open all connections
        await asyncio.gather(*(client(session, i) for i in range(CLIENTS)))
        latencies.clear()
        cpu_before = _cpu_seconds(pid)
        started = time.perf_counter()
        stop_at = started + seconds
        await asyncio.gather(*(client(session, i) for i in range(CLIENTS)))
        elapsed = time.perf_counter() - started
        cpu = _cpu_seconds(pid) - cpu_before
    latencies.sort()
    return {
        "requests": len(latencies),
        "rps": len(latencies) / elapsed,
        "p50_ms": 1000 * latencies[len(latencies) // 2],
        "p99_ms": 1000 * latencies[int(len(latencies) * 0.99)],
        "server_cpu_us_per_request": 1e6 * cpu / len(latencies),
        "errors": errors,
        **listing,
    }


def _round(kind: str, seconds: float, prefill: int) -> dict[str, float]:
    process = subprocess.Popen(
        [sys.executable, __file__, "--serve", kind],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    assert process.stdin is not None
    try:
        url = process.stdout.readline().strip()
        return asyncio.run(
            _load(url, seconds, process.pid, prefill=prefill, lists=kind == "skinfix")
        )
    finally:
        process.stdin.close()
        process.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="measured seconds per round")
    parser.add_argument("--rounds", type=int, default=5, help="rounds per server")
    parser.add_argument("--prefill", type=int, default=0, help="runs stored before measuring")
    parser.add_argument("--serve", choices=["skinfix", "baseline"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve == "skinfix":
        _serve_skinfix()
        return
    if args.serve == "baseline":
        _serve_baseline()
        return

    runs: dict[str, list[dict[str, float]]] = {"baseline": [], "skinfix": []}
    for _ in range(args.rounds):  # back to back, so each pair sees the same machine load
        for kind in runs:
            runs[kind].append(_round(kind, args.seconds, args.prefill))
    rps_ratios = [
        s["rps"] / b["rps"] for b, s in zip(runs["baseline"], runs["skinfix"], strict=True)
    ]
    cpu_ratios = [
        b["server_cpu_us_per_request"] / s["server_cpu_us_per_request"]
        for b, s in zip(runs["baseline"], runs["skinfix"], strict=True)
    ]
    median = {
        kind: {
            key: statistics.median(row[key] for row in rounds)
            for key in ("rps", "p50_ms", "p99_ms", "server_cpu_us_per_request", "errors")
        }
        for kind, rounds in runs.items()
    }
    ratio = statistics.median(rps_ratios)
    cpu_ratio = statistics.median(cpu_ratios)

    print(
        f"{CLIENTS} keep-alive clients, POST create + GET run, {args.seconds:g} s x {args.rounds}"
        + (f", {args.prefill} runs stored first" if args.prefill else "")
    )
    print(
        f"{'server (median of rounds)':<34} {'req/s':>8} {'p50 ms':>7} {'p99 ms':>7} "
        f"{'CPU us/req':>10} {'errors':>6}"
    )
    names = {
        "baseline": "trivial aiohttp app (baseline)",
        "skinfix": "skinfix_nb.local (engine=None)",
    }
    for kind, row in median.items():
        print(
            f"{names[kind]:<34} {row['rps']:>8.0f} {row['p50_ms']:>7.1f} {row['p99_ms']:>7.1f} "
            f"{row['server_cpu_us_per_request']:>10.0f} {row['errors']:>6.0f}"
        )
    capacity = 1e6 / median["skinfix"]["server_cpu_us_per_request"]
    print(f"req/s ratio skinfix / baseline (median of paired rounds): {ratio:.2f}")
    print(f"CPU-cost ratio baseline / skinfix (median of paired rounds): {cpu_ratio:.2f}")
    print(f"one busy core would serve about {capacity:.0f} req/s of this mix (1 / CPU per request)")
    listing = {
        key: statistics.median(row[key] for row in runs["skinfix"])
        for key in ("list_newest_50_ms", "client_ref_eq_ms", "poll_window_ms")
        if args.prefill
    }
    if listing:
        print(
            f"with {args.prefill} runs stored: newest 50 listed in {listing['list_newest_50_ms']:.1f}"
            f" ms, one client_ref.EQ lookup in {listing['client_ref_eq_ms']:.1f} ms, a batch poll"
            f" of the newest runs by created_at in {listing['poll_window_ms']:.1f} ms (medians)"
        )

    report = {
        "benchmark": "server_rps",
        "clients": CLIENTS,
        "seconds_per_round": args.seconds,
        "prefill": args.prefill,
        "listing_ms_with_prefill": listing,
        "rounds": runs,
        "median": median,
        "rps_ratio_to_baseline": round(ratio, 3),
        "cpu_cost_ratio_baseline_over_skinfix": round(cpu_ratio, 3),
        "single_core_capacity_rps": round(capacity),
        "machine": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "aiohttp": aiohttp.__version__,
        },
    }
    RESULTS.mkdir(exist_ok=True)
    name = f"server_rps_prefill_{args.prefill}.json" if args.prefill else "server_rps.json"
    (RESULTS / name).write_text(json.dumps(report, indent=2) + "\n")
    print(f"written to {RESULTS / name}")


if __name__ == "__main__":
    main()
