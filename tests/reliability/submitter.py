"""A notebook kernel stand-in: submit a list of image URLs through ``df.skinfix.submit``.

Run as ``python -m tests.reliability.submitter --base-url URL --ledger PATH --urls FILE``
with ``RUNFLOW_API_KEY`` set. The reliability scenarios SIGKILL it midway, or start two
at the same instant on one ledger.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import pandas as pd

import skinfix_nb as sf


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--ledger", required=True)
    parser.add_argument("--urls", required=True, type=Path)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--start-at", type=float, help="wall-clock time to start sending")
    args = parser.parse_args()
    frame = pd.DataFrame({"image_url": args.urls.read_text().split()})
    with sf.connect(base_url=args.base_url) as client:
        if args.start_at is not None:
            time.sleep(max(0.0, args.start_at - time.time()))
        out = frame.skinfix.submit(
            "image_url",
            client=client,
            ledger=args.ledger,
            concurrency=args.concurrency,
            progress=False,
        )
    if args.out is not None:
        out.to_csv(args.out, index=False)


if __name__ == "__main__":
    main()
