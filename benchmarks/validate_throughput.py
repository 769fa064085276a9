"""Validation throughput of stage prepare's CSV path on a full-scale synthetic train.csv.

    python benchmarks/validate_throughput.py [--images 45625] [--min-side 256] [--max-side 512]

Writes (once, cached in benchmarks/.cache/) a train.csv the size of the real one
(45,625 images, about 9 instances each), then times ``pipeline.data.annotations.prepare`` on
it without the image folder: reading, checking every row's RLE and ClassId, computing areas
and boxes, and building the table; no pixel is decoded. Target (issue 2): 20,000 rows/s
on one core. RLE length grows with image size, so bytes/s is printed too.
"""

from __future__ import annotations

import argparse
import csv
import os
import time
from multiprocessing import Pool
from pathlib import Path

from pipeline.data.annotations import TRAIN_COLUMNS, prepare
from pipeline.data.labels import load_labels
from pipeline.data.synthetic import annotation_rows

CACHE = Path(__file__).resolve().parent / ".cache"


def _rows(job: tuple[int, int, int, int]) -> list:
    start, stop, min_side, max_side = job
    return [row for index in range(start, stop) for row in annotation_rows(2019, index, min_side, max_side, 0.2)]


def full_scale_csv(images: int, min_side: int, max_side: int) -> Path:
    path = CACHE / f"train_{images}_{min_side}_{max_side}.csv"
    if path.exists():
        return path
    CACHE.mkdir(exist_ok=True)
    started = time.perf_counter()
    chunk = 500
    jobs = [(i, min(i + chunk, images), min_side, max_side) for i in range(0, images, chunk)]
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", newline="") as handle, Pool(os.cpu_count()) as pool:
        writer = csv.writer(handle)
        writer.writerow(TRAIN_COLUMNS)
        for rows in pool.imap(_rows, jobs):
            writer.writerows(rows)
    tmp.rename(path)
    print(f"generated {path} in {time.perf_counter() - started:.0f} s")
    return path


def main() -> None:
    cli = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    cli.add_argument("--images", type=int, default=45_625)
    cli.add_argument("--min-side", type=int, default=256)
    cli.add_argument("--max-side", type=int, default=512)
    args = cli.parse_args()
    path = full_scale_csv(args.images, args.min_side, args.max_side)
    labels = load_labels()
    started = time.perf_counter()
    result = prepare(path, labels, image_dir=None)
    seconds = time.perf_counter() - started
    rows = result.report["rows"]
    size = path.stat().st_size
    tokens = result.instances.rle.str.count(" ").add(1).mean()
    print(f"{rows:,} rows of {result.report['images']:,} images ({size / 1e6:.0f} MB, {tokens:.0f} RLE tokens "
          f"per row), {result.report['rows_dropped']} dropped")
    print(f"validated in {seconds:.1f} s: {rows / seconds:,.0f} rows/s, {size / seconds / 1e6:.0f} MB/s "
          f"(target 20,000 rows/s)")


if __name__ == "__main__":
    main()
