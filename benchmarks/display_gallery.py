"""Kernel-side cost of paging through a 100-row gallery, against one thumbnail decode.

Run: ``python benchmarks/display_gallery.py``

A results frame of 100 rows (91 succeeded, 9 failed with no output) points at 191 distinct
images (about 1 MP JPEG each, made at run time from the bundled portraits) hosted by the
embedded server on 127.0.0.1. The gallery shows 12 tiles a page, so the page set is 9 pages.

* baseline: one thumbnail decode, i.e. ``open_image`` of one 1 MP JPEG plus ``thumbnail``
  to the tile size, best of 50;
* cold: the first pass over all pages (downloads, decodes and cache writes included);
* warm: a new gallery over the same frame, every page shown, thumbnails from the disk cache
  (best of 5), which is what a person paging back and forth pays. Baseline and warm
  passes are interleaved so that load on the machine affects both alike.

The warm figure is reported as a ratio to the baseline, so it survives a noisy machine.
The toolkit's home (and so the thumbnail cache) is a fresh temporary folder.
"""

from __future__ import annotations

import io
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results"
ROWS = 100
FAILED_EVERY = 12  # rows 0, 12, 24, ... failed: no output image
PAGE_SIZE = 12
TILE_SIDE = 160
REPEATS = 5


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="skinfix-bench-") as home:
        os.environ["SKINFIX_NB_HOME"] = home
        result = measure()
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "display_gallery.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"{'case':<46}{'seconds':>10}{'x one decode':>14}")
    print(
        f"{'one thumbnail decode (1 MP JPEG -> 160 px)':<46}{result['baseline_s']:>10.4f}{1:>14.1f}"
    )
    for key, label in (
        ("cold_s", f"cold: all {result['pages']} pages, downloads + decodes"),
        ("warm_s", f"warm: all {result['pages']} pages from the cache"),
        ("warm_page_s", "warm: one page"),
    ):
        print(f"{label:<46}{result[key]:>10.4f}{result[key] / result['baseline_s']:>14.1f}")
    print(
        f"images: {result['images']}, page HTML: {result['page_html_kb']:.0f} KB; "
        f"written to {RESULTS / 'display_gallery.json'}"
    )


def measure() -> dict[str, object]:
    import pandas as pd
    from PIL import Image, ImageFilter

    import skinfix_nb
    from skinfix_nb.display.gallery_grid import Gallery
    from skinfix_nb.images import open_image, thumbnail
    from skinfix_nb.local import serve

    folder = Path(skinfix_nb.__file__).parent / "samples"
    samples = sorted([*folder.glob("*.jpg"), *folder.glob("*.png")])
    sources = [open_image(path).convert("RGB") for path in samples]

    def variant(index: int, *, retouched: bool) -> bytes:
        """A distinct ~1 MP JPEG per row, so every tile is its own cache entry."""
        base = sources[index % len(sources)]
        side = 1000 + index  # distinct size -> distinct pixels
        image = base.resize((side, side * base.height // base.width), Image.Resampling.BICUBIC)
        if retouched:
            image = image.filter(ImageFilter.SMOOTH)
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=90)
        return buffer.getvalue()

    with serve(port=0) as server:
        rows = []
        for index in range(ROWS):
            failed = index % FAILED_EVERY == 0
            before = server.serve_file(variant(index, retouched=False), f"in{index}.jpg")
            after = (
                None
                if failed
                else server.serve_file(variant(index, retouched=True), f"out{index}.jpg")
            )
            rows.append({
                "image_url": before, "output_url": after,
                "status": "failed" if failed else "succeeded",
                "cost": None if failed else "0.12",
                "error": "no face found" if failed else None,
            })  # fmt: skip
        frame = pd.DataFrame(rows)
        sample = variant(0, retouched=False)

        def one_decode() -> float:
            start = time.perf_counter()
            thumbnail(open_image(sample), TILE_SIDE)
            return time.perf_counter() - start

        start = time.perf_counter()
        cold = Gallery(frame, page_size=PAGE_SIZE, thumb_side=TILE_SIDE)
        for page in range(1, cold.page_count):
            cold.show_page(page)
        cold_s = time.perf_counter() - start

        # baseline and warm passes interleaved, best of each: load on the machine hits both
        decode_times, warm_runs = [], []
        for _ in range(REPEATS):
            decode_times += [one_decode() for _ in range(10)]
            start = time.perf_counter()
            warm = Gallery(frame, page_size=PAGE_SIZE, thumb_side=TILE_SIDE)
            for page in range(1, warm.page_count):
                warm.show_page(page)
            warm_runs.append(time.perf_counter() - start)
        baseline, warm_s = min(decode_times), min(warm_runs)
        pages = warm.page_count
        warm.show_page(0)  # a full page, for its size
        page_html = sum(len(tile.children[0].value) for tile in warm.grid.children)
        images = int(frame["image_url"].notna().sum() + frame["output_url"].notna().sum())

    return {
        "rows": ROWS,
        "pages": pages,
        "page_size": PAGE_SIZE,
        "tile_side": TILE_SIDE,
        "images": images,
        "baseline_s": baseline,
        "cold_s": cold_s,
        "warm_s": warm_s,
        "warm_page_s": warm_s / pages,
        "warm_ratio_to_one_decode": warm_s / baseline,
        "warm_page_ratio_to_one_decode": warm_s / pages / baseline,
        "cold_ratio_to_one_decode": cold_s / baseline,
        "page_html_kb": page_html / 1024,
        "python": sys.version.split()[0],
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
    }


if __name__ == "__main__":
    main()
