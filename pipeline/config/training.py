"""Typed sections of params.yaml for the training stages: augmentation, image cache, optimisation."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from pipeline.config.literals import Device, Precision
from pipeline.config.params import ParamsSection

#: The environment variable through which a time-limited session (the Kaggle kernel) gives the train stage
#: its deadline, in ``time.time()`` seconds.
DEADLINE_ENV = "IMATERIALIST_TRAIN_DEADLINE"


class AugmentParams(ParamsSection):
    """Training-time augmentation (``pipeline.data.transforms``); each one off with its neutral value."""

    hflip: bool
    scale_range: tuple[float, float] = Field(description="random factor on the fitted scale; [1, 1] is off")
    color_jitter: float = Field(ge=0.0, le=1.0, description="brightness, contrast and saturation strength; 0 is off")

    @model_validator(mode="after")
    def _range_ordered(self) -> AugmentParams:
        low, high = self.scale_range
        if not 0 < low <= high:
            raise ValueError(f"scale_range needs 0 < low <= high, got {list(self.scale_range)}")
        return self


class CacheParams(ParamsSection):
    """The resized copy of the train images (``stages.cache``)."""

    jpeg_quality: int = Field(ge=1, le=100)
    workers: int = Field(ge=0, description="processes; 0 means one per CPU core")


class TrainParams(ParamsSection):
    """Optimisation, precision, checkpoints and logging (``stages.train``)."""

    launcher: str = Field(description="command that starts the stage: python, or torchrun with its options")
    fold: int = Field(ge=0, description="the held-out fold; the others are trained on")
    epochs: int = Field(ge=1)
    batch_size: int = Field(ge=1, description="images per device per step")
    accumulate: int = Field(1, ge=1, description="batches per optimizer step")
    workers: int = Field(ge=0, description="DataLoader processes per device")
    optimizer: Literal["sgd", "adamw"]
    lr: float = Field(gt=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    weight_decay: float = Field(ge=0)
    schedule: Literal["cosine", "step"]
    warmup_steps: int = Field(ge=0)
    warmup_factor: float = Field(0.001, gt=0, le=1)
    milestones: tuple[float, ...] = Field((), description="step schedule: fractions of training where lr drops")
    gamma: float = Field(0.1, gt=0, le=1)
    grad_clip: float = Field(ge=0, description="max gradient norm; 0 is off")
    precision: Precision = Field(description="mixed precision on CUDA; CPU runs fp32")
    device: Device
    seed: int
    deterministic: bool = Field(description="deterministic kernels: bit-identical resumes, slower on GPU")
    checkpoint_every: int = Field(ge=1, description="optimizer steps between checkpoints")
    log_every: int = Field(ge=1, description="optimizer steps between DVCLive rows")
    # Speed options (docs/gpu.md): each changes how, not what, the model computes; all off is the plain path.
    channels_last: bool = Field(False, description="the backbone's weights in channels-last memory format")
    compile_backbone: bool = Field(False, description="torch.compile the backbone only (the detector graph-breaks)")
    fused_optimizer: bool = Field(False, description="the optimizer's fused kernel: one launch for all parameters")
    sync_every: int = Field(1, ge=1, description="optimizer steps between reads of the loss on the host "
                                                   "(finiteness check, progress bar); above 1 the GPU runs ahead")

    @model_validator(mode="after")
    def _milestones_inside(self) -> TrainParams:
        if any(not 0 < m < 1 for m in self.milestones) or list(self.milestones) != sorted(self.milestones):
            raise ValueError(f"milestones must be increasing fractions in (0, 1), got {list(self.milestones)}")
        return self
