"""The choices that several params sections share, defined once."""

from __future__ import annotations

from typing import Literal

#: Arithmetic on CUDA (``train.precision``, ``predict.precision``); CPU runs are fp32.
Precision = Literal["fp32", "bf16", "fp16"]
#: Where to run: ``auto`` is CUDA when torch sees a GPU, else the CPU.
Device = Literal["auto", "cpu", "cuda"]
#: What two ClassIds must share to be matched by the competition metric: the whole string or the category.
MatchOn = Literal["class_id", "category"]
#: The grids a submission's masks are encoded on: 512 x 512, as the competition scored, or each image's own size.
Grid = Literal["512x512", "native"]
#: The ResNets a family may take as its encoder or backbone (the UNet's, YOLACT's).
ResNetName = Literal["resnet18", "resnet34", "resnet50", "resnet101"]
