"""The UNet family: a sigmoid channel per category whose connected components are the instances (docs/models.md)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pipeline.config.model import ModelParams
from pipeline.models.families.unet.params import UNetParams
from pipeline.models.family import Family

if TYPE_CHECKING:
    from torch import nn


def build(settings: UNetParams, model_params: ModelParams, num_classes: int, num_attributes: int,
          initial_weights: bool = True) -> nn.Module:
    """The network, its module (and segmentation-models-pytorch) imported only when a run builds one."""
    from pipeline.models.families.unet.network import build as build_network

    return build_network(settings, model_params, num_classes, num_attributes, initial_weights)


FAMILY = Family("unet", UNetParams, build, weights_param="encoder_weights",
                smoke_settings={"encoder": "resnet18", "decoder_channels": (32, 16, 16, 8, 8), "min_area": 4,
                                "mask_size": 16},
                no_onnx="its instances are the connected components of each category's map, found by scipy "
                        "outside the network: a trace keeps them as constants")
