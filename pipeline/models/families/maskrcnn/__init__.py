"""The Mask R-CNN family: torchvision's detector with an attribute head (docs/models.md, "Mask R-CNN")."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pipeline.config.model import ModelParams
from pipeline.models.families.maskrcnn.params import MaskRCNNParams
from pipeline.models.family import Family

if TYPE_CHECKING:
    from torch import nn


def build(settings: MaskRCNNParams, model_params: ModelParams, num_classes: int, num_attributes: int,
          initial_weights: bool = True) -> nn.Module:
    """The detector, its module imported only when a run builds one."""
    from pipeline.models.families.maskrcnn.detector import build as build_detector

    return build_detector(settings, model_params, num_classes, num_attributes, initial_weights)


def onnx_module(detector: nn.Module) -> tuple[nn.Module, dict[str, str]]:
    """The one-image module that ONNX exports (``export.OneImage``), imported only when a model is exported."""
    from pipeline.models.families.maskrcnn.export import one_image

    return one_image(detector)


FAMILY = Family("maskrcnn", MaskRCNNParams, build, weights_param="weights",
                smoke_settings={"architecture": "maskrcnn_resnet18_fpn", "anchor_sizes": (8, 16, 32, 64, 128),
                                "rpn_post_nms_top_n_train": 100, "box_batch_size_per_image": 32},
                onnx=onnx_module)
