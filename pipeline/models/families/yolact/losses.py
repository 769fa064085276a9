"""YOLACT's losses (section 3 of the paper, and its reference implementation's choices).

- Classification: softmax cross-entropy over the positives and the hardest background anchors,
  ``negatives_per_positive`` of them per positive (online hard-negative mining).
- Box: smooth L1 on the encoded offsets of the positives.
- Mask: each positive's assembled mask (prototypes x coefficients) against its instance's mask at the
  prototypes' resolution, pixel-wise binary cross-entropy on the crop of the true box only, divided
  by that box's area (so a small garment weighs as much as a large one).
- Semantic segmentation: a 1x1 convolution on P3, one sigmoid map per category, trained only.
"""

from __future__ import annotations

import torch
from torch.nn import functional as torch_f


def hard_negatives(background_loss: torch.Tensor, labels: torch.Tensor, ratio: int) -> torch.Tensor:
    """The (N,) mask of background anchors (label 0) with the largest ``background_loss``, ``ratio`` per positive.

    Positive (label > 0) and ignored (label < 0) anchors are never chosen; without positives, none are.
    """
    loss = background_loss.detach().clone()
    loss[labels != 0] = -1.0
    wanted = min(ratio * int((labels > 0).sum()), int((labels == 0).sum()))
    chosen = torch.zeros_like(labels, dtype=torch.bool)
    chosen[loss.argsort(descending=True, stable=True)[:wanted]] = True
    return chosen


def classification_loss(logits: torch.Tensor, labels: torch.Tensor, ratio: int) -> torch.Tensor:
    """Summed cross-entropy of one image's (N, C) class logits over its positives and hard negatives."""
    logits = logits.float()
    background = torch.logsumexp(logits, 1) - logits[:, 0]  # each anchor's loss were it background
    chosen = (labels > 0) | hard_negatives(background, labels, ratio)
    return torch_f.cross_entropy(logits[chosen], labels[chosen], reduction="sum")


def crop(maps: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """(n, H, W) maps zeroed outside each one's (x0, y0, x1, y1) box, in the maps' pixels.

    A pixel belongs to a box when its centre lies inside it.
    """
    height, width = maps.shape[-2:]
    rows = torch.arange(height, device=maps.device, dtype=boxes.dtype) + 0.5
    cols = torch.arange(width, device=maps.device, dtype=boxes.dtype) + 0.5
    inside_rows = (rows[None] >= boxes[:, 1:2]) & (rows[None] < boxes[:, 3:4])  # (n, H)
    inside_cols = (cols[None] >= boxes[:, 0:1]) & (cols[None] < boxes[:, 2:3])  # (n, W)
    return maps * (inside_rows[:, :, None] & inside_cols[:, None, :]).to(maps.dtype)


def assemble_masks(prototypes: torch.Tensor, coefficients: torch.Tensor) -> torch.Tensor:
    """(n, H, W) mask logits: each detection's linear combination of the (H, W, k) prototypes (no bias)."""
    return torch.einsum("hwk,nk->nhw", prototypes, coefficients)


def mask_loss(logits: torch.Tensor, truth: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """Summed over the n masks: the binary cross-entropy on each true box's crop, divided by the box's area.

    ``logits`` (n, H, W) are assembled masks before the sigmoid, ``truth`` (n, H, W) binary masks, ``boxes``
    the true boxes in the masks' pixels. A perfect mask costs 0 whatever it shows outside its box.
    """
    per_pixel = torch_f.binary_cross_entropy_with_logits(logits.float(), truth.float(), reduction="none")
    area = ((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])).clamp(min=1.0)
    return (crop(per_pixel, boxes).flatten(1).sum(1) / area).sum()


def semantic_loss(logits: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """Sigmoid cross-entropy of (B, C, h, w) category logits against binary maps, per pixel, mean over images."""
    per_image = torch_f.binary_cross_entropy_with_logits(logits.float(), truth.float(), reduction="none")
    return per_image.flatten(1).sum(1).mean() / (logits.shape[-2] * logits.shape[-1])
