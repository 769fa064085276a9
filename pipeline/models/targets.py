"""Per-category training targets shared by the families that learn a pixel map per category."""

from __future__ import annotations

import torch


def category_union(masks: torch.Tensor, labels: torch.Tensor, categories: int) -> torch.Tensor:
    """(categories, h, w) float: channel c is the union of the (N, h, w) masks of the instances of category c + 1.

    Every instance counts whole, whatever lies on it (a shirt under its pocket and sleeves).
    """
    union = torch.zeros((categories, *masks.shape[-2:]), device=masks.device)
    for mask, label in zip(masks, labels.tolist(), strict=True):
        union[label - 1] = torch.maximum(union[label - 1], mask.float())
    return union
