"""Speed options that change how a model's backbone computes, not what: channels-last weights, torch.compile.

A family opts in by exposing ``model.backbone`` (``pipeline.models.contract``), its image-to-features
network. Only that part is compiled: the detector around it has data-dependent shapes (proposals,
NMS, per-image loops) on which torch.compile breaks its graphs and recompiles.
"""

from __future__ import annotations

import torch
from torch import nn

from pipeline.models.contract import HasBackbone
from pipeline.models.registry import FamilyError


def backbone_of(model: nn.Module) -> nn.Module:
    """The family's image-to-features network; a clear error for a family that exposes none."""
    if not (isinstance(model, HasBackbone) and isinstance(model.backbone, nn.Module)):
        raise FamilyError(f"{type(model).__name__} exposes no backbone module (pipeline.models.contract): "
                          "turn channels_last and compile_backbone off for this family")
    return model.backbone


def speed_up(model: nn.Module, channels_last: bool, compile_backbone: bool) -> None:
    """Put the backbone's weights in channels-last format and/or compile it, in place.

    Channels-last weights make the convolutions run in NHWC, the layout tensor cores read
    without a transpose; the activations follow the weights' format. ``nn.Module.compile``
    compiles in place, so parameter names (and so checkpoints) do not change.
    """
    if not (channels_last or compile_backbone):
        return
    part = backbone_of(model)
    if channels_last:
        part.to(memory_format=torch.channels_last)
    if compile_backbone:
        part.compile()
