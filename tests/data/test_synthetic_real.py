"""The real profile of the synthetic dataset: the statistics docs/data.md cites, its format and its speed-ups."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from pipeline.config.params import SyntheticParams
from pipeline.data import rle
from pipeline.data.labels import load_labels
from pipeline.data.synthetic import annotation_rows, encode_scaled, make_scene, write_dataset
from pipeline.data.synthetic_decorations import DECORATIONS, HOSTS
from pipeline.data.synthetic_real import statistics

DOC = Path(__file__).resolve().parents[2] / "docs" / "data.md"
LABELS = load_labels()
CLUSTERED = {37, 42, 44}  # beads, rivets, sequins: a heavy-tailed count per image, by design
REAL_IMAGES = 45_623  # of the per-category counts the docs cite (source [C])


def cited_figures() -> dict[str, tuple[float, float, bool]]:
    """docs/data.md's table of the real profile: statistic -> (real figure, tolerance, tolerance relative)."""
    figures = {}
    for line in DOC.read_text().splitlines():
        if match := re.match(r"\| `(\w+)`[^|]*\| ([\d,.]+) \|.*\| ±([\d.]+)( %)? \|$", line):
            name, value, tolerance, relative = match.groups()
            figures[name] = (float(value.replace(",", "")), float(tolerance), bool(relative))
    return figures


def cited_category_counts() -> dict[int, int]:
    text = DOC.read_text()
    block = text[text.index("sleeve 59,448"):].split("\n\n")[0]
    by_name = {category.name: category.id for category in LABELS.categories}
    counts = {}
    for item in block.replace("\n", " ").split(" · "):
        name, count = item.strip().rsplit(" ", 1)
        counts[by_name[name]] = int(count.replace(",", ""))
    return counts


@pytest.fixture(scope="module")
def sample_rows() -> list[tuple]:
    """train.csv rows of 400 real-profile images, real sides, 20 % with attributes (not painted: fast)."""
    return [row for index in range(400) for row in annotation_rows(2019, index, 296, 8688, 0.2, "real")]


@pytest.fixture(scope="module")
def sample(sample_rows) -> pd.DataFrame:
    table = pd.DataFrame(sample_rows, columns=["image_id", "rle", "height", "width", "class_id"])
    table["category"] = table.class_id.str.split("_").str[0].astype(int)
    return table


def test_the_docs_cite_every_statistic_the_test_measures(sample_rows):
    assert set(cited_figures()) == set(statistics(sample_rows))
    counts = cited_category_counts()
    assert sorted(counts) == list(range(46)) and counts[31] == 59_448 and counts[20] == 112


def test_the_profile_matches_every_cited_figure_within_its_tolerance(sample_rows):
    measured = statistics(sample_rows)
    for name, (real, tolerance, relative) in cited_figures().items():
        allowed = real * tolerance / 100 if relative else tolerance
        assert abs(measured[name] - real) <= allowed, f"{name}: {measured[name]:.3f} against the real {real}"


def test_categories_are_as_imbalanced_as_the_real_ones(sample):
    images = sample.image_id.nunique()
    real = {category: count / REAL_IMAGES for category, count in cited_category_counts().items()}
    per_image = sample.category.value_counts() / images
    assert per_image.index[:3].tolist() == [31, 23, 33], "sleeves, shoes and necklines lead, as in the real data"
    for category in set(real) - CLUSTERED:
        if real[category] > 0.1:
            assert abs(per_image.get(category, 0.0) / real[category] - 1) <= 0.25, LABELS.categories[category].name
    clustered = sum(per_image.get(category, 0.0) for category in CLUSTERED)
    assert abs(clustered / sum(real[category] for category in CLUSTERED) - 1) <= 0.5, "beads, rivets, sequins"
    assert all(per_image.get(category, 0.0) < 0.02 for category in (12, 20, 26)), "capes, leg warmers, umbrellas"


def test_a_few_images_hold_many_instances(sample):
    per_image = sample.groupby("image_id").size()
    assert per_image.median() <= 8 and per_image.max() >= 3 * per_image.median(), "a long tail of instances"
    assert 0.005 <= (per_image > 15).mean() <= 0.1


