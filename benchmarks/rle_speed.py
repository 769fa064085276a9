"""RLE codec speed against pycocotools and a per-pixel loop, as ratios measured in one run.

    python benchmarks/rle_speed.py

Targets (issue 2): decode faster than ``pycocotools.mask.decode``; encode within 1.5x of
``pycocotools.mask.encode`` including its Fortran-order conversion, and at least 50x
faster than a per-pixel Python loop.
"""

from __future__ import annotations

import timeit

import numpy as np
import pycocotools.mask as coco_mask
from PIL import Image, ImageDraw

from pipeline.data import rle


def blob(height: int, width: int, share: float = 0.2) -> np.ndarray:
    """An ellipse covering about ``share`` of the image, with a ragged edge."""
    image = Image.new("1", (width, height), 0)
    rx, ry = width * np.sqrt(share / np.pi), height * np.sqrt(share / np.pi)
    angles = np.linspace(0, 2 * np.pi, 360, endpoint=False)
    wobble = 1 + 0.05 * np.random.default_rng(0).standard_normal(angles.size)
    points = list(zip(width / 2 + rx * wobble * np.cos(angles), height / 2 + ry * wobble * np.sin(angles), strict=True))
    ImageDraw.Draw(image).polygon(points, fill=1)
    return np.array(image, dtype=bool)


def per_pixel_encode(mask: np.ndarray) -> str:
    """The naive reference: one Python step per pixel."""
    runs, start, previous = [], 0, False
    for index, value in enumerate(mask.ravel(order="F").tolist()):
        if value and not previous:
            start = index + 1
        elif previous and not value:
            runs += [start, index + 1 - start]
        previous = value
    if previous:
        runs += [start, mask.size + 1 - start]
    return " ".join(map(str, runs))


def best(statement, number: int) -> float:
    return min(timeit.repeat(statement, number=number, repeat=5)) / number


def measure(height: int, width: int) -> str:
    """One table row: our codec and pycocotools on the same blob, plus the per-pixel loop."""
    mask = blob(height, width)
    text = rle.encode(mask)
    coco = coco_mask.encode(np.asfortranarray(mask.astype(np.uint8)))
    assert np.array_equal(rle.decode(text, height, width), coco_mask.decode(coco).astype(bool))
    assert per_pixel_encode(mask) == text
    n = 20
    ours_decode = best(lambda: rle.decode(text, height, width), n)
    coco_decode = best(lambda: coco_mask.decode(coco), n)
    ours_encode = best(lambda: rle.encode(mask), n)
    coco_encode = best(lambda: coco_mask.encode(np.asfortranarray(mask.astype(np.uint8))), n)
    loop = min(timeit.repeat(lambda: per_pixel_encode(mask), number=1, repeat=2))
    return (f"{height}x{width:<5} {mask.mean():8.1%} | {ours_decode * 1e3:9.2f} {coco_decode * 1e3:8.2f} "
            f"{ours_decode / coco_decode:6.2f} | {ours_encode * 1e3:9.2f} {coco_encode * 1e3:8.2f} "
            f"{ours_encode / coco_encode:6.2f} | {loop * 1e3:8.0f} {loop / ours_encode:7.0f}x")


def main() -> None:
    print(f"{'mask':>10} {'coverage':>8} | {'decode ms':>9} {'coco ms':>8} {'ratio':>6} | "
          f"{'encode ms':>9} {'coco ms':>8} {'ratio':>6} | {'loop ms':>8} {'speed-up':>8}")
    for height, width in ((1024, 1024), (3000, 2000)):
        print(measure(height, width))
    print("ratio = ours / pycocotools (below 1: ours is faster); speed-up = per-pixel loop / ours (encode)")


if __name__ == "__main__":
    main()
