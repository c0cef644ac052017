"""Cost of the QA metrics per before/after pair at 1 and 12 megapixels.

Run: ``python benchmarks/qa_cost.py``

Inputs: the bundled Grace Hopper portrait upscaled (Lanczos) to about 1 and 12 MP, retouched
by the local engine, both saved as JPEG (quality 90) the way real files arrive; made at run
time, never stored. For each size, best of seven:

* ``decode``: one ``open_image`` of the before JPEG (the baseline: every figure is also
  given as a ratio to it, measured in the same run, so it survives a noisy machine);
* ``metrics``: ``pair_metrics`` on the two decoded images (downscale to <= 1 MP, face
  analysis of the before copy, every metric);
* ``face``: of which the engine's ``analyze_face`` on the downscaled before copy;
* ``pair from files``: ``pair_metrics`` on the two JPEG byte strings (both decodes included);
* ``qa_frame per pair``: ``qa_frame`` over eight rows of files on disk (default workers),
  wall time divided by eight.

Goal: a 12 MP pair well under one second.
"""

from __future__ import annotations

import io
import json
import math
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import pandas as pd
from PIL import Image

import skinfix_nb
from skinfix_nb.images import open_image
from skinfix_nb.local.engine import analyze_face, retouch
from skinfix_nb.quality import pair_metrics, qa_frame
from skinfix_nb.quality.metrics import DEFAULT_MAX_PIXELS

RESULTS = Path(__file__).parent / "results"
SAMPLE = Path(skinfix_nb.__file__).parent / "samples" / "grace_hopper.jpg"
SIZES_MP = (1, 12)
REPEATS = 7
FRAME_ROWS = 8


def best_ms(action: Callable[[], object], repeats: int = REPEATS) -> float:
    """Fastest of ``repeats`` calls, in milliseconds (after one warm-up call)."""
    action()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return min(times) * 1000.0


def jpeg(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def make_pair(megapixels: int) -> tuple[bytes, bytes, tuple[int, int]]:
    with Image.open(SAMPLE) as image:
        base = image.convert("RGB")
    scale = (megapixels * 1_000_000 / (base.width * base.height)) ** 0.5
    size = (round(base.width * scale), round(base.height * scale))
    before = base.resize(size, Image.Resampling.LANCZOS)
    return jpeg(before), jpeg(retouch(before)), size


def frame_per_pair_ms(before: bytes, after: bytes) -> float:
    with tempfile.TemporaryDirectory() as folder:
        before_path, after_path = Path(folder, "before.jpg"), Path(folder, "after.jpg")
        before_path.write_bytes(before)
        after_path.write_bytes(after)
        df = pd.DataFrame(
            {
                "image_url": [str(before_path)] * FRAME_ROWS,
                "output_url": [str(after_path)] * FRAME_ROWS,
                "run_id": [f"run-{i}" for i in range(FRAME_ROWS)],
                "status": ["succeeded"] * FRAME_ROWS,
            }
        )
        total = best_ms(lambda: qa_frame(df, progress=False, labels=False), repeats=2)
    return total / FRAME_ROWS


def main() -> int:
    cv2.setNumThreads(cv2.getNumberOfCPUs())
    rows = []
    for megapixels in SIZES_MP:
        before, after, size = make_pair(megapixels)
        before_image, after_image = open_image(before), open_image(after)
        decode = best_ms(lambda b=before: open_image(b))
        metrics = best_ms(lambda b=before_image, a=after_image: pair_metrics(b, a))
        factor = max(1, math.ceil(math.sqrt(size[0] * size[1] / DEFAULT_MAX_PIXELS)))
        copy = before_image.reduce(factor) if factor > 1 else before_image
        face = best_ms(lambda c=copy: analyze_face(c))
        from_files = best_ms(lambda b=before, a=after: pair_metrics(b, a))
        per_pair = frame_per_pair_ms(before, after)
        rows.append(
            {
                "megapixels": round(size[0] * size[1] / 1e6, 2),
                "size": f"{size[0]}x{size[1]}",
                "decode_ms": round(decode, 1),
                "metrics_ms": round(metrics, 1),
                "face_analysis_ms": round(face, 1),
                "pair_from_files_ms": round(from_files, 1),
                "qa_frame_per_pair_ms": round(per_pair, 1),
                "metrics_vs_decode": round(metrics / decode, 2),
                "pair_from_files_vs_decode": round(from_files / decode, 2),
                "qa_frame_per_pair_vs_decode": round(per_pair / decode, 2),
            }
        )

    header = (
        f"{'MP':>6} {'size':>11} {'decode':>8} {'metrics':>9} {'(face)':>8} {'from files':>11} "
        f"{'qa_frame/pair':>14}   ratios to one decode"
    )
    print(header)
    print("-" * len(header))
    for row in rows:
        print(
            f"{row['megapixels']:>6} {row['size']:>11} {row['decode_ms']:>6.0f}ms "
            f"{row['metrics_ms']:>7.0f}ms {row['face_analysis_ms']:>6.0f}ms "
            f"{row['pair_from_files_ms']:>9.0f}ms "
            f"{row['qa_frame_per_pair_ms']:>12.0f}ms   "
            f"{row['metrics_vs_decode']:.2f} / {row['pair_from_files_vs_decode']:.2f} / "
            f"{row['qa_frame_per_pair_vs_decode']:.2f}"
        )
    largest = rows[-1]
    verdict = "met" if largest["pair_from_files_ms"] < 1000 else "NOT met"
    print(
        f"\n12 MP pair from files: {largest['pair_from_files_ms']:.0f} ms (goal < 1000 ms: {verdict})"
    )

    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / "qa_cost.json"
    out.write_text(
        json.dumps(
            {
                "benchmark": "qa_cost",
                "python": sys.version.split()[0],
                "platform": platform.platform(),
                "cpus": os.cpu_count(),
                "opencv": cv2.__version__,
                "repeats": REPEATS,
                "rows": rows,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
