"""The YOLACT family: prototypes and per-anchor mask coefficients, Fast NMS, no compiled ops (docs/models.md)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pipeline.config.model import ModelParams
from pipeline.models.families.yolact.params import YOLACTParams
from pipeline.models.family import Family

if TYPE_CHECKING:
    from torch import nn


def build(settings: YOLACTParams, model_params: ModelParams, num_classes: int, num_attributes: int,
          initial_weights: bool = True) -> nn.Module:
    """The network, its module imported only when a run builds one."""
    from pipeline.models.families.yolact.network import build as build_network

    return build_network(settings, model_params, num_classes, num_attributes, initial_weights)


FAMILY = Family("yolact", YOLACTParams, build, weights_param="weights",
                smoke_settings={"backbone": "resnet18", "prototypes": 8, "anchor_sizes": (8, 16, 32, 64, 128),
                                "mask_size": 16, "nms_top_k": 50, "max_detections": 50},
                no_onnx="its fast NMS sorts stably, which the ONNX exporter does not support, and counts what "
                        "it keeps: a trace freezes those counts, and TorchScript cannot script its anchors")
