"""The ``unet`` section of params.yaml: the schema of the UNet family's settings.

A plain dataclass, not a pydantic model, so that the model builders and the benchmarks run on a bare GPU box
with torch alone; ``load_section`` validates it from params.yaml all the same.
"""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.config.literals import ResNetName

UNET_DEPTH = 5  # a ResNet's five stride-2 stages: the decoder has one block per stage


@dataclass(frozen=True)
class UNetParams:
    """The ``unet`` section: a UNet with a sigmoid channel per category whose connected components become instances."""

    __pydantic_config__ = {"extra": "forbid"}

    encoder: ResNetName = "resnet18"
    encoder_weights: str = "none"  # none (from scratch) | path to a ResNet state dict, e.g. ImageNet's
    decoder_channels: tuple[int, ...] = (256, 128, 64, 32, 16)
    freeze_batchnorm: bool = False  # encoder BatchNorm -> FrozenBatchNorm2d (fine-tuning with small batches)
    dice_weight: float = 1.0  # on the Dice loss of the categories shown, beside binary cross-entropy (weight 1)
    pixel_threshold: float = 0.5  # a pixel shows a category where its channel's probability is above this
    min_area: int = 16  # components of fewer pixels, at the model's input size, are dropped and counted
    mask_size: int = 56  # side of the stored box-relative mask of each component

    def __post_init__(self) -> None:
        if len(self.decoder_channels) != UNET_DEPTH or min(self.decoder_channels) <= 0:
            raise ValueError(f"decoder_channels needs {UNET_DEPTH} positive channel counts, "
                             f"got {list(self.decoder_channels)}")
        if self.dice_weight < 0:
            raise ValueError(f"dice_weight must be >= 0, got {self.dice_weight}")
        if not 0 < self.pixel_threshold < 1:
            raise ValueError(f"pixel_threshold must be between 0 and 1, got {self.pixel_threshold}")
        if self.min_area < 1 or self.mask_size < 2:
            raise ValueError(f"min_area must be >= 1 and mask_size >= 2, got {self.min_area}, {self.mask_size}")
