"""Small configurations of each family for the tests (a model section and the family's section together),
and one image to train them on."""

from __future__ import annotations

from dataclasses import replace

import torch

from pipeline.config.model import ModelParams
from pipeline.models import registry
from pipeline.models.registry import ModelConfig


def smoke_config(name: str, min_size: int = 64, max_size: int = 96, **family) -> ModelConfig:
    """Family ``name`` with its smoke settings (``Family.smoke_settings``) and these fields changed."""
    chosen = registry.family(name)
    return ModelConfig(ModelParams(family=name, min_size=min_size, max_size=max_size),
                       chosen.params(**{**chosen.smoke_settings, **family}))


#: A ResNet-18 Mask R-CNN small enough to train a few steps on 64 x 96 images in seconds (without the architecture).
TINY_MASKRCNN = {k: v for k, v in registry.family("maskrcnn").smoke_settings.items() if k != "architecture"}


def maskrcnn_config(architecture: str = "maskrcnn_resnet18_fpn", min_size: int = 64, max_size: int = 96,
                    **family) -> ModelConfig:
    """``family`` overrides fields of the maskrcnn section (none of TINY_MASKRCNN's unless given)."""
    maskrcnn = registry.family("maskrcnn").params
    return ModelConfig(ModelParams(min_size=min_size, max_size=max_size), maskrcnn(architecture=architecture, **family))


def tiny_config(architecture: str = "maskrcnn_resnet18_fpn", **family) -> ModelConfig:
    return maskrcnn_config(architecture, **{**TINY_MASKRCNN, **family})


def changed(config: ModelConfig, **family) -> ModelConfig:
    """``config`` with these fields of its family section changed."""
    return ModelConfig(config.model, replace(config.family, **family))


#: A UNet light enough to train a few steps on 64 x 96 images in seconds.
TINY_UNET = dict(registry.family("unet").smoke_settings)


def unet_config(min_size: int = 64, max_size: int = 96, **family) -> ModelConfig:
    return smoke_config("unet", min_size, max_size, **family)


#: A YOLACT light enough to train a few steps on 64 x 96 images in seconds.
TINY_YOLACT = dict(registry.family("yolact").smoke_settings)


def yolact_config(min_size: int = 64, max_size: int = 96, **family) -> ModelConfig:
    return smoke_config("yolact", min_size, max_size, **family)


def one_image() -> tuple[torch.Tensor, dict]:
    """A 64 x 90 image of a garment (category 1, attributes 3 and 40) and a part (24) drawn in it."""
    generator = torch.Generator().manual_seed(0)
    image = torch.rand((3, 64, 90), generator=generator)
    masks = torch.zeros((2, 64, 90), dtype=torch.uint8)
    masks[0, 8:56, 10:60] = 1
    masks[1, 20:36, 62:86] = 1
    image[:, masks[0].bool()] *= 0.3  # something to see
    image[1, masks[1].bool()] = 0.9
    attributes = torch.zeros((2, 92))
    attributes[0, [3, 40]] = 1
    target = {"boxes": torch.tensor([[10.0, 8, 60, 56], [62, 20, 86, 36]]), "labels": torch.tensor([1, 24]),
              "masks": masks, "attributes": attributes}
    return image, target
