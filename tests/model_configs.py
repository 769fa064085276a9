"""Small configurations of each family for the tests (a model section and the family's section together),
and one image to train them on."""

from __future__ import annotations

from dataclasses import replace

import torch

from pipeline.config.model import MaskRCNNParams, ModelParams, UNetParams, YOLACTParams
from pipeline.models.registry import ModelConfig

#: A ResNet-18 Mask R-CNN small enough to train a few steps on 64 x 96 images in seconds.
TINY_MASKRCNN = {"anchor_sizes": (8, 16, 32, 64, 128), "rpn_post_nms_top_n_train": 100,
                 "box_batch_size_per_image": 32}


def maskrcnn_config(architecture: str = "maskrcnn_resnet18_fpn", min_size: int = 64, max_size: int = 96,
                    **family) -> ModelConfig:
    """``family`` overrides fields of the maskrcnn section (none of TINY_MASKRCNN's unless given)."""
    return ModelConfig(ModelParams(min_size=min_size, max_size=max_size),
                       MaskRCNNParams(architecture=architecture, **family))


def tiny_config(architecture: str = "maskrcnn_resnet18_fpn", **family) -> ModelConfig:
    return maskrcnn_config(architecture, **{**TINY_MASKRCNN, **family})


def changed(config: ModelConfig, **family) -> ModelConfig:
    """``config`` with these fields of its family section changed."""
    return ModelConfig(config.model, replace(config.family, **family))


#: A UNet light enough to train a few steps on 64 x 96 images in seconds.
TINY_UNET = {"encoder": "resnet18", "decoder_channels": (32, 16, 16, 8, 8), "min_area": 4, "mask_size": 16}


def unet_config(min_size: int = 64, max_size: int = 96, **family) -> ModelConfig:
    return ModelConfig(ModelParams(family="unet", min_size=min_size, max_size=max_size),
                       UNetParams(**{**TINY_UNET, **family}))


#: A YOLACT light enough to train a few steps on 64 x 96 images in seconds.
TINY_YOLACT = {"backbone": "resnet18", "prototypes": 8, "anchor_sizes": (8, 16, 32, 64, 128), "mask_size": 16,
               "nms_top_k": 50, "max_detections": 50}


def yolact_config(min_size: int = 64, max_size: int = 96, **family) -> ModelConfig:
    return ModelConfig(ModelParams(family="yolact", min_size=min_size, max_size=max_size),
                       YOLACTParams(**{**TINY_YOLACT, **family}))


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
