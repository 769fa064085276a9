"""The device a run uses, and mixed precision as the ``precision`` params say (bf16 or fp16 on CUDA only)."""

from __future__ import annotations

import contextlib

import torch

from pipeline.utils.errors import PipelineError


def use_cuda(device: str, section: str) -> bool:
    """Whether ``<section>.device`` (``auto``, ``cpu`` or ``cuda``) means CUDA; ``cuda`` without a GPU is an error."""
    if device == "cuda" and not torch.cuda.is_available():
        raise PipelineError(f"{section}.device is cuda but torch sees no CUDA device")
    return device == "cuda" or (device == "auto" and torch.cuda.is_available())


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    if device.type != "cuda" or precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast("cuda", dtype=torch.bfloat16 if precision == "bf16" else torch.float16)
