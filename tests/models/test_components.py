"""A semantic map's connected components become the detection contract's instances."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.inference.masks import paste
from pipeline.models.unet.components import instances
from pipeline.models.unet.network import semantic_target

CLASSES, SIZE = 5, (40, 60)


def probabilities(labels: np.ndarray, confidence: float = 0.9) -> torch.Tensor:
    """A (C, h, w) map that gives each pixel's label ``confidence`` and shares the rest among the others."""
    rest = (1 - confidence) / (CLASSES - 1)
    found = np.full((CLASSES, *labels.shape), rest, np.float32)
    np.put_along_axis(found, labels[None], confidence, axis=0)
    return torch.from_numpy(found)


def test_an_empty_map_has_no_instances():
    found = instances(probabilities(np.zeros(SIZE, np.int64)), min_area=4, mask_size=8)
    assert found.boxes.shape == (0, 4) and found.masks.shape == (0, 1, 8, 8) and found.dropped == 0
    assert found.labels.dtype == torch.int64 and len(found.scores) == 0


def test_two_components_of_one_class_are_two_instances_and_touching_ones_are_one():
    labels = np.zeros(SIZE, np.int64)
    labels[2:10, 2:10] = 3
    labels[20:30, 30:50] = 3  # apart: two instances
    found = instances(probabilities(labels), min_area=4, mask_size=8)
    assert sorted(found.boxes.tolist()) == [[2, 2, 10, 10], [30, 20, 50, 30]]
    assert found.labels.tolist() == [3, 3]
    labels[5:25, 10:30] = 3  # a band that shares edges with both: one component
    joined = instances(probabilities(labels), min_area=4, mask_size=8)
    assert len(joined.labels) == 1, "a semantic map cannot split touching items of one category"


def test_pixels_meeting_at_a_corner_only_are_separate_components():
    labels = np.zeros(SIZE, np.int64)
    labels[0:5, 0:5] = 2
    labels[5:10, 5:10] = 2
    found = instances(probabilities(labels), min_area=1, mask_size=8)
    assert sorted(found.boxes.tolist()) == [[0, 0, 5, 5], [5, 5, 10, 10]]


def test_overlapping_classes_give_one_instance_each_scored_by_their_own_probability():
    labels = np.zeros(SIZE, np.int64)
    labels[5:35, 5:55] = 1  # a garment
    labels[10:20, 10:20] = 4  # a part on it: the garment's component has a hole, not a second instance
    maps = probabilities(labels)
    maps[:, 10:20, 10:20] = torch.tensor([0.1, 0.1, 0.1, 0.1, 0.6])[:, None, None]
    found = instances(maps, min_area=4, mask_size=16)
    by_label = dict(zip(found.labels.tolist(), found.scores.tolist(), strict=True))
    assert set(by_label) == {1, 4}
    assert by_label[4] == pytest.approx(0.6) and by_label[1] == pytest.approx(0.9)
    assert found.boxes[found.labels == 1].tolist() == [[5, 5, 55, 35]]


def test_components_under_the_minimum_area_are_dropped_and_counted():
    labels = np.zeros(SIZE, np.int64)
    labels[0:3, 0:3] = 1  # 9 pixels
    labels[30, 40] = 2  # 1 pixel
    labels[10:20, 10:20] = 2  # 100 pixels
    found = instances(probabilities(labels), min_area=10, mask_size=8)
    assert found.labels.tolist() == [2] and found.dropped == 2


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 30), st.integers(0, 50), st.integers(3, 10), st.integers(3, 10))
def test_a_component_pasted_back_from_its_stored_mask_is_itself(top, left, height, width):
    """What post-processing does with a "crop" mask: stretched over its box, thresholded at 0.5."""
    labels = np.zeros(SIZE, np.int64)
    labels[top : top + height, left : left + width] = 1
    labels[top + height // 2, left : left + width] = 0  # a gap across it: the mask's shape, not only its box
    truth = labels == 1
    found = instances(probabilities(labels), min_area=1, mask_size=28)
    canvas = np.zeros(SIZE, np.float32)
    for mask, box in zip(found.masks, found.boxes, strict=True):
        paste((mask[0].numpy() * 255).round().astype(np.uint8), box.numpy(), canvas, padding=0)
    pasted = canvas > 0.5
    assert (pasted & truth).sum() / (pasted | truth).sum() >= 0.9


def test_the_smaller_instance_wins_where_instances_overlap():
    masks = torch.zeros((3, *SIZE), dtype=torch.uint8)
    masks[0, 5:35, 5:55] = 1  # a coat
    masks[1, 10:20, 10:30] = 1  # a pocket on it
    masks[2, 0:40, 0:60] = 1  # the whole picture, largest, painted first
    target = {"labels": torch.tensor([2, 7, 1]), "masks": masks}
    painted = semantic_target(target, SIZE)
    assert painted[15, 15] == 7 and painted[30, 50] == 2 and painted[38, 2] == 1
    assert torch.equal(semantic_target({"labels": torch.zeros(0, dtype=torch.int64),
                                        "masks": torch.zeros((0, *SIZE), dtype=torch.uint8)}, SIZE),
                       torch.zeros(SIZE, dtype=torch.int64)), "no instances: all background"
