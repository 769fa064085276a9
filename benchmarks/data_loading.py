"""What the image cache buys: training samples per second from the original JPEGs and from the cache.

Generates a synthetic dataset with photo-sized images (default 2000-4000 px on the long side,
like the competition's), then times one process producing training samples (decode, masks,
resize, augmentation) at the real-data resolution (min_size = max_size = 1024):
  1. from the original JPEGs and the prepared table,
  2. building the cache (the one-off cost of stage cache),
  3. from the cache.

  python benchmarks/data_loading.py [--images 24] [--min-side 2000] [--max-side 4000]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch

from pipeline.config.params import SyntheticParams
from pipeline.config.training import AugmentParams
from pipeline.data.annotations import prepare
from pipeline.data.dataset import InstanceDataset
from pipeline.data.image_cache import CacheSettings, build_cache
from pipeline.data.labels import load_labels
from pipeline.data.synthetic import write_dataset
from pipeline.data.transforms import Augment

AUGMENT = AugmentParams(hflip=True, scale_range=(0.8, 1.2), color_jitter=0.2)


def samples_per_second(dataset: InstanceDataset, rounds: int = 2) -> float:
    start = time.perf_counter()
    for round_ in range(rounds):
        for index in range(len(dataset)):
            dataset[(index, round_ * len(dataset) + index)]
    return rounds * len(dataset) / (time.perf_counter() - start)


def main() -> None:
    cli = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    cli.add_argument("--images", type=int, default=24)
    cli.add_argument("--min-side", type=int, default=2000)
    cli.add_argument("--max-side", type=int, default=4000)
    cli.add_argument("--size", type=int, default=1024, help="training min_size = max_size")
    args = cli.parse_args()
    torch.set_num_threads(1)  # one DataLoader worker's view
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "raw"
        write_dataset(root, SyntheticParams(seed=1, train_images=args.images, test_images=1, min_side=args.min_side,
                                            max_side=args.max_side, attribute_rate=0.2, size_defect=False))
        table = prepare(root / "train.csv", load_labels(), root / "train").instances
        megapixels = (table.groupby("image_id").first().eval("height * width") / 1e6).mean()
        augment = Augment(AUGMENT)
        raw = samples_per_second(InstanceDataset(table, root / "train", args.size, args.size, 92, augment))
        start = time.perf_counter()
        settings = CacheSettings(args.size, args.size, AUGMENT.scale_range[1], jpeg_quality=95)
        build_cache(table, root / "train", Path(tmp) / "cache", settings, workers=1)
        cache_seconds = (time.perf_counter() - start) / table.image_id.nunique()
        cached_table = pd.read_parquet(Path(tmp) / "cache" / "instances.parquet")
        cached = samples_per_second(InstanceDataset(cached_table, Path(tmp) / "cache" / "images", args.size,
                                                    args.size, 92, augment))
    print(json.dumps({
        "images": args.images, "mean_megapixels": round(float(megapixels), 1),
        "instances_per_image": round(len(table) / args.images, 1), "training_size": args.size,
        "original_samples_per_second_per_process": round(raw, 2),
        "cached_samples_per_second_per_process": round(cached, 2),
        "speed_up": round(cached / raw, 1),
        "cache_build_seconds_per_image_per_process": round(cache_seconds, 3),
        "processes_for_25_images_per_second": {"original": round(25 / raw, 1), "cached": round(25 / cached, 1)},
    }, indent=2))


if __name__ == "__main__":
    main()
