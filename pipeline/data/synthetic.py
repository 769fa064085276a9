"""A synthetic dataset in the exact layout and format of the Kaggle download.

Each image shows one or two stylised figures dressed in garments of real categories:
tops, trousers, skirts, dresses, jackets and coats with their sleeves, necklines,
collars and pockets, plus shoes, belts, bags, hats, glasses and watches. Every category
has its own colour and a shape and place on the body, so a model can learn it. Garments
of categories 0-12 carry a textile pattern and a length that are visible in the image,
and, on a share of the images (as in the real data, most carry none), the matching
attribute ids. Garment parts overlap their garment; outer layers hide what they cover.

Everything is drawn from ``numpy.random.default_rng((seed, split, index))``, so an image
depends only on the seed and its index.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import get_args

import numpy as np
from PIL import Image
from tqdm import tqdm

from pipeline.config.params import Profile, SyntheticParams
from pipeline.data import rle, synthetic_real
from pipeline.data.annotations import SUBMISSION_COLUMNS, TRAIN_COLUMNS
from pipeline.data.labels import BUNDLED_LABELS, ClassId
from pipeline.data.synthetic_figures import Piece, occlude, scene
from pipeline.utils.io import atomic_path
from pipeline.utils.pool import ordered_map, worker_count


def _image_size(rng: np.random.Generator, min_side: int, max_side: int) -> tuple[int, int]:
    long_side = int(rng.integers(min_side, max_side + 1))
    ratio = rng.uniform(1.15, 1.6)
    kind = rng.random()
    if kind < 0.65:
        return long_side, max(int(long_side / ratio), 16)
    if kind < 0.8:
        return long_side, long_side
    return max(int(long_side / ratio), 16), long_side


_SPLITS = {"train": 0, "test": 1}
_POOL_FROM = 200  # images: fewer are written in-process (a process pool takes seconds to start)
#: One train.csv row: ImageId, EncodedPixels, Height, Width, ClassId.
Row = tuple[str, str, int, int, str]


def image_rng(seed: int, split: str, index: int, stream: int = 0) -> np.random.Generator:
    """Generator of one image: stream 0 draws the scene, stream 1 the paint."""
    return np.random.default_rng((seed, _SPLITS[split], index, stream))


def image_id(seed: int, split: str, index: int) -> str:
    """A 32-hex-digit name like the real ones, e.g. ``00000663ed1ff0c4e0132b9b9ac53f6e.jpg``."""
    return hashlib.md5(f"synthetic-{seed}-{split}-{index}".encode()).hexdigest() + ".jpg"


@dataclass(frozen=True)
class Scene:
    """One image before painting: its size, and its visible pieces drawn at ``drawn_size`` (its own or smaller)."""

    height: int
    width: int
    drawn_size: tuple[int, int]
    visible: list[tuple[Piece, np.ndarray]]


def make_scene(seed: int, split: str, index: int, min_side: int, max_side: int, attribute_rate: float,
               profile: Profile = "demo") -> Scene:
    """Size and visible pieces of one image (no pixels painted); the real profile draws them smaller."""
    if profile not in get_args(Profile):
        raise ValueError(f"unknown synthetic profile {profile!r}: one of {', '.join(get_args(Profile))}")
    rng = image_rng(seed, split, index)
    if profile == "real":
        height, width = synthetic_real.image_size(rng, min_side, max_side)
        attributed = rng.random() < attribute_rate
        drawn_size = synthetic_real.working_size(height, width)
        return Scene(height, width, drawn_size, occlude(synthetic_real.real_scene(rng, *drawn_size, attributed)))
    height, width = _image_size(rng, min_side, max_side)
    attributed = rng.random() < attribute_rate
    return Scene(height, width, (height, width), occlude(scene(rng, height, width, attributed)))


def _pattern_mask(pattern: str, height: int, width: int, period: int) -> np.ndarray:
    y, x = np.ogrid[:height, :width]
    if pattern == "stripe":
        return (y // period) % 2 == 0
    if pattern == "check":
        return (y // period + x // period) % 2 == 0
    if pattern == "dot":
        r = period / 2
        return (x % period - r + 0.5) ** 2 + (y % period - r + 0.5) ** 2 < (period / 3.5) ** 2
    return np.zeros((height, width), dtype=bool)


def paint(rng: np.random.Generator, height: int, width: int, visible: list[tuple[Piece, np.ndarray]]) -> Image.Image:
    """The RGB image: background, then each visible piece from the bottom up, then noise."""
    top, bottom = rng.uniform(150, 250, size=(2, 3))
    ramp = np.linspace(0, 1, height, dtype=np.float32)[:, None, None]
    canvas = (top * (1 - ramp) + bottom * ramp).repeat(width, axis=1).astype(np.float32)
    period = max(3, int(min(height, width) / 40))
    for piece, mask in reversed(visible):
        canvas[mask] = piece.colour
        if piece.pattern != "plain":
            light = piece.colour.mean() > 110
            ink = piece.colour * 0.45 if light else piece.colour * 0.5 + 120
            canvas[mask & _pattern_mask(piece.pattern, height, width, period)] = ink
    canvas += rng.normal(0, 4, size=canvas.shape).astype(np.float32)
    return Image.fromarray(np.clip(canvas, 0, 255).astype(np.uint8))


def _nearest(size: int, drawn: int) -> np.ndarray:
    """For each of ``size`` pixels, the nearest of ``drawn`` pixels spanning the same length."""
    return np.minimum(((np.arange(size) + 0.5) * drawn / size).astype(np.int64), drawn - 1)


def encode_scaled(mask: np.ndarray, height: int, width: int) -> str:
    """Kaggle RLE of ``mask`` scaled up (nearest neighbour) to ``height`` x ``width``, costing its box only."""
    if height < mask.shape[0] or width < mask.shape[1]:
        raise ValueError(f"a mask of {mask.shape} is scaled up, not down to {height}x{width}")
    rows, cols = _nearest(height, mask.shape[0]), _nearest(width, mask.shape[1])
    ys, xs = np.nonzero(mask)
    if not ys.size:
        return ""
    top, bottom = np.searchsorted(rows, ys.min()), np.searchsorted(rows, ys.max() + 1)
    left, right = np.searchsorted(cols, xs.min()), np.searchsorted(cols, xs.max() + 1)
    return rle.encode_window(mask[rows[top:bottom]][:, cols[left:right]], int(top), int(left), height, width)


def _rows(name: str, drawn: Scene) -> list[Row]:
    """train.csv rows of one image: its annotated pieces, those with a visible pixel."""
    return [(name, encode_scaled(mask, drawn.height, drawn.width), drawn.height, drawn.width,
             str(ClassId(piece.category, piece.attributes)))
            for piece, mask in drawn.visible if piece.category is not None and mask.any()]


def annotation_rows(seed: int, index: int, min_side: int, max_side: int, attribute_rate: float,
                    profile: Profile = "demo") -> list[Row]:
    """train.csv rows of one train image, without painting it (for full-scale CSV benchmarks)."""
    drawn = make_scene(seed, "train", index, min_side, max_side, attribute_rate, profile)
    return _rows(image_id(seed, "train", index), drawn)


@dataclass(frozen=True)
class SyntheticSummary:
    train_images: int
    test_images: int
    instances: int
    size_defect_image: str | None


#: What a process needs to write one image: the dataset's folder, the split, the index, the params, and
#: whether to write it rotated.
WriteTask = tuple[Path, str, int, SyntheticParams, bool]


def _write_image(task: WriteTask) -> tuple[str, list[Row]]:
    """Paint and save one JPEG; its name and train.csv rows."""
    root, split, index, params, rotated = task
    drawn = make_scene(params.seed, split, index, params.min_side, params.max_side, params.attribute_rate,
                       params.profile)
    image = paint(image_rng(params.seed, split, index, stream=1), *drawn.drawn_size, drawn.visible)
    if image.size != (drawn.width, drawn.height):
        image = image.resize((drawn.width, drawn.height), Image.Resampling.BILINEAR)
    if rotated:  # like the real defect: the JPEG disagrees with train.csv's Height/Width
        image = image.transpose(Image.Transpose.ROTATE_90)
    name = image_id(params.seed, split, index)
    image.save(root / split / name, quality=params.jpeg_quality)
    return name, _rows(name, drawn)


def _write_images(root: Path, split: str, count: int, params: SyntheticParams,
                  defect_index: int | None = None) -> Iterator[tuple[str, list[Row]]]:
    """Paint and save the JPEGs of one split, in order, in ``params.workers`` processes; yield names and rows."""
    tasks: list[WriteTask] = [(root, split, index, params, index == defect_index) for index in range(count)]
    with ordered_map(worker_count(params.workers, count, _POOL_FROM)) as imap:
        yield from tqdm(imap(_write_image, tasks, chunksize=2), total=count, desc=f"synthetic {split}", unit="img")


def write_dataset(out_dir: Path | str, params: SyntheticParams, labels_path=BUNDLED_LABELS) -> SyntheticSummary:
    """Write train/, test/, train.csv, label_descriptions.json and sample_submission.csv atomically."""
    defect_index = None
    if params.size_defect:
        defect_index = int(np.random.default_rng((params.seed, 2)).integers(params.train_images))
    n_instances = 0
    with atomic_path(out_dir) as root:
        for split in _SPLITS:
            (root / split).mkdir(parents=True)
        with open(root / "train.csv", "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(TRAIN_COLUMNS)
            # closing: an error here ends the workers before the temporary folder is removed
            with contextlib.closing(_write_images(root, "train", params.train_images, params, defect_index)) as images:
                for _, rows in images:
                    writer.writerows(rows)
                    n_instances += len(rows)
        with open(root / "sample_submission.csv", "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(SUBMISSION_COLUMNS)
            with contextlib.closing(_write_images(root, "test", params.test_images, params)) as images:
                for name, _ in images:
                    writer.writerow((name, "1 1", 23))
        shutil.copyfile(labels_path, root / "label_descriptions.json")
    defect = image_id(params.seed, "train", defect_index) if defect_index is not None else None
    return SyntheticSummary(params.train_images, params.test_images, n_instances, defect)
