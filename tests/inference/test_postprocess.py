"""Post-processing: merging views, thresholds, overlap removal, the attribute policy and the grid."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from torchvision.ops import batched_nms

from pipeline.config.inference import PostprocessParams
from pipeline.data.labels import load_labels
from pipeline.inference.detections import Detections, Instance
from pipeline.inference.postprocess import clusters, paste, process_image, remove_overlaps

PARAMS = PostprocessParams(tta=True, score_thresh=0.0, nms_iou=0.5, mask_thresh=0.5, min_area=0,
                           max_detections=100, attribute_policy="category", grid="native")
LABELS = load_labels()
FULL = np.full((28, 28), 255, np.uint8)


def detections(rows: list[tuple[int, float, tuple[float, float, float, float], int]], n_views: int = 1,
               ) -> Detections:
    """(category, score, box, view) per detection, each with a mask filling its box, of ``n_views`` views."""
    if not rows:
        return Detections.empty(28, 92, "roi", n_views)
    return Detections(np.array([r[2] for r in rows], np.float32), np.array([r[1] for r in rows], np.float32),
                      np.array([r[0] for r in rows], np.int16), np.array([r[3] for r in rows], np.int8),
                      np.stack([FULL] * len(rows)), np.zeros((len(rows), 92), np.uint8), "roi", n_views)


@st.composite
def instance_lists(draw):
    n = draw(st.integers(0, 7))
    masks = draw(st.lists(st.lists(st.booleans(), min_size=36, max_size=36), min_size=n, max_size=n))
    classes = draw(st.lists(st.sampled_from(["1", "2", "10_5"]), min_size=n, max_size=n))
    scores = draw(st.lists(st.floats(0, 1), min_size=n, max_size=n, unique=True))
    return [Instance(c, s, np.array(m).reshape(6, 6)) for c, s, m in zip(classes, scores, masks, strict=True)]


@settings(max_examples=200, deadline=None)
@given(instance_lists())
def test_overlap_removal_leaves_no_shared_pixel_within_a_class_and_ignores_other_classes(instances):
    result = remove_overlaps(instances)
    assert sorted(i.score for i in result) == sorted(i.score for i in instances)
    for kept in result:
        original = next(i for i in instances if i.score == kept.score)
        higher_same_class = [i.mask for i in instances if i.class_id == kept.class_id and i.score > kept.score]
        taken = np.zeros((6, 6), bool)
        for mask in higher_same_class:
            taken |= mask
        expected = original.mask & ~taken
        assert np.array_equal(kept.mask, expected), "only higher-scoring masks of the same class take pixels"
    for class_id in {i.class_id for i in result}:
        stacked = np.stack([i.mask for i in result if i.class_id == class_id]).astype(int)
        assert stacked.sum(0).max() <= 1


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 2), st.floats(0.01, 1), st.integers(0, 40), st.integers(0, 40),
                          st.integers(2, 30), st.integers(2, 30)), max_size=12),
       st.sampled_from([0.3, 0.5, 0.7]))
def test_one_view_clusters_are_class_wise_nms(rows, iou):
    assume(len({row[1] for row in rows}) == len(rows))  # tied scores: either order is NMS, torchvision picks its own
    found = detections([(c, s, (x, y, x + w, y + h), 0) for c, s, x, y, w, h in rows])
    kept = clusters(found, iou)
    expected = batched_nms(torch.tensor(found.boxes), torch.tensor(found.scores), torch.tensor(found.categories),
                           iou) if len(found) else torch.zeros(0, dtype=torch.int64)
    assert sorted(int(c.members[0]) for c in kept) == sorted(expected.tolist())
    assert all(len(c.members) == 1 for c in kept)


def test_views_merge_and_a_detection_seen_in_one_view_of_two_scores_half():
    found = detections([(3, 0.8, (10, 10, 50, 50), 0), (3, 0.6, (12, 11, 52, 49), 1),
                        (7, 0.9, (60, 60, 90, 90), 1)], n_views=2)
    merged = clusters(found, 0.5)
    assert [(c.category, round(c.score, 3), sorted(c.members.tolist())) for c in merged] == [
        (3, 0.7, [0, 1]), (7, 0.45, [2])]


def test_paste_fills_the_box_on_the_canvas():
    canvas = np.zeros((40, 60), np.float32)
    paste(FULL, np.array([10, 5, 30, 25], np.float32), canvas, 1)
    inside = canvas[6:24, 11:29]
    assert inside.min() > 0.99 and canvas[:, :8].max() == 0 and canvas[28:, :].max() == 0
    assert (canvas > 0.5).sum() == pytest.approx(20 * 20, rel=0.1)


def test_a_box_outside_the_image_pastes_nothing():
    canvas = np.zeros((20, 20), np.float32)
    paste(FULL, np.array([30, 30, 40, 40], np.float32), canvas, 1)
    assert canvas.max() == 0


def test_thresholds_and_limits_apply():
    found = detections([(14, 0.9, (0, 0, 20, 20), 0), (15, 0.4, (30, 30, 40, 40), 0), (16, 0.7, (50, 50, 52, 52), 0),
                        (17, 0.8, (60, 0, 90, 30), 0)])
    kept = process_image(found, 100, 100, PARAMS.model_copy(update={"score_thresh": 0.5}), LABELS)
    assert [i.class_id for i in kept] == ["14", "17", "16"]
    kept = process_image(found, 100, 100, PARAMS.model_copy(update={"score_thresh": 0.5, "min_area": 10}), LABELS)
    assert [i.class_id for i in kept] == ["14", "17"], "the 2x2 detection is below min_area"
    kept = process_image(found, 100, 100, PARAMS.model_copy(update={"max_detections": 2}), LABELS)
    assert [i.class_id for i in kept] == ["14", "17"]


def test_the_drop_policy_removes_attribute_categories_only():
    found = detections([(0, 0.9, (0, 0, 20, 20), 0), (12, 0.8, (30, 30, 50, 50), 0), (13, 0.7, (60, 60, 80, 80), 0),
                        (33, 0.6, (0, 60, 20, 80), 0)])
    kept = process_image(found, 100, 100, PARAMS.model_copy(update={"attribute_policy": "drop"}), LABELS)
    assert [i.class_id for i in kept] == ["13", "33"]
    assert len(process_image(found, 100, 100, PARAMS, LABELS)) == 4


def test_without_tta_only_the_plain_view_counts():
    found = detections([(3, 0.8, (10, 10, 50, 50), 0), (4, 0.9, (60, 60, 90, 90), 1)], n_views=2)
    plain = process_image(found, 100, 100, PARAMS.model_copy(update={"tta": False}), LABELS)
    assert [i.class_id for i in plain] == ["3"]
    with_tta = process_image(found, 100, 100, PARAMS, LABELS)
    assert [(i.class_id, i.score) for i in with_tta] == [("4", pytest.approx(0.45)), ("3", pytest.approx(0.4))]


@pytest.mark.parametrize("grid,expected", [("native", (100, 200)), ("512x512", (512, 512)), ((64, 32), (64, 32))])
def test_masks_are_drawn_on_the_submission_grid(grid, expected):
    """The params' grid, or one given for a photo (stage segment's, its own size scaled down)."""
    found = detections([(5, 0.9, (50, 25, 150, 75), 0)])  # the middle half of a 100 x 200 image
    params = PARAMS.model_copy(update={"grid": grid}) if isinstance(grid, str) else PARAMS
    (instance,) = process_image(found, 100, 200, params, LABELS, grid=None if isinstance(grid, str) else grid)
    assert instance.mask.shape == expected
    rows, cols = np.nonzero(instance.mask)
    height, width = expected
    assert (rows.min() / height, (rows.max() + 1) / height) == pytest.approx((0.25, 0.75), abs=0.02)
    assert (cols.min() / width, (cols.max() + 1) / width) == pytest.approx((0.25, 0.75), abs=0.02)


@pytest.mark.parametrize("grid", ["512", "0x512", "512x", "big", "512x5", "1024x1024"])
def test_a_grid_outside_the_known_ones_is_rejected(grid):
    """Only the grids the competition's scoring and the pipeline know: a file cut short reads 512x512 as 512x5."""
    with pytest.raises(ValueError, match="512x512.*native"):
        PARAMS.model_validate({**PARAMS.model_dump(), "grid": grid})
