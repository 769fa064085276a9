"""Anchors laid on each feature level's own grid, whatever the padded size of the batch.

torchvision's ``AnchorGenerator`` guesses a level's stride as the padded side divided by the
level's grid size. That is the true stride only when the side is a multiple of the coarsest
level's: YOLACT's P7 (stride 128) at a padded side of 576 px has 5 cells, so the guess is 115 and
its last anchors sit 52 px away from their cells; Mask R-CNN's P6 (stride 64) at 224 px has 4
cells, a guess of 56. An image's anchors then also depend on the sizes of the images it is
batched with. ``StridedAnchorGenerator`` keeps torchvision's layout (every size and aspect ratio at
each location, locations row by row) and takes the strides from the network instead.
"""

from __future__ import annotations

import torch
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.image_list import ImageList


class StridedAnchorGenerator(AnchorGenerator):
    """One anchor size per level, every aspect ratio (height / width) at each location.

    Cell (i, j) of a level of stride s is centred at ((j + offset) * s, (i + offset) * s) in the
    batch's pixels: ``offset`` 0 is torchvision's and detectron2's convention (and what COCO
    weights were trained with), 0.5 YOLACT's reference (centres at (i + 0.5) / the level's size).
    """

    def __init__(self, sizes: tuple[int, ...], aspect_ratios: tuple[float, ...], strides: tuple[int, ...],
                 offset: float = 0.0) -> None:
        if len(sizes) != len(strides):
            raise ValueError(f"one anchor size per level: {len(sizes)} sizes for {len(strides)} strides")
        super().__init__(tuple((size,) for size in sizes), (tuple(aspect_ratios),) * len(sizes))
        self.strides = tuple(strides)
        self.offset = offset

    def level_anchors(self, grid_sizes: list[tuple[int, int]], dtype: torch.dtype,
                      device: torch.device) -> list[torch.Tensor]:
        """(H * W * A, 4) anchors of each level, for grids of these (H, W) sizes."""
        if len(grid_sizes) != len(self.strides):
            raise ValueError(f"{len(grid_sizes)} feature levels for anchors of {len(self.strides)} strides")
        self.set_cell_anchors(dtype, device)
        levels = []
        for (height, width), stride, base in zip(grid_sizes, self.strides, self.cell_anchors, strict=True):
            xs = (torch.arange(width, device=device, dtype=torch.float32) + self.offset) * stride
            ys = (torch.arange(height, device=device, dtype=torch.float32) + self.offset) * stride
            y, x = torch.meshgrid(ys, xs, indexing="ij")
            shifts = torch.stack((x.reshape(-1), y.reshape(-1)) * 2, 1)
            levels.append((shifts[:, None, :] + base.float()[None]).reshape(-1, 4).to(dtype))
        return levels

    def forward(self, image_list: ImageList, feature_maps: list[torch.Tensor]) -> list[torch.Tensor]:
        grid_sizes = [tuple(feature.shape[-2:]) for feature in feature_maps]
        anchors = torch.cat(self.level_anchors(grid_sizes, feature_maps[0].dtype, feature_maps[0].device))
        return [anchors for _ in image_list.image_sizes]
