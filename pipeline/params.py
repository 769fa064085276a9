"""Typed, validated sections of ``params.yaml``.

Each stage reads its sections once, here, and passes plain values on; nothing deeper
reads the file. Unknown or misspelt keys are errors, not silently ignored.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, model_validator

from pipeline.errors import PipelineError


class ParamsSection(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DataParams(ParamsSection):
    """Where the competition data comes from (``stages.download``)."""

    source: Literal["synthetic", "kaggle", "dir"]
    competition: str = "imaterialist-fashion-2019-FGVC6"
    search_root: str = Field("/kaggle/input", description="for source=dir: where to look for the data")


class SyntheticParams(ParamsSection):
    """Size and look of the generated dataset (``pipeline.synthetic``)."""

    seed: int
    train_images: int = Field(ge=1)
    test_images: int = Field(ge=1)
    min_side: int = Field(ge=64)
    max_side: int = Field(ge=64)
    attribute_rate: float = Field(ge=0.0, le=1.0, description="share of images whose garments carry attributes")
    size_defect: bool = Field(description="write one train JPEG whose size disagrees with train.csv")
    jpeg_quality: int = Field(90, ge=1, le=100)

    @model_validator(mode="after")
    def _sides_ordered(self) -> SyntheticParams:
        if self.min_side > self.max_side:
            raise ValueError(f"min_side {self.min_side} exceeds max_side {self.max_side}")
        return self


class PrepareParams(ParamsSection):
    """Validation of ``train.csv`` (``stages.prepare``)."""

    on_size_mismatch: Literal["skip", "fail"]
    report_examples: int = Field(5, ge=0)


class FoldsParams(ParamsSection):
    n_folds: int = Field(ge=2)
    seed: int


class ParamsError(PipelineError, ValueError):
    """A missing or invalid section of params.yaml."""


T = TypeVar("T")


def load_section(path: Path | str, name: str, model: type[T]) -> T:
    """Read section ``name`` of a params file into ``model`` (a pydantic model or dataclass).

    Errors name the file and the section.
    """
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ParamsError(f"{path}: cannot read params: {exc}") from exc
    if name not in data:
        raise ParamsError(f"{path}: no '{name}' section")
    try:
        return TypeAdapter(model).validate_python(data[name])
    except ValidationError as exc:
        raise ParamsError(f"{path}: section '{name}': {exc}") from exc
