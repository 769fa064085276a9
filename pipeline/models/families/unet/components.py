"""From per-category pixel maps to instances: each connected component of a category's pixels is one instance.

A semantic model (the UNet family) says which categories each pixel shows, not which garment; its
instances are the connected components of each category's pixels (``scipy.ndimage.label``, edges
only: pixels meeting at a corner are two components). Categories are taken one by one, so a
shirt and the pocket on it are two overlapping instances, the shirt whole. Two touching garments
of one category are one instance: the limit of the approach, which the instance families do not have.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy import ndimage
from torch.nn import functional as torch_f


@dataclass(frozen=True)
class Components:
    """The instances of one image in the detection contract's layout, and what was dropped."""

    boxes: torch.Tensor  # (N, 4) x0, y0, x1, y1 in pixels: a box covers its pixels whole
    labels: torch.Tensor  # (N,) categories, 1-based
    scores: torch.Tensor  # (N,) mean probability of the category inside the component
    masks: torch.Tensor  # (N, 1, M, M): the component inside its box ("crop" kind), resampled to M x M
    dropped: int  # components under the minimum area

    def as_output(self) -> dict[str, torch.Tensor]:
        return {"boxes": self.boxes, "labels": self.labels, "scores": self.scores, "masks": self.masks}


def _crop_map(component: np.ndarray, mask_size: int) -> torch.Tensor:
    """A component's box-sized binary crop as an M x M map covering exactly the box."""
    crop = torch.from_numpy(component.astype(np.float32))[None, None]
    return torch_f.interpolate(crop, size=(mask_size, mask_size), mode="bilinear", align_corners=False,
                               antialias=True)[0].clamp(0, 1)


def instances(probabilities: torch.Tensor, threshold: float, min_area: int, mask_size: int) -> Components:
    """The instances of a (K, h, w) map whose channel c is the probability that a pixel shows category c + 1.

    A category's pixels are those above ``threshold``; its components with fewer than ``min_area``
    pixels are dropped and counted, not returned.
    """
    probabilities = probabilities.detach().float().cpu().numpy()
    boxes, categories, scores, masks, dropped = [], [], [], [], 0
    for channel in np.flatnonzero((probabilities > threshold).any((1, 2))).tolist():
        numbered, _ = ndimage.label(probabilities[channel] > threshold)
        for index, where in enumerate(ndimage.find_objects(numbered), start=1):
            component = numbered[where] == index
            if component.sum() < min_area:
                dropped += 1
                continue
            rows, cols = where
            boxes.append([cols.start, rows.start, cols.stop, rows.stop])
            categories.append(channel + 1)
            scores.append(float(probabilities[channel][where][component].mean()))
            masks.append(_crop_map(component, mask_size))
    if not boxes:
        empty = torch.zeros((0, 1, mask_size, mask_size))
        return Components(torch.zeros((0, 4)), torch.zeros(0, dtype=torch.int64), torch.zeros(0), empty, dropped)
    return Components(torch.tensor(boxes, dtype=torch.float32), torch.tensor(categories, dtype=torch.int64),
                      torch.tensor(scores, dtype=torch.float32), torch.stack(masks), dropped)
