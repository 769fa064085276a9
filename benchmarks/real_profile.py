"""The real profile of the synthetic data: its statistics against the real data's, and how fast it is written.

Measures ``--images`` train images without painting them (``annotation_rows``): the figures of
``docs/data.md``'s table, the tail of instances per image, and each category's instances per image
beside the real rate. Then writes ``--write`` train images (and one test image) to a temporary
folder with ``--workers`` processes, and prints the time, the images' mean size and their bytes.

  python benchmarks/real_profile.py --images 2000 --write 1000 --workers 2
"""

from __future__ import annotations

import argparse
import collections
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from pipeline.config.params import SyntheticParams  # noqa: E402
from pipeline.data.labels import load_labels  # noqa: E402
from pipeline.data.synthetic import annotation_rows, write_dataset  # noqa: E402
from pipeline.data.synthetic_real import statistics  # noqa: E402

SEED, MIN_SIDE, MAX_SIDE, ATTRIBUTE_RATE = 2019, 296, 8688, 0.2


def report_statistics(count: int) -> None:
    rows = [row for index in range(count) for row in annotation_rows(SEED, index, MIN_SIDE, MAX_SIDE,
                                                                     ATTRIBUTE_RATE, "real")]
    for name, value in statistics(rows).items():
        print(f"{name:<28} {value:10.4f}")
    per_image = np.array(list(collections.Counter(row[0] for row in rows).values()))
    print(f"instances per image: median {np.median(per_image):.0f}, over 20 {np.mean(per_image > 20):.2%}, "
          f"over 50 {np.mean(per_image > 50):.2%}, largest {per_image.max()}")
    counts = collections.Counter(int(row[4].split("_")[0]) for row in rows)
    labels = load_labels()
    print("category: instances per image")
    for category in sorted(counts, key=counts.get, reverse=True):
        print(f"  {labels.categories[category].name:<40} {counts[category] / count:.3f}")


def report_writing(count: int, workers: int) -> None:
    params = SyntheticParams(seed=SEED, train_images=count, test_images=1, min_side=MIN_SIDE, max_side=MAX_SIDE,
                             attribute_rate=ATTRIBUTE_RATE, size_defect=False, profile="real", workers=workers)
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        write_dataset(Path(folder) / "raw", params)
        seconds = time.perf_counter() - start
        images = list((Path(folder) / "raw" / "train").iterdir())
        pixels = [np.prod(Image.open(path).size) for path in images]
        size = sum(path.stat().st_size for path in images)
    print(f"wrote {count} images in {seconds:.0f} s with {workers or 'one per CPU'} worker(s): "
          f"{count / seconds:.1f} images/s, {np.mean(pixels) / 1e6:.1f} megapixels and {size / count / 1e3:.0f} KB "
          "each on average")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000, help="images whose statistics are measured")
    parser.add_argument("--write", type=int, default=1000, help="images written to measure the speed (0: none)")
    parser.add_argument("--workers", type=int, default=0, help="processes writing them (0: one per CPU)")
    args = parser.parse_args()
    report_statistics(args.images)
    if args.write:
        report_writing(args.write, args.workers)


if __name__ == "__main__":
    main()
