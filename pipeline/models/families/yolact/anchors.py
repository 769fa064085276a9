"""YOLACT's anchors and their assignment to the true boxes, from torchvision's detection parts.

``pipeline.models.anchors`` lays the anchors out (one size per level, every aspect ratio at each
location, in the order the prediction head's outputs are flattened) on each level's true stride
with the reference's centres, (i + 0.5) cells; torchvision's ``Matcher`` assigns them
with the paper's two thresholds, and ``BoxCoder`` encodes offsets as SSD does (YOLACT's variances
0.1 and 0.2 are torchvision's weights 10, 10, 5, 5).

The anchors have the aspect ratios they are given. The reference configuration makes them square
at every ratio "for backward compatibility with a bug"; this data's garments are tall (dresses,
trousers) or wide (belts), and real ratios give those anchors to match from the start.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torchvision.models.detection._utils import BoxCoder, Matcher
from torchvision.ops import box_iou

from pipeline.models.anchors import StridedAnchorGenerator
from pipeline.models.families.yolact.params import YOLACT_LEVELS

#: SSD's (and YOLACT's) box-offset variances (0.1 for the centre, 0.2 for the size) as weights.
BOX_CODER = BoxCoder(weights=(10.0, 10.0, 5.0, 5.0))
IGNORED, BACKGROUND = -1, 0  # an anchor's class target between the thresholds, and below the lower one


#: P3-P7's strides in input pixels: the FPN on C3-C5 and two stride-2 convolutions above it.
LEVEL_STRIDES = tuple(2 ** (3 + level) for level in range(YOLACT_LEVELS))


def anchor_generator(sizes: tuple[int, ...], aspect_ratios: tuple[float, ...]) -> StridedAnchorGenerator:
    """One size per level P3-P7, every aspect ratio (height / width) at each location."""
    return StridedAnchorGenerator(sizes, aspect_ratios, LEVEL_STRIDES, offset=0.5)


def anchors_of(generator: StridedAnchorGenerator, features: list[torch.Tensor]) -> torch.Tensor:
    """(N, 4) anchors in the padded batch's pixels, the same for each of its images (float32 under autocast)."""
    return torch.cat(generator.level_anchors([tuple(f.shape[-2:]) for f in features], torch.float32,
                                             features[0].device))


@dataclass(frozen=True)
class AnchorMatch:
    """Each anchor's class target (``IGNORED``, ``BACKGROUND`` or a category) and its true instance."""

    labels: torch.Tensor  # (N,) int64
    instance: torch.Tensor  # (N,) int64 index into the image's true instances; meaningful where labels > 0

    @property
    def positive(self) -> torch.Tensor:
        return self.labels > 0


def match_anchors(anchors: torch.Tensor, boxes: torch.Tensor, labels: torch.Tensor, positive_iou: float,
                  negative_iou: float) -> AnchorMatch:
    """The paper's assignment: IoU >= ``positive_iou`` positive, < ``negative_iou`` background, between ignored.

    As in the reference implementation, each true box also takes the anchors it overlaps most, even
    below the threshold, so that no small or oddly shaped instance is left without a positive.
    """
    count = len(anchors)
    if not len(boxes):
        zeros = torch.zeros(count, dtype=torch.int64, device=anchors.device)
        return AnchorMatch(zeros + BACKGROUND, zeros)
    matcher = Matcher(positive_iou, negative_iou, allow_low_quality_matches=True)
    matched = matcher(box_iou(boxes, anchors))
    instance = matched.clamp(min=0)
    target = labels[instance].to(torch.int64)
    target[matched == Matcher.BELOW_LOW_THRESHOLD] = BACKGROUND
    target[matched == Matcher.BETWEEN_THRESHOLDS] = IGNORED
    return AnchorMatch(target, instance)
