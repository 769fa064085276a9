"""YOLACT's two branches on the FPN: the protonet (P3) and the prediction head shared by P3-P7."""

from __future__ import annotations

import torch
from torch import nn

CHANNELS = 256  # the FPN's, the protonet's and the head's


def _conv(inputs: int, outputs: int, kernel: int = 3) -> nn.Conv2d:
    return nn.Conv2d(inputs, outputs, kernel, padding=kernel // 2)


def protonet(prototypes: int) -> nn.Sequential:
    """P3 to ``prototypes`` maps at twice P3's resolution: three 3x3 convolutions, a x2 bilinear upsample,
    a 3x3 and a 1x1 convolution, ReLU after each (prototypes are non-negative, as in the paper)."""
    layers: list[nn.Module] = []
    for _ in range(3):
        layers += [_conv(CHANNELS, CHANNELS), nn.ReLU(inplace=True)]
    layers += [nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
               _conv(CHANNELS, CHANNELS), nn.ReLU(inplace=True), _conv(CHANNELS, prototypes, 1), nn.ReLU(inplace=True)]
    return nn.Sequential(*layers)


class PredictionHead(nn.Module):
    """Per anchor: class logits, box offsets, mask coefficients (tanh) and, if asked, attribute logits.

    One module for every level (the paper shares it): a 3x3 convolution, then one 3x3 convolution per
    branch. Outputs are flattened location by location, anchor by anchor within a location, as
    torchvision's ``AnchorGenerator`` orders its anchors.
    """

    def __init__(self, anchors: int, num_classes: int, prototypes: int, num_attributes: int) -> None:
        super().__init__()
        self.anchors = anchors
        self.upfeature = nn.Sequential(_conv(CHANNELS, CHANNELS), nn.ReLU(inplace=True))
        widths = {"classes": num_classes, "boxes": 4, "coefficients": prototypes}
        if num_attributes:
            widths["attributes"] = num_attributes
        self.widths = widths
        self.branches = nn.ModuleDict({name: _conv(CHANNELS, anchors * width) for name, width in widths.items()})
        if num_attributes:
            # Attributes are rare (a garment has about 6 of 92): start them at a 5 % prior, not 50 %.
            nn.init.normal_(self.branches["attributes"].weight, std=0.01)
            nn.init.constant_(self.branches["attributes"].bias, -3.0)

    def forward(self, levels: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        """Each branch's (B, N, width) over the anchors of all levels, P3's first."""
        parts: dict[str, list[torch.Tensor]] = {name: [] for name in self.widths}
        for level in levels:
            shared = self.upfeature(level)
            for name, branch in self.branches.items():
                out = branch(shared)
                batch, _, height, width = out.shape
                out = out.view(batch, self.anchors, self.widths[name], height, width).permute(0, 3, 4, 1, 2)
                parts[name].append(out.reshape(batch, -1, self.widths[name]))
        outputs = {name: torch.cat(values, 1) for name, values in parts.items()}
        outputs["coefficients"] = outputs["coefficients"].tanh()
        return outputs
