"""The synthetic dataset: Kaggle layout and format, determinism, realism and learnability."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from pipeline.config.params import SyntheticParams
from pipeline.data import rle
from pipeline.data.annotations import TRAIN_COLUMNS
from pipeline.data.labels import BUNDLED_LABELS, load_labels
from pipeline.data.synthetic import write_dataset

LABELS = load_labels()


def digest(root: Path) -> str:
    h = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        h.update(str(path.relative_to(root)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def train_table(root: Path) -> pd.DataFrame:
    return pd.read_csv(root / "train.csv", dtype={"EncodedPixels": str, "ClassId": str})


def test_kaggle_layout(small_dataset, small_params):
    assert sorted(p.name for p in small_dataset.iterdir()) == [
        "label_descriptions.json", "sample_submission.csv", "test", "train", "train.csv"]
    assert (small_dataset / "train.csv").read_text().splitlines()[0] == ",".join(TRAIN_COLUMNS)
    assert (small_dataset / "label_descriptions.json").read_bytes() == BUNDLED_LABELS.read_bytes()
    train = train_table(small_dataset)
    assert set(train.ImageId) == {p.name for p in (small_dataset / "train").iterdir()}
    assert all(re.fullmatch(r"[0-9a-f]{32}\.jpg", i) for i in train.ImageId)
    submission = pd.read_csv(small_dataset / "sample_submission.csv", dtype=str)
    assert list(submission.columns) == ["ImageId", "EncodedPixels", "ClassId"]
    assert sorted(submission.ImageId) == sorted(p.name for p in (small_dataset / "test").iterdir())
    assert len(submission) == small_params.test_images
    with Image.open(next((small_dataset / "test").iterdir())) as image:
        assert image.format == "JPEG" and image.mode == "RGB"


def test_same_seed_same_bytes_other_seed_other_data(small_dataset, small_params, tmp_path):
    write_dataset(tmp_path / "again", small_params)
    assert digest(tmp_path / "again") == digest(small_dataset)
    write_dataset(tmp_path / "other", small_params.model_copy(update={"seed": small_params.seed + 1}))
    assert digest(tmp_path / "other") != digest(small_dataset)


def test_rows_are_valid_and_sizes_follow_params(small_dataset, small_params):
    train = train_table(small_dataset)
    for row in train.itertuples():
        assert rle.decode(row.EncodedPixels, row.Height, row.Width).any()
        LABELS.parse(row.ClassId)
    sizes = train.groupby("ImageId")[["Height", "Width"]].first()
    long_side = sizes.max(axis=1)
    assert long_side.between(small_params.min_side, small_params.max_side).all()
    ratio = sizes.Height / sizes.Width
    assert (ratio > 1.1).any() and (ratio <= 1.0).any(), "portrait and square or landscape images"
    assert sizes.drop_duplicates().shape[0] > len(sizes) // 2


def test_exactly_one_size_defect_when_asked(small_dataset, small_params, tmp_path):
    def mismatches(root: Path) -> int:
        sizes = train_table(root).groupby("ImageId")[["Height", "Width"]].first()
        count = 0
        for image_id, height, width in sizes.itertuples(name=None):
            with Image.open(root / "train" / image_id) as image:
                count += image.size != (width, height)
        return count

    assert mismatches(small_dataset) == 1
    write_dataset(tmp_path / "clean", small_params.model_copy(update={"size_defect": False}))
    assert mismatches(tmp_path / "clean") == 0


@pytest.fixture(scope="module")
def larger(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("larger") / "raw"
    write_dataset(root, SyntheticParams(seed=3, train_images=80, test_images=1, min_side=160, max_side=256,
                                        attribute_rate=0.2, size_defect=False))
    return root


def test_realistic_statistics(larger):
    train = train_table(larger)
    parsed = train.ClassId.map(LABELS.parse)
    category = parsed.map(lambda c: c.category)
    has_attributes = parsed.map(lambda c: bool(c.attributes))
    assert category.nunique() >= 20
    assert set(category[has_attributes]) <= set(range(13)), "attributes only on categories 0-12"
    attributed_images = train.ImageId[has_attributes].nunique() / train.ImageId.nunique()
    assert 0.08 <= attributed_images <= 0.35, "most images carry no attributes, as in the real data"
    per_image = train.groupby("ImageId").size()
    assert 5 <= per_image.mean() <= 12
    areas = [rle.decode(r.EncodedPixels, r.Height, r.Width).sum() for r in train.itertuples()]
    assert sum(a < 20 for a in areas) >= 3, "some tiny objects"


def test_instances_of_different_classes_overlap_and_same_class_do_not(larger):
    train = train_table(larger)
    cross = 0
    for _, rows in train.groupby("ImageId"):
        masks = [rle.decode(r.EncodedPixels, r.Height, r.Width) for r in rows.itertuples()]
        for i in range(len(masks)):
            for j in range(i + 1, len(masks)):
                if (masks[i] & masks[j]).any():
                    assert rows.ClassId.iloc[i] != rows.ClassId.iloc[j], "same ClassId must not share a pixel"
                    cross += 1
    assert cross >= len(train.ImageId.unique())


def features(root: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per instance: mean colour, height on the image, relative size, aspect; its category; its image."""
    train = train_table(root)
    rows = []
    for image_id, group in train.groupby("ImageId"):
        pixels = np.asarray(Image.open(root / "train" / image_id).convert("RGB"), dtype=np.float32) / 255
        for r in group.itertuples():
            mask = rle.decode(r.EncodedPixels, r.Height, r.Width)
            ys, xs = np.nonzero(mask)
            rows.append((*pixels[mask].mean(axis=0), ys.mean() / r.Height, np.log(mask.mean()),
                         (np.ptp(xs) + 1) / (np.ptp(ys) + 1), LABELS.parse(r.ClassId).category, image_id))
    table = np.array(rows, dtype=object)
    return table[:, :6].astype(float), table[:, 6].astype(int), table[:, 7]


def nearest_neighbour_accuracy(x: np.ndarray, y: np.ndarray, images: np.ndarray) -> float:
    held_out = np.isin(images, np.unique(images)[::4])
    x = (x - x.mean(axis=0)) / x.std(axis=0)
    distance = ((x[held_out][:, None] - x[~held_out][None]) ** 2).sum(axis=-1)
    return float((y[~held_out][distance.argmin(axis=1)] == y[held_out]).mean())


def test_categories_are_learnable_from_colour_shape_and_position(larger):
    """A 1-nearest-neighbour on six hand-made features tells categories apart on unseen images."""
    x, y, images = features(larger)
    assert nearest_neighbour_accuracy(x, y, images) >= 0.85
    shuffled = np.random.default_rng(0).permutation(y)
    assert nearest_neighbour_accuracy(x, shuffled, images) < 0.5, "the check can fail"


def test_visible_attributes_match_the_drawing(larger):
    """Pattern attributes are painted: striped garments differ in texture from plain ones."""
    train = train_table(larger)
    spreads = {61: [], 72: []}
    for r in train.itertuples():
        c = LABELS.parse(r.ClassId)
        pattern = {61, 72} & set(c.attributes)
        if pattern:
            mask = rle.decode(r.EncodedPixels, r.Height, r.Width)
            grey = np.asarray(Image.open(larger / "train" / r.ImageId).convert("L"), dtype=np.float32)
            spreads[pattern.pop()].append(grey[mask].std())
    assert spreads[61] and spreads[72]
    assert np.median(spreads[72]) > 2 * np.median(spreads[61])
