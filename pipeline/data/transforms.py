"""Resizing and training augmentation of an image with its instance masks (torchvision.transforms.v2).

Boxes are not transformed here: ``pipeline.data.dataset`` computes them from the final masks, so
masks and boxes agree by construction whatever the augmentation did.
"""

from __future__ import annotations

import torch
from torchvision import tv_tensors
from torchvision.transforms import InterpolationMode, v2
from torchvision.transforms.v2 import functional as F

from pipeline.config.training import AugmentParams


def fit_scale(height: int, width: int, min_size: int, max_size: int) -> float:
    """The scale torchvision's GeneralizedRCNNTransform applies: short side to min_size, long side at most max_size."""
    return min(min_size / min(height, width), max_size / max(height, width))


def scaled_size(height: int, width: int, scale: float) -> tuple[int, int]:
    return max(1, round(height * scale)), max(1, round(width * scale))


def resize_image(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """The image bilinear with antialiasing, to ``size`` (height, width)."""
    if tuple(image.shape[-2:]) != size:
        image = F.resize(tv_tensors.Image(image), list(size), antialias=True)
    return image.as_subclass(torch.Tensor)


def resize_masks(masks: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """The masks nearest, to ``size`` (height, width)."""
    if tuple(masks.shape[-2:]) != size:
        masks = F.resize(tv_tensors.Mask(masks), list(size), interpolation=InterpolationMode.NEAREST_EXACT)
    return masks.as_subclass(torch.Tensor)


def resize(image: torch.Tensor, masks: torch.Tensor, size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Image bilinear with antialiasing, masks nearest; both to ``size`` (height, width)."""
    return resize_image(image, size), resize_masks(masks, size)


class Augment:
    """Random scale around the fitted scale, horizontal flip and colour jitter, as ``AugmentParams`` says.

    ``base_scale`` is relative to the masks' size (the annotation's resolution); the image may
    arrive smaller (JPEG draft decoding) and is resized to the same target.

    Every random draw comes from torch's global generator inside a fork seeded per sample,
    so a sample's augmentation depends on its seed alone: not on DataLoader workers, batch
    order or an interruption and resume.
    """

    def __init__(self, params: AugmentParams) -> None:
        self.scale_range = params.scale_range
        steps = []
        if params.hflip:
            steps.append(v2.RandomHorizontalFlip(p=0.5))
        if params.color_jitter:
            strength = params.color_jitter
            steps.append(v2.ColorJitter(brightness=strength, contrast=strength, saturation=strength))
        self.flip_and_colour = v2.Compose(steps or [v2.Identity()])  # Compose refuses an empty list

    def __call__(self, image: torch.Tensor, masks: torch.Tensor, base_scale: float, seed: int,
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            low, high = self.scale_range
            factor = low + (high - low) * torch.rand(()).item()
            image, masks = resize(image, masks, scaled_size(*masks.shape[-2:], base_scale * factor))
            image, masks = self.flip_and_colour(tv_tensors.Image(image), tv_tensors.Mask(masks))
        return image.as_subclass(torch.Tensor), masks.as_subclass(torch.Tensor)
