"""A model family registered from outside the pipeline, to prove the seam: it needs no change inside.

``python tests/fake_family.py -m stages.NAME ARGS...`` runs a stage with the family ``fake``
registered, as a plugin would. Its model has one weight: train mode returns the loss
``loss_fake`` = (w - 1)^2; eval mode finds, in every image, one instance of category
``FakeParams.category``: the centre half of the image, with a full crop mask.
"""

from __future__ import annotations

import runpy
import sys
from dataclasses import dataclass

import torch
from torch import nn

from pipeline.config.model import ModelParams
from pipeline.models.contract import MaskFormat
from pipeline.models.registry import Family, register


@dataclass(frozen=True)
class FakeParams:
    __pydantic_config__ = {"extra": "forbid"}

    category: int = 2  # 0-based, as in ClassIds
    mask_size: int = 8


class FakeModel(nn.Module):
    num_attributes = 0

    def __init__(self, params: FakeParams) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(()))
        self.label = params.category + 1  # the contract's labels count the background as 0
        self.mask_format = MaskFormat("crop", params.mask_size)

    def forward(self, images: list[torch.Tensor], targets: list[dict] | None = None) -> dict | list[dict]:
        if self.training:
            return {"loss_fake": (self.weight - 1) ** 2}
        found = []
        for image in images:
            height, width = image.shape[-2:]
            size = self.mask_format.size
            found.append({"boxes": torch.tensor([[width / 4, height / 4, 3 * width / 4, 3 * height / 4]]),
                          "labels": torch.tensor([self.label]), "scores": torch.sigmoid(self.weight + 2)[None],
                          "masks": torch.ones(1, 1, size, size)})
        return found


def build(params: FakeParams, model: ModelParams, num_classes: int, num_attributes: int,
          initial_weights: bool) -> FakeModel:
    return FakeModel(params)


register(Family("fake", FakeParams, build))

if __name__ == "__main__":
    assert sys.argv[1] == "-m", "usage: fake_family.py -m stages.NAME ARGS..."
    module = sys.argv[2]
    sys.argv = [module, *sys.argv[3:]]
    runpy.run_module(module, run_name="__main__", alter_sys=True)
