"""Quality of the local retouch engine, with no human in the loop.

Run: ``python benchmarks/engine_quality.py`` (needs scikit-image for CIEDE2000 and Lab).
``--seeds 10 11 12`` paints the spots elsewhere, to check that a change holds beyond the
default placements; ``--draw DIR`` writes overlays and before/after crops to look at.

Method
------
* **Ground truth** is hand-placed: for each bundled portrait, the face oval and ellipses
  over the eyes, brows and lips were read off an enlarged, gridded crop of the image and
  are written below as plain numbers (``REGIONS``). They come from no detector, so they are
  independent of the engine's own Haar boxes and feature geometry; run with
  ``--draw DIR`` to write overlays and check them by eye.
* **Synthetic blemishes**: per portrait and seed, 12 Gaussian-profile spots (6 dark
  brown "moles", 6 red "papules") of radius face_width/70 to face_width/35 are painted on
  flat skin: inside the face oval, at least three radii from every feature ellipse, where
  the clean image has a low gradient (no glasses frames, no wrinkles' edges, no hairline),
  at least five radii apart. 3 seeds.
* **Metrics**, each output against the *clean* original:

  - *removal*: per spot, contrast c = mean CIELAB in the disk minus mean in the ring
    1.5r-3r; removal = 1 - |c(out) - c(clean)| / |c(blemished) - c(clean)|, clipped to
    [0, 1]; "removed" counts spots with removal >= 0.7;
  - *SSIM outside face* and *SSIM features*: mean of the luma SSIM map (Gaussian window,
    sigma 1.5, Wang et al. 2004) outside the face oval, and inside the feature ellipses;
  - *dE00 image*: mean CIEDE2000 over the whole image;
  - *texture kept*: variance of the luma Laplacian on the flat skin (spots excluded),
    out / clean.

* **Rows**: ``identity`` (the blemished input unchanged: the floor), ``gaussian blur``
  (a naive global blur, sigma 2: it removes spots but must fail the detail figures),
  and the engine at strengths 0.5 and 0.8 (the default).

Goals for the engine at 0.8: removal >= 0.75, SSIM outside face >= 0.99, SSIM features
>= 0.97, dE00 image <= 0.5, texture kept in [0.4, 0.9].
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from numpy.typing import NDArray

try:
    from skimage.color import deltaE_ciede2000, rgb2lab
except ImportError:  # pragma: no cover - the benchmark needs it, the package does not
    sys.exit("this benchmark needs scikit-image: pip install scikit-image")

from skinfix_nb import samples
from skinfix_nb.local.engine import retouch

RESULTS = Path(__file__).parent / "results"
SEEDS = (0, 1, 2)
SPOTS_PER_IMAGE = 12

Ellipse = tuple[float, float, float, float]  # centre x, centre y, radius x, radius y (pixels)


@dataclass(frozen=True)
class Regions:
    """Hand-placed ground truth for one portrait, in its own pixels."""

    face: Ellipse
    eyes: tuple[Ellipse, ...]
    brows: tuple[Ellipse, ...]
    lips: tuple[Ellipse, ...]

    @property
    def features(self) -> tuple[Ellipse, ...]:
        return self.eyes + self.brows + self.lips

    @property
    def face_width(self) -> float:
        return 2.0 * self.face[2]


REGIONS = {
    "astronaut": Regions(
        face=(226, 125, 47, 62),
        eyes=((203, 102, 13, 6), (247, 103, 12, 6)),
        brows=((202, 90, 14, 5), (247, 92, 14, 5)),
        lips=((224, 146, 23, 9),),
    ),
    "grace_hopper": Regions(
        face=(266, 236, 108, 110),
        eyes=((220, 188, 18, 9), (305, 187, 18, 9)),
        brows=((213, 174, 33, 6), (318, 172, 34, 6)),
        lips=((268, 280, 38, 11),),
    ),
    "luispedro": Regions(
        face=(128, 207, 88, 118),
        eyes=((67, 171, 16, 9), (145, 160, 22, 9)),
        brows=((63, 149, 24, 6), (148, 139, 38, 8)),
        lips=((104, 259, 30, 14),),
    ),
}


@dataclass(frozen=True)
class Spot:
    x: float
    y: float
    radius: float


def ellipse_mask(
    shape: tuple[int, int], ellipses: tuple[Ellipse, ...], grow: float = 0.0
) -> NDArray[np.bool_]:
    mask = np.zeros(shape, np.uint8)
    for cx, cy, rx, ry in ellipses:
        axes = (round(rx + grow), round(ry + grow))
        cv2.ellipse(mask, (round(cx), round(cy)), axes, 0, 0, 360, 1, thickness=-1)
    return mask.astype(bool)


def luma(rgb: NDArray[np.uint8]) -> NDArray[np.float32]:
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32)


def flat_skin(clean: NDArray[np.uint8], regions: Regions, margin: float) -> NDArray[np.bool_]:
    """Inside the face oval, away from features, where the clean image is locally flat."""
    shape = clean.shape[:2]
    cx, cy, rx, ry = regions.face
    inner = ellipse_mask(shape, ((cx, cy, 0.8 * rx, 0.8 * ry),))
    features = ellipse_mask(shape, regions.features, grow=margin)
    smooth = cv2.GaussianBlur(luma(clean), (0, 0), 1.5)
    gradient = np.hypot(cv2.Sobel(smooth, cv2.CV_32F, 1, 0), cv2.Sobel(smooth, cv2.CV_32F, 0, 1))
    candidates = inner & ~features
    flat = gradient < np.percentile(gradient[candidates], 50)
    flat = cv2.erode(flat.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
    return candidates & flat


def paint_spots(
    clean: NDArray[np.uint8], regions: Regions, seed: int
) -> tuple[NDArray[np.uint8], list[Spot]]:
    """Paint 6 dark and 6 red Gaussian spots on flat skin; return the image and the spots."""
    rng = np.random.default_rng(seed)
    width = regions.face_width
    allowed = flat_skin(clean, regions, margin=3 * width / 35)
    ys, xs = np.nonzero(allowed)
    image = clean.astype(np.float32)
    yy, xx = np.mgrid[0 : clean.shape[0], 0 : clean.shape[1]].astype(np.float32)
    spots: list[Spot] = []
    for index in rng.permutation(xs.size):
        if len(spots) == SPOTS_PER_IMAGE:
            break
        radius = float(rng.uniform(width / 70, width / 35))
        x, y = float(xs[index]), float(ys[index])
        if any(np.hypot(x - s.x, y - s.y) < 5 * max(radius, s.radius) for s in spots):
            continue
        profile = np.exp(-0.5 * ((xx - x) ** 2 + (yy - y) ** 2) / (0.6 * radius) ** 2)[..., None]
        strength = float(rng.uniform(0.45, 0.7))
        colour = (95, 62, 45) if len(spots) % 2 == 0 else (205, 70, 72)
        image += strength * profile * (np.array(colour, np.float32) - image)
        spots.append(Spot(x, y, radius))
    if len(spots) < SPOTS_PER_IMAGE:
        raise RuntimeError(f"only {len(spots)} spots fit on the skin; lower SPOTS_PER_IMAGE")
    return np.clip(image + 0.5, 0, 255).astype(np.uint8), spots


def spot_contrast(lab: NDArray[np.float64], spot: Spot) -> NDArray[np.float64]:
    pad = int(np.ceil(3 * spot.radius)) + 1
    x0, y0 = max(0, int(spot.x) - pad), max(0, int(spot.y) - pad)
    patch = lab[y0 : int(spot.y) + pad + 1, x0 : int(spot.x) + pad + 1]
    yy, xx = np.mgrid[0 : patch.shape[0], 0 : patch.shape[1]]
    distance = np.hypot(xx + x0 - spot.x, yy + y0 - spot.y)
    disk = patch[distance <= spot.radius].mean(axis=0)
    ring = patch[(distance >= 1.5 * spot.radius) & (distance <= 3 * spot.radius)].mean(axis=0)
    return np.asarray(disk - ring, np.float64)


def ssim_map(a: NDArray[np.float32], b: NDArray[np.float32]) -> NDArray[np.float32]:
    """Luma SSIM map with a Gaussian window (sigma 1.5), as in Wang et al. 2004."""
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2

    def blur(x: NDArray[np.float32]) -> NDArray[np.float32]:
        return np.asarray(cv2.GaussianBlur(x, (11, 11), 1.5), np.float32)

    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a**2
    var_b = blur(b * b) - mu_b**2
    cov = blur(a * b) - mu_a * mu_b
    return ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / (
        (mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2)
    )


def texture(rgb: NDArray[np.uint8], where: NDArray[np.bool_]) -> float:
    return float(cv2.Laplacian(luma(rgb), cv2.CV_32F)[where].var())


def measure(
    clean: NDArray[np.uint8],
    blemished: NDArray[np.uint8],
    out: NDArray[np.uint8],
    regions: Regions,
    spots: list[Spot],
) -> dict[str, float]:
    lab_clean, lab_blem, lab_out = (rgb2lab(x) for x in (clean, blemished, out))
    removals = []
    for spot in spots:
        base = spot_contrast(lab_clean, spot)
        painted = np.linalg.norm(spot_contrast(lab_blem, spot) - base)
        residual = np.linalg.norm(spot_contrast(lab_out, spot) - base)
        removals.append(float(np.clip(1.0 - residual / painted, 0.0, 1.0)))
    shape = clean.shape[:2]
    face = ellipse_mask(shape, (regions.face,))
    features = ellipse_mask(shape, regions.features)
    ssim = ssim_map(luma(clean), luma(out))
    skin = flat_skin(clean, regions, margin=3 * regions.face_width / 35)
    for spot in spots:
        cv2.circle(
            skin.view(np.uint8), (round(spot.x), round(spot.y)), int(3 * spot.radius) + 2, 0, -1
        )
    return {
        "removal": float(np.mean(removals)),
        "removed_share": float(np.mean(np.array(removals) >= 0.7)),
        "ssim_outside_face": float(ssim[~face].mean()),
        "ssim_features": float(ssim[features].mean()),
        "de00_image": float(deltaE_ciede2000(lab_clean, lab_out).mean()),
        "texture_kept": texture(out, skin) / texture(clean, skin),
    }


def methods() -> dict[str, Callable[[NDArray[np.uint8]], NDArray[np.uint8]]]:
    return {
        "identity": lambda rgb: rgb,
        "gaussian blur (naive)": lambda rgb: np.asarray(
            cv2.GaussianBlur(rgb, (0, 0), 2.0), np.uint8
        ),
        "engine, strength 0.5": lambda rgb: np.asarray(retouch(_image(rgb), 0.5)),
        "engine, strength 0.8": lambda rgb: np.asarray(retouch(_image(rgb), 0.8)),
    }


def _image(rgb: NDArray[np.uint8]):  # type: ignore[no-untyped-def]
    from PIL import Image

    return Image.fromarray(rgb)


def draw(folder: Path, seed: int) -> None:
    """Overlays of the regions and of one seed's spots, and before/after face crops.

    ``NAME_regions.png`` shows the hand-placed ellipses and the painted spots' rings;
    ``NAME_before_after.png`` shows the face, enlarged 2x, as clean | blemished | engine
    at 0.8, to check by eye that spots go and that wrinkles and glasses are not smeared.
    """
    folder.mkdir(parents=True, exist_ok=True)
    for name, regions in REGIONS.items():
        clean = np.asarray(samples.load(name).convert("RGB"))
        blemished, spots = paint_spots(clean, regions, seed)
        canvas = blemished.copy()
        for cx, cy, rx, ry in (regions.face, *regions.features):
            cv2.ellipse(
                canvas, (round(cx), round(cy)), (round(rx), round(ry)), 0, 0, 360, (0, 255, 0), 1
            )
        for spot in spots:
            cv2.circle(
                canvas, (round(spot.x), round(spot.y)), round(3 * spot.radius), (255, 255, 0), 1
            )
        cv2.imwrite(str(folder / f"{name}_regions.png"), cv2.cvtColor(canvas, cv2.COLOR_RGB2BGR))
        out = np.asarray(retouch(_image(blemished), 0.8))
        cx, cy, rx, ry = regions.face
        x0, x1 = max(0, round(cx - rx)), round(cx + rx)
        y0, y1 = max(0, round(cy - ry)), round(cy + ry)
        strip = np.hstack([image[y0:y1, x0:x1] for image in (clean, blemished, out)])
        strip = cv2.resize(strip, None, fx=2, fy=2, interpolation=cv2.INTER_NEAREST)
        cv2.imwrite(
            str(folder / f"{name}_before_after.png"), cv2.cvtColor(strip, cv2.COLOR_RGB2BGR)
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--draw", type=Path, help="write region overlays and before/after crops to this folder"
    )
    parser.add_argument(
        "--seeds",
        type=int,
        nargs="+",
        default=list(SEEDS),
        help=f"spot-placement seeds (default {' '.join(map(str, SEEDS))}); other seeds check "
        "that a change does not only fit the default spots",
    )
    args = parser.parse_args()
    seeds = tuple(args.seeds)
    if args.draw:
        draw(args.draw, seeds[0])
    cv2.setNumThreads(1)
    started = time.perf_counter()
    rows: dict[str, dict[str, list[dict[str, float]]]] = {m: {} for m in methods()}
    for name, regions in REGIONS.items():
        clean = np.asarray(samples.load(name).convert("RGB"))
        for seed in seeds:
            blemished, spots = paint_spots(clean, regions, seed)
            for method, run in methods().items():
                out = run(blemished)
                rows[method].setdefault(name, []).append(
                    measure(clean, blemished, out, regions, spots)
                )
    report = summarise(rows, seeds)
    report["seconds"] = round(time.perf_counter() - started, 1)
    report["machine"] = {
        "python": platform.python_version(),
        "opencv": cv2.__version__,
        "numpy": np.__version__,
    }
    print_report(report)
    RESULTS.mkdir(exist_ok=True)
    suffix = "" if seeds == SEEDS else "_seeds_" + "_".join(map(str, seeds))
    written = RESULTS / f"engine_quality{suffix}.json"
    written.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwritten to {written} ({report['seconds']} s)")


def summarise(
    rows: dict[str, dict[str, list[dict[str, float]]]], seeds: tuple[int, ...]
) -> dict[str, object]:
    means: dict[str, dict[str, float]] = {}
    per_image: dict[str, dict[str, dict[str, float]]] = {}
    for method, by_image in rows.items():
        everything = [r for runs in by_image.values() for r in runs]
        means[method] = {
            k: round(float(np.mean([r[k] for r in everything])), 4) for k in everything[0]
        }
        per_image[method] = {
            name: {k: round(float(np.mean([r[k] for r in runs])), 4) for k in runs[0]}
            for name, runs in by_image.items()
        }
    return {
        "means": means,
        "per_image": per_image,
        "seeds": list(seeds),
        "spots_per_image": SPOTS_PER_IMAGE,
    }


COLUMNS = (
    "removal",
    "removed_share",
    "ssim_outside_face",
    "ssim_features",
    "de00_image",
    "texture_kept",
)
GOALS = {
    "removal": ">= 0.75",
    "ssim_outside_face": ">= 0.99",
    "ssim_features": ">= 0.97",
    "de00_image": "<= 0.5",
    "texture_kept": "0.4-0.9",
}


def print_report(report: dict[str, object]) -> None:
    header = [
        "method",
        "removal",
        "removed>=0.7",
        "SSIM outside face",
        "SSIM features",
        "dE00 image",
        "texture kept",
    ]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    means = report["means"]
    assert isinstance(means, dict)
    for method, values in means.items():
        print("| " + method + " | " + " | ".join(f"{values[c]:.3f}" for c in COLUMNS) + " |")
    print("| goal (engine 0.8) | " + " | ".join(GOALS.get(c, "") for c in COLUMNS) + " |")
    per_image = report["per_image"]
    assert isinstance(per_image, dict)
    print("\nengine, strength 0.8, per image:\n")
    print("| image | " + " | ".join(header[1:]) + " |")
    print("|" + "---|" * len(header))
    for name, values in per_image["engine, strength 0.8"].items():
        print(f"| {name} | " + " | ".join(f"{values[c]:.3f}" for c in COLUMNS) + " |")


if __name__ == "__main__":
    main()
