"""The optimiser and the learning-rate schedule of ``train`` params."""

from __future__ import annotations

import math

import torch

from pipeline.config.training import TrainParams


def lr_factor(step: int, total: int, params: TrainParams) -> float:
    """The learning-rate multiplier after ``step`` optimizer steps: linear warm-up, then cosine or steps.

    A pure function of the step (not a chain of torch schedulers) so that it is tested directly
    and a resumed run recomputes exactly the same value.
    """
    if step < params.warmup_steps:
        progress = step / params.warmup_steps
        return params.warmup_factor + (1 - params.warmup_factor) * progress
    if params.schedule == "cosine":
        span = max(1, total - params.warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - params.warmup_steps) / span)))
    return params.gamma ** sum(step >= round(m * total) for m in params.milestones)


def optimizer(model: torch.nn.Module, params: TrainParams) -> torch.optim.Optimizer:
    """SGD or AdamW; ``train.fused_optimizer`` picks torch's fused kernel over its default (foreach on CUDA)."""
    trainable = [p for p in model.parameters() if p.requires_grad]
    fused = params.fused_optimizer or None  # None: torch's default implementation
    if params.optimizer == "sgd":
        return torch.optim.SGD(trainable, lr=params.lr, momentum=params.momentum, weight_decay=params.weight_decay,
                               fused=fused)
    return torch.optim.AdamW(trainable, lr=params.lr, weight_decay=params.weight_decay, fused=fused)


def scheduler(optimizer: torch.optim.Optimizer, total_steps: int, params: TrainParams,
              ) -> torch.optim.lr_scheduler.LambdaLR:
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, total_steps, params))
