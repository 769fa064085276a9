"""Batching a family's input images: normalised with ImageNet's statistics, padded top-left to a stride."""

from __future__ import annotations

import torch
from torch.nn import functional as torch_f

# What an ImageNet-trained ResNet expects; harmless from scratch (BatchNorm follows the first convolution).
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def padded_batch(images: list[torch.Tensor], stride: int) -> torch.Tensor:
    """(B, 3, H, W) of (3, h, w) images in [0, 1], normalised, each at the top left of sides padded to ``stride``.

    Padding (zeros after normalisation) is outside every image: a family's losses and outputs keep to
    each image's own ``h`` x ``w``.
    """
    height = -(-max(i.shape[-2] for i in images) // stride) * stride
    width = -(-max(i.shape[-1] for i in images) // stride) * stride
    mean = torch.tensor(IMAGENET_MEAN, device=images[0].device, dtype=images[0].dtype).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=images[0].device, dtype=images[0].dtype).view(3, 1, 1)
    return torch.stack([torch_f.pad((i - mean) / std, (0, width - i.shape[-1], 0, height - i.shape[-2]))
                        for i in images])
