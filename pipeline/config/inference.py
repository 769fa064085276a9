"""Typed sections of params.yaml for inference and what follows it: TTA, post-processing, tuning, evaluation."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

from pydantic import Field, field_validator, model_validator

from pipeline.config.literals import Device, Grid, MatchOn, Precision
from pipeline.config.params import ParamsSection

# What a detection of an attribute-carrying category becomes: its category with the predicted attributes,
# the category alone, or nothing (the 2019 winner dropped these categories: a ClassId without the right
# attributes scores as a false positive and a false negative).
Policy = Literal["full", "category", "drop"]
# Attribute groups (pipeline.data.attributes) of which a garment has at most one.
EXCLUSIVE_GROUPS = ("length", "opening type", "waistline", "fit", "textile pattern")
# The categories that carry attributes (garments: shirt ... dress; label_descriptions.json ids 0-12).
ATTRIBUTE_CATEGORIES = tuple(range(13))


class PredictParams(ParamsSection):
    """Inference of the trained model (``stages.predict``), with test-time augmentation."""

    checkpoint: Literal["best", "last"] = "best"
    hflip: bool = Field(description="add a horizontally flipped copy of every scale")
    scales: tuple[float, ...] = Field(description="factors on the model's fitted image scale; 1.0 is the plain view")
    batch_size: int = Field(ge=1)
    workers: int = Field(ge=0, description="DataLoader processes decoding images")
    device: Device = "auto"
    precision: Precision = "bf16"
    part_size: int = Field(128, ge=1, description="images per resumable part file")
    # Speed options (docs/gpu.md): the same detections within rounding, faster on a GPU.
    stack_views: bool = Field(False, description="all TTA views of a batch in one forward (padded to the largest)")
    channels_last: bool = Field(False, description="the backbone's weights in channels-last memory format")

    @field_validator("scales")
    @classmethod
    def _scales(cls, scales: tuple[float, ...]) -> tuple[float, ...]:
        if 1.0 not in scales:
            raise ValueError(f"scales must include 1.0 (the plain view, scored as 'no TTA'), got {list(scales)}")
        if min(scales) <= 0 or len(set(scales)) != len(scales):
            raise ValueError(f"scales must be distinct and positive, got {list(scales)}")
        return scales


class PostprocessParams(ParamsSection):
    """From raw detections to submitted masks (``pipeline.inference.postprocess``); ``stages.tune`` searches these."""

    tta: bool = Field(description="merge all predicted views; false uses the plain view only")
    score_thresh: float = Field(ge=0.0, le=1.0)
    nms_iou: float = Field(gt=0.0, le=1.0, description="class-wise box IoU above which detections merge")
    mask_thresh: float = Field(gt=0.0, lt=1.0, description="mask probability binarisation threshold")
    min_area: int = Field(ge=0, description="pixels on the submission grid, after overlap removal")
    max_detections: int = Field(ge=1)
    attribute_policy: Policy = Field(description="for the attribute_categories: full, category or drop")
    category_policy: dict[int, Policy] = Field(default_factory=dict,
                                               description="per-category exceptions to attribute_policy")
    attribute_thresh: float = Field(0.5, gt=0.0, lt=1.0, description="probability from which an attribute is chosen")
    group_thresh: dict[str, float] = Field(default_factory=dict,
                                           description="per attribute group exceptions to attribute_thresh")
    exclusive_groups: tuple[str, ...] = Field(EXCLUSIVE_GROUPS, description="groups of which at most one is chosen")
    attribute_categories: tuple[int, ...] = ATTRIBUTE_CATEGORIES
    grid: Grid = Field(description="'512x512' (what the competition scored) or 'native' (each image's own size)")

    @model_validator(mode="after")
    def _attribute_settings(self) -> PostprocessParams:
        if stray := sorted(set(self.category_policy) - set(self.attribute_categories)):
            raise ValueError(f"category_policy names categories outside attribute_categories: {stray}")
        if bad := {name: value for name, value in self.group_thresh.items() if not 0 < value < 1}:
            raise ValueError(f"group_thresh values must lie in (0, 1): {bad}")
        return self

    def policy(self, category: int) -> Policy | None:
        """The policy of a category; None for categories that carry no attributes (always predicted alone)."""
        if category not in self.attribute_categories:
            return None
        return self.category_policy.get(category, self.attribute_policy)

    def key(self) -> str:
        """A hashable identity (the dict fields make the model itself unhashable)."""
        return self.model_dump_json()

    def grids(self, records: Iterable) -> dict[str, tuple[int, int]]:
        """The submission grid of each image (``ImageRecord``-like: image_id, height, width)."""
        return grids(self.grid, records)

    def grid_size(self, height: int, width: int) -> tuple[int, int]:
        """(height, width) of the submission grid for an image of this size."""
        return grid_size(self.grid, height, width)


def grid_size(grid: Grid, height: int, width: int) -> tuple[int, int]:
    """(height, width) of ``grid`` for an image of this size."""
    if grid == "native":
        return height, width
    rows, cols = grid.split("x")
    return int(rows), int(cols)


def grids(grid: Grid, records: Iterable) -> dict[str, tuple[int, int]]:
    """The grid of each image (``ImageRecord``-like: image_id, height, width)."""
    return {r.image_id: grid_size(grid, r.height, r.width) for r in records}


class TuneParams(ParamsSection):
    """The search of ``stages.tune``: candidate values per post-processing setting, coordinate ascent."""

    tta: tuple[bool, ...]
    score_thresh: tuple[float, ...]
    nms_iou: tuple[float, ...]
    mask_thresh: tuple[float, ...]
    min_area: tuple[int, ...]
    max_detections: tuple[int, ...]
    attribute_thresh: tuple[float, ...] = Field(description="candidates, tried for each attribute group")
    attribute_policy: tuple[Policy, ...] = Field(description="candidates, tried for each attribute category")
    policy_images: Literal["attributed", "all"] = Field(
        "attributed", description="validation images the attribute settings are tuned on (docs/attributes.md)")
    rounds: int = Field(ge=1, description="passes over all settings")
    max_images: int = Field(ge=1, description="validation images searched on (a seeded sample when more)")
    seed: int = 0
    match_on: MatchOn = "class_id"
    workers: int = Field(0, ge=0, description="processes scoring images in parallel; 0: one per CPU core")

    @model_validator(mode="after")
    def _non_empty(self) -> TuneParams:
        if empty := [name for name in (*self.searched(), *self.attribute_settings()) if not getattr(self, name)]:
            raise ValueError(f"no candidate values for: {', '.join(empty)}")
        if any(not 0 < value < 1 for value in self.attribute_thresh):
            raise ValueError(f"attribute_thresh candidates must lie in (0, 1), got {list(self.attribute_thresh)}")
        return self

    @staticmethod
    def searched() -> tuple[str, ...]:
        """The settings tuned on all images, each a single value of ``PostprocessParams``."""
        return "tta", "score_thresh", "nms_iou", "mask_thresh", "min_area", "max_detections"

    @staticmethod
    def attribute_settings() -> tuple[str, ...]:
        """The settings tuned per attribute group / category, on ``policy_images``."""
        return "attribute_thresh", "attribute_policy"


class EvaluateParams(ParamsSection):
    """``stages.evaluate``: the metric's matching rule and the picture gallery."""

    match_on: MatchOn = "class_id"
    gallery_images: int = Field(ge=0)
    workers: int = Field(0, ge=0, description="processes scoring, post-processing and encoding images in parallel; "
                                               "0: one per CPU core")
    gallery_size: int = Field(ge=64, description="long side of each gallery panel in pixels")


class SubmissionParams(ParamsSection):
    """``stages.submission``: how the test images' post-processing and encoding run (not what they produce)."""

    workers: int = Field(0, ge=0, description="processes; 0 means one per CPU core (in-process for few images)")
