"""Per-category pixel maps become the detection contract's instances: each category's connected components."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.inference.masks import paste
from pipeline.models.families.unet.components import instances
from pipeline.models.families.unet.network import category_targets, top_category

CATEGORIES, SIZE = 5, (40, 60)
THRESHOLD = 0.5


def probabilities(*shown: tuple[int, np.ndarray], confidence: float = 0.9) -> torch.Tensor:
    """A (K, h, w) map: ``confidence`` where each (category, boolean mask) pair shows its category, 0.05 elsewhere."""
    found = np.full((CATEGORIES, *SIZE), 0.05, np.float32)
    for category, where in shown:
        found[category - 1][where] = confidence
    return torch.from_numpy(found)


def box(top: int, left: int, bottom: int, right: int) -> np.ndarray:
    where = np.zeros(SIZE, bool)
    where[top:bottom, left:right] = True
    return where


def test_an_empty_map_has_no_instances():
    found = instances(probabilities(), THRESHOLD, min_area=4, mask_size=8)
    assert found.boxes.shape == (0, 4) and found.masks.shape == (0, 1, 8, 8) and found.dropped == 0
    assert found.labels.dtype == torch.int64 and len(found.scores) == 0


def test_two_components_of_one_category_are_two_instances_and_touching_ones_are_one():
    apart = box(2, 2, 10, 10) | box(20, 30, 30, 50)
    found = instances(probabilities((3, apart)), THRESHOLD, min_area=4, mask_size=8)
    assert sorted(found.boxes.tolist()) == [[2, 2, 10, 10], [30, 20, 50, 30]]
    assert found.labels.tolist() == [3, 3]
    joined = instances(probabilities((3, apart | box(5, 10, 25, 30))), THRESHOLD, min_area=4, mask_size=8)
    assert len(joined.labels) == 1, "a pixel map cannot split touching items of one category"


def test_pixels_meeting_at_a_corner_only_are_separate_components():
    found = instances(probabilities((2, box(0, 0, 5, 5) | box(5, 5, 10, 10))), THRESHOLD, min_area=1, mask_size=8)
    assert sorted(found.boxes.tolist()) == [[0, 0, 5, 5], [5, 5, 10, 10]]


def test_a_garment_keeps_its_whole_area_under_the_parts_lying_on_it():
    """A shirt with a sleeve and a pocket on it: three overlapping instances, the shirt one component, whole."""
    shirt, sleeve, pocket = box(5, 5, 35, 45), box(5, 35, 35, 55), box(10, 10, 20, 20)
    maps = probabilities((1, shirt), (5, sleeve), (4, pocket))
    maps[3][pocket] = 0.6
    found = instances(maps, THRESHOLD, min_area=4, mask_size=16)
    by_label = dict(zip(found.labels.tolist(), found.scores.tolist(), strict=True))
    assert set(by_label) == {1, 4, 5} and len(found.labels) == 3
    assert by_label[4] == pytest.approx(0.6) and by_label[1] == pytest.approx(0.9)
    assert found.boxes[found.labels == 1].tolist() == [[5, 5, 45, 35]]
    shirt_mask = found.masks[found.labels == 1][0, 0]
    assert bool((shirt_mask > 0.5).all()), "no hole where the pocket and the sleeve lie"


def test_a_category_below_the_threshold_is_not_shown():
    maps = probabilities((2, box(0, 0, 10, 10)), confidence=0.45)
    assert len(instances(maps, THRESHOLD, min_area=1, mask_size=8).labels) == 0
    assert instances(maps, 0.4, min_area=1, mask_size=8).labels.tolist() == [2]


def test_components_under_the_minimum_area_are_dropped_and_counted():
    one_pixel = np.zeros(SIZE, bool)
    one_pixel[30, 40] = True
    maps = probabilities((1, box(0, 0, 3, 3)), (2, one_pixel | box(10, 10, 20, 20)))
    found = instances(maps, THRESHOLD, min_area=10, mask_size=8)
    assert found.labels.tolist() == [2] and found.dropped == 2


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 30), st.integers(0, 50), st.integers(3, 10), st.integers(3, 10))
def test_a_component_pasted_back_from_its_stored_mask_is_itself(top, left, height, width):
    """What post-processing does with a "crop" mask: stretched over its box, thresholded at 0.5."""
    truth = box(top, left, top + height, left + width)
    truth[top + height // 2, left : left + width] = False  # a gap across it: the mask's shape, not only its box
    found = instances(probabilities((1, truth)), THRESHOLD, min_area=1, mask_size=28)
    canvas = np.zeros(SIZE, np.float32)
    for mask, where in zip(found.masks, found.boxes, strict=True):
        paste((mask[0].numpy() * 255).round().astype(np.uint8), where.numpy(), canvas, padding=0)
    pasted = canvas > 0.5
    assert (pasted & truth).sum() / (pasted | truth).sum() >= 0.9


def shirt_sleeve_pocket() -> dict:
    masks = torch.zeros((3, *SIZE), dtype=torch.uint8)
    masks[0, 5:35, 5:45] = 1  # a shirt (category 1)
    masks[1, 5:35, 35:55] = 1  # a sleeve on it (category 32)
    masks[2, 10:20, 10:20] = 1  # a pocket (category 24)
    return {"labels": torch.tensor([1, 32, 24]), "masks": masks}


def test_each_category_learns_every_pixel_of_its_instances_whatever_lies_on_them():
    target = shirt_sleeve_pocket()
    truth = category_targets(target, SIZE, 46)
    assert truth.shape == (46, *SIZE)
    for label, mask in zip(target["labels"].tolist(), target["masks"], strict=True):
        assert torch.equal(truth[label - 1], mask.float())
    assert truth.sum() == target["masks"].sum(), "no other channel is set"
    # The one-class-a-pixel map keeps 800 of the shirt's 1,200 pixels (two thirds): all a softmax head could learn.
    assert int((top_category(truth > 0) == 1).sum()) == 800


def test_instances_of_one_category_share_its_channel_and_an_image_without_any_has_none():
    masks = torch.zeros((2, *SIZE), dtype=torch.uint8)
    masks[0, 0:10, 0:10] = 1
    masks[1, 5:20, 5:20] = 1
    truth = category_targets({"labels": torch.tensor([7, 7]), "masks": masks}, SIZE, 46)
    assert torch.equal(truth[6], masks.amax(0).float()) and truth.sum() == masks.amax(0).sum()
    empty = {"labels": torch.zeros(0, dtype=torch.int64), "masks": torch.zeros((0, *SIZE), dtype=torch.uint8)}
    assert not category_targets(empty, SIZE, 46).any()


def test_the_category_covering_the_fewest_pixels_is_on_top_in_the_class_map_of_the_pixel_scores():
    shown = torch.zeros((46, *SIZE), dtype=torch.bool)
    shown[1, 5:35, 5:55] = True  # a coat (category 2)
    shown[6, 10:20, 10:30] = True  # a pocket on it (7)
    shown[0, 0:40, 0:60] = True  # the whole picture (1), largest
    shown[9, 0:2, 0:10] = shown[8, 0:2, 10:20] = True  # two categories of 20 pixels each (10, 9) ...
    shown[9, 2, 12] = shown[8, 2, 12] = True  # ... lying on one pixel: the tie goes to the lower category
    painted = top_category(shown)
    assert painted[15, 15] == 7 and painted[30, 50] == 2 and painted[38, 2] == 1
    assert painted[2, 12] == 9 and painted[0, 0] == 10 and painted[0, 15] == 9
    assert torch.equal(top_category(torch.zeros((46, *SIZE), dtype=torch.bool)),
                       torch.zeros(SIZE, dtype=torch.int64)), "nothing shown: all background"
