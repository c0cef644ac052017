"""Client overhead: SkinFix / AsyncSkinFix calls against plain httpx doing the same requests.

Run: ``python benchmarks/client_overhead.py [--calls 1000] [--concurrency 16]``

Setup: the embedded server in its own process in benchmark mode (``engine=None``), so this
process's CPU time is the client's alone. Each pair does the same HTTP work in this
process, warmed up, then five alternating rounds, keeping each side's best round:

- ``get``: ``GET /v1/runs/{id}`` of one existing run, sequentially (sync) and
  ``concurrency`` at a time (async);
- ``submit``: a create ``POST`` with a fresh ``client_ref`` and ``Idempotency-Key``.

The baseline is a bare ``httpx.Client`` / ``httpx.AsyncClient`` with the same pool size,
sending the same requests and decoding the JSON. The client adds request building, the
retry driver, error mapping and ``Run`` parsing. Goal: wall time <= 1.15 x the baseline.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import time
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

import httpx
from batch_common import KEY, ServerProcess, table, write_results

from skinfix_nb.client import AsyncSkinFix, SkinFix

CREATE = "/v1/models/runflow/skin-fix/runs"
HEADERS = {"Authorization": f"Bearer {KEY}"}
_serial = itertools.count()  # every create gets a fresh client_ref and Idempotency-Key


def timed_sync(calls: int, one: Callable[[int], Any]) -> tuple[float, float]:
    """Wall and CPU seconds of ``calls`` sequential calls."""
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(calls):
        one(next(_serial))
    return time.perf_counter() - wall, time.process_time() - cpu


def timed_async(
    calls: int,
    concurrency: int,
    open_client: Callable[[], Any],
    one: Callable[[Any, int], Awaitable[Any]],
) -> tuple[float, float]:
    """``calls`` calls, ``concurrency`` at a time, on a client opened inside the loop."""

    async def main() -> None:
        async with open_client() as client:
            gate = asyncio.Semaphore(concurrency)

            async def guarded(n: int) -> None:
                async with gate:
                    await one(client, n)

            await asyncio.gather(*(guarded(next(_serial)) for _ in range(calls)))

    wall, cpu = time.perf_counter(), time.process_time()
    asyncio.run(main())
    return time.perf_counter() - wall, time.process_time() - cpu


def compare(
    baseline: Callable[[], tuple[float, float]],
    ours: Callable[[], tuple[float, float]],
    calls: int,
) -> dict[str, float]:
    """Warm both up, then alternate five rounds each; keep each side's best round.

    Alternating puts both sides under the same background load; the best round is the
    one the rest of the machine disturbed least.
    """
    baseline()
    ours()
    rounds = [(baseline(), ours()) for _ in range(5)]
    base_wall, base_cpu = min(base for base, _ in rounds)
    wall, cpu = min(mine for _, mine in rounds)
    return {
        "baseline_s": base_wall,
        "client_s": wall,
        "wall_ratio": wall / base_wall,
        "baseline_cpu_us": base_cpu / calls * 1e6,
        "client_cpu_us": cpu / calls * 1e6,
    }


def create_body(url: str, n: int) -> dict[str, Any]:
    return {"input": {"image_url": f"{url}/bench/raw/{n}.jpg"}, "client_ref": f"raw-{n}"}


def measure(url: str, calls: int, concurrency: int) -> dict[str, dict[str, float]]:
    with SkinFix(KEY, base_url=url) as seed:
        run_id = seed.submit(f"{url}/bench/seed.jpg").id
    assert run_id is not None
    results: dict[str, dict[str, float]] = {}

    with httpx.Client(base_url=url, headers=HEADERS) as raw, SkinFix(KEY, base_url=url) as ours:

        def raw_get(n: int) -> Any:
            return raw.get(f"/v1/runs/{run_id}").raise_for_status().json()

        def raw_submit(n: int) -> Any:
            answer = raw.post(
                CREATE, json=create_body(url, n), headers={"Idempotency-Key": f"raw-{n}"}
            )
            return answer.raise_for_status().json()

        def our_get(n: int) -> Any:
            return ours.get(run_id)

        def our_submit(n: int) -> Any:
            return ours.submit(f"{url}/bench/ours/{n}.jpg", client_ref=f"ours-{n}")

        for name, raw_one, our_one in (
            ("sync get", raw_get, our_get),
            ("sync submit", raw_submit, our_submit),
        ):
            results[name] = compare(
                partial(timed_sync, calls, raw_one), partial(timed_sync, calls, our_one), calls
            )

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)

    def raw_client() -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=url, headers=HEADERS, limits=limits)

    def our_client() -> AsyncSkinFix:
        return AsyncSkinFix(KEY, base_url=url, max_connections=concurrency)

    async def araw_get(client: httpx.AsyncClient, n: int) -> Any:
        return (await client.get(f"/v1/runs/{run_id}")).raise_for_status().json()

    async def araw_submit(client: httpx.AsyncClient, n: int) -> Any:
        answer = await client.post(
            CREATE, json=create_body(url, n), headers={"Idempotency-Key": f"raw-{n}"}
        )
        return answer.raise_for_status().json()

    async def aour_get(client: AsyncSkinFix, n: int) -> Any:
        return await client.get(run_id)

    async def aour_submit(client: AsyncSkinFix, n: int) -> Any:
        return await client.submit(f"{url}/bench/ours/{n}.jpg", client_ref=f"ours-{n}")

    async_pairs: tuple[tuple[str, Any, Any], ...] = (
        ("async get", araw_get, aour_get),
        ("async submit", araw_submit, aour_submit),
    )
    for name, araw_one, aour_one in async_pairs:
        results[name] = compare(
            partial(timed_async, calls, concurrency, raw_client, araw_one),
            partial(timed_async, calls, concurrency, our_client, aour_one),
            calls,
        )
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    with ServerProcess() as server:
        results = measure(server.url, args.calls, args.concurrency)
    rows = [("call", "client / httpx wall", "client CPU per call (httpx alone)")]
    for name, r in results.items():
        rows.append(
            (
                name,
                f"{r['wall_ratio']:.2f} x",
                f"{r['client_cpu_us']:.0f} us ({r['baseline_cpu_us']:.0f} us)",
            )
        )
    print(f"{args.calls} calls per round, async concurrency {args.concurrency}")
    print(table(rows))
    path = write_results(
        "client_overhead",
        {
            "calls": args.calls,
            "concurrency": args.concurrency,
            "goal": "wall_ratio <= 1.15",
            "results": results,
        },
    )
    print(f"written to {path}")


if __name__ == "__main__":
    main()
