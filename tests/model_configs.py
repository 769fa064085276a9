"""Small configurations of each family for the tests: a model section and the family's section together."""

from __future__ import annotations

from dataclasses import replace

from pipeline.config.model import MaskRCNNParams, ModelParams, UNetParams
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
