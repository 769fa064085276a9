"""YOLACT's anchors and their assignment to the true boxes, from torchvision's detection parts.

torchvision's ``AnchorGenerator`` lays the anchors out (one size per level, every aspect ratio at
each location, in the order the prediction head's outputs are flattened), ``Matcher`` assigns them
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
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.image_list import ImageList
from torchvision.ops import box_iou

#: SSD's (and YOLACT's) box-offset variances (0.1 for the centre, 0.2 for the size) as weights.
BOX_CODER = BoxCoder(weights=(10.0, 10.0, 5.0, 5.0))
IGNORED, BACKGROUND = -1, 0  # an anchor's class target between the thresholds, and below the lower one


def anchor_generator(sizes: tuple[int, ...], aspect_ratios: tuple[float, ...]) -> AnchorGenerator:
    """One size per level, every aspect ratio (height / width) at each location of each level."""
    return AnchorGenerator(tuple((size,) for size in sizes), (tuple(aspect_ratios),) * len(sizes))


def anchors_of(generator: AnchorGenerator, batch: torch.Tensor, features: list[torch.Tensor]) -> torch.Tensor:
    """(N, 4) anchors in the padded batch's pixels, the same for each of its images."""
    images = ImageList(batch, [tuple(batch.shape[-2:])] * len(batch))
    return generator(images, features)[0]


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