def test_decorations_lie_on_garments_and_beads_are_a_few_pixels_wide():
    rows = [row for index in range(150) for row in annotation_rows(11, index, 600, 1024, 0.2, "real")]
    table = pd.DataFrame(rows, columns=["image_id", "rle", "height", "width", "class_id"])
    table["category"] = table.class_id.str.split("_").str[0].astype(int)
    widths, decorations = [], 0
    for _, image in table.groupby("image_id"):
        masks = {row.Index: rle.decode(row.rle, row.height, row.width) for row in image.itertuples()}
        garments = np.any([masks[i] for i in image.index[image.category.isin(HOSTS)]] or [False], axis=0)
        for row in image[image.category.isin(set(DECORATIONS))].itertuples():
            decorations += 1
            assert not (masks[row.Index] & ~garments).any(), "a decoration off every garment"
            if row.category in CLUSTERED:
                xs = np.nonzero(masks[row.Index].any(axis=0))[0]
                widths.append((np.ptp(xs) + 1) * 1024 / max(row.height, row.width))
    assert decorations >= 30 and len(widths) >= 10
    assert 1.5 <= np.median(widths) <= 6, "beads, rivets and sequins a few pixels wide at 1,024 px"


def test_decorations_are_painted_over_what_they_lie_on_and_one_category_never_overlaps_itself():
    for index in range(120):
        visible = make_scene(2019, "train", index, 296, 8688, 0.2, "real").visible
        seen: dict[int, np.ndarray] = {}
        for position, (piece, mask) in enumerate(visible):
            if piece.category is None or not mask.any():
                continue
            assert not (seen.get(piece.category, False) & mask).any(), f"image {index}: category {piece.category}"
            seen[piece.category] = seen.get(piece.category, False) | mask
            if piece.category in DECORATIONS:  # painted from the end of the list: nothing before it covers it
                over = [other for other, shape in visible[:position] if other.category not in DECORATIONS
                        and (shape & mask).any()]
                assert not over, f"image {index}: a decoration of {piece.category} painted over"


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 30), st.integers(1, 30), st.integers(1, 4), st.integers(1, 4), st.integers(0, 2**32 - 1))
def test_a_scaled_mask_is_the_nearest_neighbour_upscaling_of_the_drawing(rows, cols, up_rows, up_cols, seed):
    rng = np.random.default_rng(seed)
    drawn = rng.random((rows, cols)) < rng.uniform(0.05, 0.9)
    drawn[rng.integers(rows), rng.integers(cols)] = True
    height, width = rows * up_rows + int(rng.integers(up_rows)), cols * up_cols + int(rng.integers(up_cols))
    nearest_rows = np.floor((np.arange(height) + 0.5) * rows / height).astype(int)
    nearest_cols = np.floor((np.arange(width) + 0.5) * cols / width).astype(int)
    expected = drawn[nearest_rows][:, nearest_cols]
    assert np.array_equal(rle.decode(encode_scaled(drawn, height, width), height, width), expected)
    assert encode_scaled(drawn, rows, cols) == rle.encode(drawn)


def test_written_images_have_their_csv_size_and_the_same_bytes_with_any_number_of_workers(tmp_path):
    params = SyntheticParams(seed=5, train_images=6, test_images=2, min_side=300, max_side=1400, attribute_rate=0.2,
                             size_defect=False, profile="real", workers=1)
    write_dataset(tmp_path / "one", params)
    write_dataset(tmp_path / "two", params.model_copy(update={"workers": 2}))
    files = sorted(p.relative_to(tmp_path / "one") for p in (tmp_path / "one").rglob("*") if p.is_file())
    assert len(files) == 6 + 2 + 3
    for name in files:
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes(), name
    train = pd.read_csv(tmp_path / "one" / "train.csv")
    for image_id, rows in train.groupby("ImageId"):
        with Image.open(tmp_path / "one" / "train" / image_id) as image:
            assert image.size == (rows.Width.iloc[0], rows.Height.iloc[0])
        assert 300 <= max(rows.Height.iloc[0], rows.Width.iloc[0]) <= 1400
        for row in rows.itertuples():
            assert rle.decode(row.EncodedPixels, row.Height, row.Width).any()
