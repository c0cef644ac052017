"""Peak memory and CPU of one 10,000-row ``df.skinfix.submit``.

Run: ``python benchmarks/batch_memory.py [--rows 10000] [--concurrency 64] [--latency 0.05]``

Setup: the embedded server in its own process, benchmark mode (``engine=None``), every run
taking ``latency`` seconds. This process imports everything and warms up on a few rows,
then records its resident set size, runs ``await df.skinfix.asubmit`` on ``rows`` distinct
URLs (ledger in a file, as in real use), and reads the peak RSS the kernel recorded
(``ru_maxrss``). The baseline in the same run is the size of the input frame itself and
of the output frame (``memory_usage(deep=True)``): the engine's own cost is what the peak
adds beyond them.

Goals: peak RSS growth <= 60 MB; client CPU <= 1 ms per image.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pandas as pd
from batch_common import KEY, ServerProcess, image_urls, table, write_results

import skinfix_nb  # noqa: F401  (registers df.skinfix)
from skinfix_nb.aiohttp_transport import AiohttpTransport
from skinfix_nb.client import AsyncSkinFix

MB = 1024 * 1024


def rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize()


def peak_rss_bytes() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


async def submit(url: str, frame: pd.DataFrame, concurrency: int, ledger: Path) -> pd.DataFrame:
    transport = AiohttpTransport(max_connections=concurrency + 4)
    async with AsyncSkinFix(KEY, base_url=url, transport=transport) as client:
        out = await frame.skinfix.asubmit(
            "image_url", client=client, concurrency=concurrency, progress=False, ledger=ledger
        )
    assert out is not None
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--latency", type=float, default=0.05)
    args = parser.parse_args()
    with ServerProcess(latency=args.latency) as server, tempfile.TemporaryDirectory() as tmp:
        ledger = Path(tmp) / "ledger.sqlite3"
        warm = pd.DataFrame({"image_url": image_urls(server.url, 64, tag="warm")})
        asyncio.run(submit(server.url, warm, args.concurrency, ledger))
        frame = pd.DataFrame({"image_url": image_urls(server.url, args.rows, tag="big")})
        start_rss = rss_bytes()
        wall, cpu = time.perf_counter(), time.process_time()
        out = asyncio.run(submit(server.url, frame, args.concurrency, ledger))
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        growth = peak_rss_bytes() - start_rss
        requests = server.requests()
    frames = int(out.memory_usage(deep=True).sum())
    polls = sum(1 for r in requests if r["method"] == "GET")
    succeeded = int((out["status"] == "succeeded").sum())
    results: dict[str, Any] = {
        "rows": args.rows,
        "concurrency": args.concurrency,
        "latency_s": args.latency,
        "wall_s": wall,
        "succeeded": succeeded,
        "rss_at_start_mb": start_rss / MB,
        "peak_rss_growth_mb": growth / MB,
        "output_frame_mb": frames / MB,
        "cpu_ms_per_image": cpu / args.rows * 1000,
        "get_requests_per_image": polls / (args.rows + 64),
        "goals_met": {
            "peak_rss_growth": growth <= 60 * MB,
            "cpu_ms_per_image": cpu / args.rows * 1000 <= 1.0,
            "all_succeeded": succeeded == args.rows,
        },
    }
    path = write_results("batch_memory", results)
    print(
        table(
            [
                ("measure", "value", "goal"),
                ("rows", f"{args.rows}", ""),
                ("wall", f"{wall:.1f} s", ""),
                ("peak RSS growth", f"{growth / MB:.1f} MB", "<= 60 MB"),
                ("output frame (deep)", f"{frames / MB:.1f} MB", "baseline"),
                ("client CPU per image", f"{cpu / args.rows * 1000:.3f} ms", "<= 1 ms"),
                ("succeeded", f"{succeeded}", f"{args.rows}"),
            ]
        )
    )
    print(f"goals met: {all(results['goals_met'].values())} {results['goals_met']}")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
