"""The ``compare`` section: which families dvc.yaml trains side by side, and how the comparison measures them."""

from __future__ import annotations

from pydantic import Field, field_validator

from pipeline.config.params import ParamsSection


class CompareParams(ParamsSection):
    """``dvc.yaml``'s per-family stages (``foreach``) and ``stages.compare``."""

    families: tuple[str, ...] = Field(min_length=1, description="model families to train, predict, tune, evaluate")
    train_steps: int = Field(ge=1, description="timed optimizer steps per family, after one untimed")
    inference_images: int = Field(ge=1, description="timed validation images per family (plain view)")
    bootstrap_resamples: int = Field(ge=100, description="resamples of the validation images for the interval")
    seed: int = 0

    @field_validator("families")
    @classmethod
    def _distinct(cls, families: tuple[str, ...]) -> tuple[str, ...]:
        if len(set(families)) != len(families):
            raise ValueError(f"families must be distinct, got {list(families)}")
        return families
