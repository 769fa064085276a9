"""The trained detector as one traceable module for ONNX: one image in, its detections out, masks on the image."""

from __future__ import annotations

import copy
import types

import torch
from torch import nn
from torchvision.models.detection.roi_heads import paste_masks_in_image


class OneImage(nn.Module):
    """``(3, h, w)`` float image in [0, 1], at the ``model`` section's fitted size, to ``boxes`` (N, 4) in its
    pixels, ``labels`` (N,) (1-based categories), ``scores`` (N,), ``masks`` (N, 1, h, w) probabilities pasted
    on the image as torchvision pastes them, and ``attributes`` (N, A) probabilities when the model has them."""

    def __init__(self, detector: nn.Module) -> None:
        super().__init__()
        self.detector = copy.deepcopy(detector)  # its attribute head is changed below; the caller's stays as it is
        self.with_attributes = detector.num_attributes > 0
        if self.with_attributes:
            heads = self.detector.roi_heads
            heads.attribute_probabilities = types.MethodType(_unsplit_attributes, heads)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
        found = self.detector([image])[0]
        masks = paste_masks_in_image(found["masks"], found["boxes"], (image.shape[-2], image.shape[-1]))
        out = (found["boxes"], found["labels"], found["scores"], masks)
        return (*out, found["attributes"]) if self.with_attributes else out


def _unsplit_attributes(heads: nn.Module, features: dict[str, torch.Tensor], boxes: list[torch.Tensor],
                        image_shapes: list[tuple[int, int]]) -> list[torch.Tensor]:
    """``AttributeRoIHeads.attribute_probabilities`` for one image, without its per-image split: a trace would fix
    the split's sizes to the detections of the image it was traced on."""
    pooled = heads.box_head(heads.box_roi_pool(features, boxes, image_shapes))
    return [heads.attribute_predictor(heads._with_geometry(pooled, boxes, image_shapes)).sigmoid()]


#: Each output, as the exported file's description says it.
OUTPUTS = {"boxes": "float32 (N, 4): x0, y0, x1, y1 in the input image's pixels, best score first",
           "labels": "int64 (N,): category + 1 (categories[label - 1]; 0 is background and never found)",
           "scores": "float32 (N,): the detection's confidence",
           "masks": "float32 (N, 1, height, width): each detection's mask probability on the input image",
           "attributes": "float32 (N, A): each attribute's probability (attributes[i])"}


def one_image(detector: nn.Module) -> tuple[nn.Module, dict[str, str]]:
    """The module the ONNX exporter traces, and its outputs: name and meaning, in order."""
    module = OneImage(detector).eval()
    return module, {name: said for name, said in OUTPUTS.items() if name != "attributes" or module.with_attributes}
