"""The Mask2Former family: Hugging Face's query-based mask classifier, an attribute head on its queries
(docs/models.md, "Mask2Former")."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pipeline.config.model import ModelParams
from pipeline.models.families.mask2former.params import Mask2FormerParams
from pipeline.models.family import Family

if TYPE_CHECKING:
    from torch import nn


def build(settings: Mask2FormerParams, model_params: ModelParams, num_classes: int, num_attributes: int,
          initial_weights: bool = True) -> nn.Module:
    """The network, its module (and transformers) imported only when a run builds one."""
    from pipeline.models.families.mask2former.network import build as build_network

    return build_network(settings, model_params, num_classes, num_attributes, initial_weights)


FAMILY = Family("mask2former", Mask2FormerParams, build, weights_param="weights",
                smoke_settings={"backbone": "resnet18", "num_queries": 20, "hidden_dim": 32, "encoder_layers": 1,
                                "decoder_layers": 3, "num_heads": 4, "encoder_feedforward_dim": 64,
                                "decoder_feedforward_dim": 64, "train_num_points": 256, "max_detections": 20,
                                "mask_size": 16},
                no_onnx="its exported graph fails in onnxruntime (a Where node that does not broadcast) and "
                        "it crops masks to sizes found in the data; a trace is wrong at other image sizes")
