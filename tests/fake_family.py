"""A model family registered from outside the pipeline, to prove the seam: it needs no change inside.

``python tests/fake_family.py -m stages.NAME ARGS...`` runs a stage with the family ``fake``
registered, as a plugin would. Its model has one weight: train mode returns the loss
``loss_fake`` = (w - 1)^2; eval mode finds, in every image, one instance of category
``FakeParams.category``: the centre half of the image, with a full crop mask.

It also registers the family ``timed``, whose speed and memory are known, for the tests of the
comparison's measurements: each forward pass (a batch, train or eval) sleeps ``TimedParams.seconds``
and fills ``TimedParams.ballast_mb`` megabytes. The process that ``pipeline.comparison.measure``
spawns imports this module to unpickle those params, and so finds the family there too. A test
process imports it only with the registry swapped for a copy (``monkeypatch``): other tests expect
the built-in families alone.
"""

from __future__ import annotations

import runpy
import sys
import time
from dataclasses import dataclass

import torch
from torch import nn

from pipeline.config.model import ModelParams
from pipeline.models.contract import MaskFormat
from pipeline.models.family import Family
from pipeline.models.registry import ModelConfig, register


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


FAKE = Family("fake", FakeParams, build)
register(FAKE)


@dataclass(frozen=True)
class TimedParams:
    __pydantic_config__ = {"extra": "forbid"}

    seconds: float = 0.1
    ballast_mb: int = 0


class TimedModel(nn.Module):
    num_attributes = 0
    mask_format = MaskFormat("crop", 8)
    parameters_count = 3

    def __init__(self, params: TimedParams) -> None:
        super().__init__()
        self.params = params
        self.weight = nn.Parameter(torch.zeros(self.parameters_count))

    def forward(self, images: list[torch.Tensor], targets: list[dict] | None = None) -> dict | list[dict]:
        time.sleep(self.params.seconds)
        ballast = torch.ones(self.params.ballast_mb * 2**20 // 4)  # float32, written: resident
        if self.training:
            return {"loss_timed": ((self.weight - 1) ** 2).sum() + 0 * ballast[:1].sum()}
        return [{"boxes": torch.zeros((0, 4)), "labels": torch.zeros(0, dtype=torch.int64), "scores": torch.zeros(0),
                 "masks": torch.zeros((0, 1, 8, 8))} for _ in images]


def timed_config(seconds: float, ballast_mb: int = 0) -> ModelConfig:
    return ModelConfig(ModelParams(family="timed", min_size=64, max_size=96), TimedParams(seconds, ballast_mb))


TIMED = Family("timed", TimedParams, lambda params, *args: TimedModel(params))
register(TIMED)

if __name__ == "__main__":
    assert sys.argv[1] == "-m", "usage: fake_family.py -m stages.NAME ARGS..."
    module = sys.argv[2]
    sys.argv = [module, *sys.argv[3:]]
    runpy.run_module(module, run_name="__main__", alter_sys=True)
