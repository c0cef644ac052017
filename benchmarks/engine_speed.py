"""Speed and memory of the local retouch engine at 1, 4 and 12 megapixels, on one thread.

Run: ``python benchmarks/engine_speed.py``

Inputs are the bundled portraits upscaled (Lanczos) to 1, 4 and 12 MP with Gaussian noise
(sigma 2 levels) added, made at run time and never stored. Each case runs in a fresh
subprocess, so its peak RSS is its own: the figure reported is the peak resident memory
of that process minus its resident memory just before the call (input image decoded, OpenCV
loaded, cascades loaded by one warm-up call on a small image). Wall time is the best of
three calls. ``cv2.GaussianBlur`` (sigma 5) of the same image, timed in the same process,
gives the baseline, so the ratio survives a noisy machine.

Goals: 12 MP in <= 1.0 s and <= 0.8 GB extra memory.
"""

from __future__ import annotations

import json
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results"
CASES = [(name, mp) for name in ("grace_hopper", "astronaut") for mp in (1, 4, 12)]
REPEATS = 3


def _rss_now_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _reset_peak() -> bool:
    """Reset the kernel's peak-RSS counter (Linux >= 4.0); False where not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")
        return True
    except OSError:
        return False


def _vm_hwm_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    return _peak_rss_mb()


def run_case(name: str, megapixels: float) -> dict[str, object]:
    """One measurement, in this process (called in a fresh subprocess)."""
    import cv2
    import numpy as np
    from PIL import Image

    from skinfix_nb import samples
    from skinfix_nb.local.engine import retouch_with_info

    cv2.setNumThreads(1)
    source = samples.load(name).convert("RGB")
    scale = (megapixels * 1e6 / (source.width * source.height)) ** 0.5
    size = (round(source.width * scale), round(source.height * scale))
    big = np.asarray(source.resize(size, Image.Resampling.LANCZOS), np.float32)
    big += np.random.default_rng(0).normal(0.0, 2.0, big.shape).astype(np.float32)
    image = Image.fromarray(np.clip(big + 0.5, 0, 255).astype(np.uint8))
    pixels = np.asarray(image)
    del big
    retouch_with_info(source.resize((64, 64)))  # load the cascades outside the measurement

    blur = min(_timed(lambda: cv2.GaussianBlur(pixels, (0, 0), 5.0)) for _ in range(REPEATS))
    exact_peak = _reset_peak()
    before = _rss_now_mb()
    walls, info = [], None
    for _ in range(REPEATS):
        started = time.perf_counter()
        _, info = retouch_with_info(image)
        walls.append(time.perf_counter() - started)
    peak = _vm_hwm_mb() if exact_peak else _peak_rss_mb()
    assert info is not None
    wall = min(walls)
    return {
        "image": name,
        "megapixels": round(image.width * image.height / 1e6, 2),
        "size": f"{image.width}x{image.height}",
        "face_found": info.face_found,
        "blemishes": info.blemishes,
        "wall_s": round(wall, 3),
        "s_per_mp": round(wall / (image.width * image.height / 1e6), 3),
        "gaussian_blur_s": round(blur, 4),
        "ratio_to_blur": round(wall / blur, 1),
        "peak_rss_delta_mb": round(peak - before, 1),
        "stages_ms": info.timing,
    }


def _timed(call: object) -> float:
    assert callable(call)
    started = time.perf_counter()
    call()
    return time.perf_counter() - started


def main() -> None:
    rows = []
    for name, megapixels in CASES:
        completed = subprocess.run(
            [sys.executable, __file__, "--case", name, str(megapixels)],
            capture_output=True,
            text=True,
            check=True,
        )
        rows.append(json.loads(completed.stdout.strip().splitlines()[-1]))
    header = [
        "image",
        "MP",
        "size",
        "face",
        "wall s",
        "s/MP",
        "GaussianBlur s",
        "x blur",
        "peak RSS delta MB",
        "stages ms",
    ]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        stages = ", ".join(f"{k} {v:.0f}" for k, v in row["stages_ms"].items() if k != "total")
        print(
            f"| {row['image']} | {row['megapixels']} | {row['size']} | {row['face_found']} | {row['wall_s']:.3f} | "
            f"{row['s_per_mp']:.3f} | {row['gaussian_blur_s']:.4f} | {row['ratio_to_blur']} | "
            f"{row['peak_rss_delta_mb']:.0f} | {stages} |"
        )
    print("\ngoal: 12 MP in <= 1.0 s and <= 800 MB extra, one thread")
    report = {
        "rows": rows,
        "threads": 1,
        "machine": {"python": platform.python_version(), "platform": platform.platform()},
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "engine_speed.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"written to {RESULTS / 'engine_speed.json'}")


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--case":
        print(json.dumps(run_case(sys.argv[2], float(sys.argv[3]))))
    else:
        main()
