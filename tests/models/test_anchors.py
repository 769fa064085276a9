"""Anchors on each level's true stride, whatever the batch's padded size (YOLACT's P3-P7, Mask R-CNN's P2-P6)."""

from __future__ import annotations

import pytest
import torch

from pipeline.models.families.maskrcnn.detector import FPN_STRIDES
from pipeline.models.families.yolact.anchors import LEVEL_STRIDES

from model_configs import tiny_config, yolact_config

NUM_CLASSES = 47


def centres(anchors: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The distinct x and y centres of a level's anchors, in increasing order."""
    x = ((anchors[:, 0] + anchors[:, 2]) / 2).unique()
    y = ((anchors[:, 1] + anchors[:, 3]) / 2).unique()
    return x, y


def yolact_levels(model: torch.nn.Module, height: int, width: int) -> tuple[list[torch.Tensor], list[int]]:
    """The anchors of a one-image batch of this size, split by level, and the levels' grid sizes."""
    with torch.no_grad():
        levels = list(model.backbone(torch.zeros(1, 3, height, width)).values())
    sizes = [tuple(level.shape[-2:]) for level in levels]
    per_level = model.anchor_generator.level_anchors(sizes, torch.float32, torch.device("cpu"))
    return per_level, sizes


@pytest.mark.parametrize("side", [192, 224, 576, 800])
def test_yolact_anchor_centres_step_by_each_levels_stride_from_half_a_cell(side):
    model = yolact_config().build(NUM_CLASSES, 0).eval()
    per_level, sizes = yolact_levels(model, 64, side)
    for anchors, (rows, cols), stride in zip(per_level, sizes, LEVEL_STRIDES, strict=True):
        x, y = centres(anchors)
        assert len(x) == cols and len(y) == rows
        assert torch.allclose(x, (torch.arange(cols) + 0.5) * stride), (side, stride, x)
        assert torch.allclose(y, (torch.arange(rows) + 0.5) * stride), (side, stride, y)
    # P7 at 576 px: five cells, the last centred at 4.5 x 128 = 576 (torchvision's guess put it at 460).
    if side == 576:
        assert centres(per_level[-1])[0][-1] == 576


def test_an_images_yolact_anchors_do_not_depend_on_its_batch_partners():
    model = yolact_config().build(NUM_CLASSES, 0).eval()
    with torch.no_grad():
        alone = model.run([torch.rand(3, 64, 192)]).anchors
        batched = model.run([torch.rand(3, 64, 192), torch.rand(3, 96, 800)]).anchors
    kept = {tuple(row) for row in batched.tolist()}
    assert len(batched) > len(alone) and all(tuple(row) in kept for row in alone.tolist())


def test_the_head_has_one_output_per_anchor_at_any_padded_size():
    model = yolact_config().build(NUM_CLASSES, 0).eval()
    for height, width in [(64, 96), (64, 576), (160, 800)]:
        with torch.no_grad():
            out = model.run([torch.rand(3, height, width)])
        assert out.head["classes"].shape[1] == len(out.anchors), (height, width)


@pytest.mark.parametrize("side", [96, 224, 320])
def test_mask_rcnn_rpn_anchors_sit_on_each_fpn_levels_stride(side):
    model = tiny_config().build(NUM_CLASSES, 0).eval()
    with torch.no_grad():
        features = list(model.backbone(torch.zeros(1, 3, 64, side)).values())
    sizes = [tuple(f.shape[-2:]) for f in features]
    per_level = model.rpn.anchor_generator.level_anchors(sizes, torch.float32, torch.device("cpu"))
    for anchors, (rows, cols), stride in zip(per_level, sizes, FPN_STRIDES, strict=True):
        x, y = centres(anchors)
        assert torch.allclose(x, torch.arange(cols) * float(stride)), (side, stride, x)
        assert torch.allclose(y, torch.arange(rows) * float(stride)), (side, stride, y)
