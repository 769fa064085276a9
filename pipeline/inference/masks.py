"""Masks onto images: pasting a box-relative map, and one pixel for one instance per class.

Shared by training's validation and post-processing, in a module of its own so that validation
does not depend on (and DVC does not retrain for) the tunable ``pipeline.inference.postprocess``.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.nn import functional as torch_f

from pipeline.inference.detections import Instance


def paste(mask: np.ndarray, box: np.ndarray, canvas: np.ndarray, padding: int) -> None:
    """Add the M x M probability map ``mask`` (uint8, x255), stretched over ``box``, onto ``canvas`` (float32).

    The map covers the box grown by ``padding`` map pixels on each side (``pipeline.models.contract``):
    with 1, as torchvision's ``paste_masks_in_image``, the map is padded by one zero pixel and the box
    grown to match, so the mask fades out at the box's edge. Each canvas pixel samples the map
    at its centre (bilinear, exact box coordinates, no rounding of the box to whole pixels), and
    only pixels near the box are touched: torchvision's version rounds the box and allocates a
    full image per mask, too much at native size.
    """
    m = mask.shape[-1]
    grow = (m + 2 * padding) / m
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    half_w, half_h = max((box[2] - box[0]) / 2, 1e-3) * grow, max((box[3] - box[1]) / 2, 1e-3) * grow
    height, width = canvas.shape
    x0, x1 = max(int(np.floor(cx - half_w)), 0), min(int(np.ceil(cx + half_w)), width)
    y0, y1 = max(int(np.floor(cy - half_h)), 0), min(int(np.ceil(cy + half_h)), height)
    if x0 >= x1 or y0 >= y1:
        return
    # grid_sample's coordinates: -1 and 1 are the outer edges of the padded map (align_corners=False).
    gx = (torch.arange(x0, x1, dtype=torch.float32) + 0.5 - cx) / half_w
    gy = (torch.arange(y0, y1, dtype=torch.float32) + 0.5 - cy) / half_h
    grid = torch.stack(torch.meshgrid(gx, gy, indexing="xy"), dim=-1)[None]
    padded = torch.from_numpy(np.pad(mask, padding).astype(np.float32) / 255.0)[None, None]
    sampled = torch_f.grid_sample(padded, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    canvas[y0:y1, x0:x1] += sampled[0, 0].numpy()



def remove_overlaps(instances: list[Instance]) -> list[Instance]:
    """Each pixel stays with the highest-scoring instance of its class; other classes are untouched."""
    claimed: dict[str, np.ndarray] = {}
    result = []
    for instance in sorted(instances, key=lambda i: -i.score):
        taken = claimed.setdefault(instance.class_id, np.zeros_like(instance.mask))
        mask = instance.mask & ~taken
        taken |= mask
        result.append(Instance(instance.class_id, instance.score, mask))
    return result


def resize_nearest(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A boolean mask resized to ``size`` (height, width), each pixel taking its nearest source pixel."""
    if mask.shape == size:
        return mask
    pixels = torch.from_numpy(np.ascontiguousarray(mask, dtype=np.uint8))[None, None]
    return torch_f.interpolate(pixels, size=size, mode="nearest-exact")[0, 0].numpy().astype(bool)
