"""Typed, validated sections of ``params.yaml``.

Each stage reads its sections once, here, and passes plain values on; nothing deeper
reads the file. Unknown or misspelt keys are errors, not silently ignored.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args, get_type_hints

import yaml
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, model_validator

from pipeline.utils.errors import PipelineError


class ParamsSection(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DataParams(ParamsSection):
    """Where the competition data comes from (``stages.download``)."""

    source: Literal["synthetic", "kaggle", "dir"]
    competition: str = "imaterialist-fashion-2019-FGVC6"
    search_root: str = Field("/kaggle/input", description="for source=dir: where to look for the data")


#: The looks of the synthetic dataset: the demo's small images, or the real data's sizes and statistics.
Profile = Literal["demo", "real"]


class SyntheticParams(ParamsSection):
    """Size and look of the generated dataset (``pipeline.data.synthetic``)."""

    seed: int
    train_images: int = Field(ge=1)
    test_images: int = Field(ge=1)
    min_side: int = Field(ge=64)
    max_side: int = Field(ge=64)
    attribute_rate: float = Field(ge=0.0, le=1.0, description="share of images whose garments carry attributes")
    size_defect: bool = Field(description="write one train JPEG whose size disagrees with train.csv")
    jpeg_quality: int = Field(90, ge=1, le=100)
    profile: Profile = Field(
        "demo", description="demo: small images, many instances; real: the real data's sizes and statistics")
    workers: int = Field(0, ge=0, description="processes painting images; 0: one per CPU core from 200 images")

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


def _admits_bool(annotation: object) -> bool:
    """Whether a field's type accepts a boolean anywhere in it (``bool``, ``tuple[bool, ...]``, ``Any``)."""
    if annotation is bool or annotation is Any or annotation is object:
        return True
    return any(_admits_bool(arg) for arg in get_args(annotation) if not isinstance(arg, (str, int, float)))


def _holds_bool(value: object) -> bool:
    if isinstance(value, bool):
        return True
    if isinstance(value, (list, tuple)):
        return any(_holds_bool(item) for item in value)
    return isinstance(value, dict) and any(_holds_bool(item) for item in value.values())


def _field_types(model: type) -> dict[str, object]:
    if isinstance(model, type) and issubclass(model, BaseModel):
        return {name: field.annotation for name, field in model.model_fields.items()}
    return get_type_hints(model) if dataclasses.is_dataclass(model) else {}


def _booleans_as_numbers(model: type, data: object) -> list[str]:
    """Keys whose value holds a boolean where the field takes numbers or text.

    pydantic's lax mode reads ``true`` as 1 (``epochs: true`` would train one epoch); its strict
    mode would also refuse YAML lists for tuple fields, so booleans are refused here instead.
    """
    if not isinstance(data, dict):
        return []
    types = _field_types(model)
    return [f"{key}: {yaml.safe_dump(value, default_flow_style=True).strip().removesuffix('...').strip()} holds a "
            f"boolean, but the field takes {_type_name(types[key])}"
            for key, value in data.items() if key in types and _holds_bool(value) and not _admits_bool(types[key])]


def did_you_mean(word: str, known: Iterable[str]) -> str:
    """``" (did you mean 'epochs'?)"`` for the closest of ``known`` to a misspelt ``word``; else the known ones."""
    known = list(known)
    close = difflib.get_close_matches(word, known, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else f" (the settings are: {', '.join(known)})"


def _type_name(annotation: object) -> str:
    return annotation.__name__ if isinstance(annotation, type) else str(annotation).replace("typing.", "")


def read_params(path: Path | str) -> dict:
    """The mapping of a params-like YAML file; a :class:`ParamsError` naming the file otherwise."""
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ParamsError(f"{path}: cannot read params: {exc}") from exc
    if not isinstance(data, dict):
        raise ParamsError(f"{path}: not a mapping of sections")
    return data


def validate_section(data: dict, name: str, model: type[T], path: Path | str, complete: bool = False) -> T:
    """Section ``name`` of a file's mapping ``data`` as ``model``; with ``complete``, every field must be written
    out (no default may stand in for it). Errors name the file and the section."""
    if name not in data:
        raise ParamsError(f"{path}: no '{name}' section")
    if problems := _booleans_as_numbers(model, data[name]):
        raise ParamsError(f"{path}: section '{name}': {'; '.join(problems)}")
    section = data[name]
    if complete and isinstance(section, dict) and (missing := [k for k in _field_types(model) if k not in section]):
        raise ParamsError(f"{path}: section '{name}' lacks {', '.join(missing)}")
    fields = _field_types(model)
    if isinstance(section, dict) and fields and (unknown := [k for k in section if k not in fields]):
        raise ParamsError(f"{path}: section '{name}': " + "; ".join(
            f"no setting {key!r}{did_you_mean(str(key), fields)}" for key in unknown))
    try:
        return TypeAdapter(model).validate_python(data[name])
    except ValidationError as exc:
        raise ParamsError(f"{path}: section '{name}': {exc}") from exc


def load_section(path: Path | str, name: str, model: type[T]) -> T:
    """Read section ``name`` of a params file into ``model`` (a pydantic model or dataclass).

    Errors name the file and the section.
    """
    return validate_section(read_params(path), name, model, path)


def _merge(base: dict[str, Any], overrides: dict[str, Any], source: str, where: str = "") -> dict[str, Any]:
    merged = dict(base)
    for key, value in overrides.items():
        path = f"{where}{key}"
        if key not in base:
            raise ParamsError(f"{source}: {path} is not in params.yaml{did_you_mean(str(key), base)}")
        merged[key] = (_merge(base[key], value, source, f"{path}.") if isinstance(value, dict)
                       and isinstance(base[key], dict) else value)
    return merged


def with_overrides(params_file: Path | str, overrides_file: Path | str) -> dict[str, Any]:
    """``params_file`` with ``overrides_file`` merged over it, mapping by mapping (the Kaggle notebook's
    settings, ``make compare``'s larger set); a key that ``params_file`` lacks is an error."""
    base = yaml.safe_load(Path(params_file).read_text(encoding="utf-8"))
    try:
        overrides = yaml.safe_load(Path(overrides_file).read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ParamsError(f"{overrides_file}: cannot read the overrides: {exc}") from exc
    return _merge(base, overrides, str(overrides_file))
