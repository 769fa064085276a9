"""Model families by name: ``model.family`` in params.yaml picks one, its own section configures it.

A family is one package, ``pipeline/models/families/<name>/``, whose ``__init__`` defines ``FAMILY``
(``pipeline.models.family.Family``): its params schema (read from the section named like the family), a builder
returning a model that honours ``pipeline.models.contract``, and the key of its initial weights. The registry
finds those packages itself, then the families that installed packages declare under the entry-point group
``imaterialist.families``; ``register`` adds one at run time (a test's, a notebook's). Nothing else in the
pipeline lists the families.
"""

from __future__ import annotations

import functools
import importlib
import importlib.metadata
import pkgutil
from dataclasses import asdict, dataclass, is_dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.config.model import ModelParams
from pipeline.config.params import load_section
from pipeline.models.contract import BoxAttributes, DetectionModel
from pipeline.models.family import Family
from pipeline.utils.errors import PipelineError

if TYPE_CHECKING:
    from torch import nn


class FamilyError(PipelineError):
    """An unknown family, or a family whose model breaks the contract."""


#: The package whose subpackages are the built-in families. Named as a string: the rest of the pipeline reaches a
#: family through the registry only, never by an import (pyproject.toml's import-linter contracts).
FAMILIES_PACKAGE = "pipeline.models.families"
#: The entry-point group under which an installed package declares a ``Family``.
ENTRY_POINT_GROUP = "imaterialist.families"
_FAMILIES: dict[str, Family] = {}  # registered at run time; they take precedence over the discovered ones


def register(family: Family) -> None:
    """Add (or replace) a family."""
    _FAMILIES[family.name] = family


def family(name: str) -> Family:
    known = {**_discovered(), **_FAMILIES}
    if name not in known:
        raise FamilyError(f"no model family {name!r} (model.family, compare.families, index.family, --family); "
                          f"the known families are {', '.join(sorted(known))}")
    return known[name]


def names() -> tuple[str, ...]:
    """Every family the registry knows, sorted."""
    return tuple(sorted({*_discovered(), *_FAMILIES}))


def sections() -> dict[str, type]:
    """The params.yaml section of each family (named like it) with its schema."""
    return {name: family(name).params for name in names()}


@functools.cache
def _discovered() -> dict[str, Family]:
    """The built-in family packages, then the installed plugins'. A package's ``__init__`` loads only its params
    schema and a lazy builder, so listing the families loads no family's network code."""
    found: dict[str, Family] = {}
    package = importlib.import_module(FAMILIES_PACKAGE)
    for module in pkgutil.iter_modules(package.__path__, f"{FAMILIES_PACKAGE}."):
        if module.ispkg:
            _adopt(found, getattr(importlib.import_module(module.name), "FAMILY", None), module.name)
    for entry in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        _adopt(found, entry.load(), f"the entry point {entry.name} = {entry.value}")
    return found


def _adopt(found: dict[str, Family], candidate: object, source: str) -> None:
    if not isinstance(candidate, Family):
        raise FamilyError(f"{source} defines no FAMILY of type pipeline.models.family.Family")
    package_name = source.rsplit(".", 1)[-1]
    if source.startswith(FAMILIES_PACKAGE) and candidate.name != package_name:
        raise FamilyError(f"{source} names its family {candidate.name!r}: a family's package bears its name")
    found[candidate.name] = candidate


def params_dict(params: Any) -> dict:
    """A family's params as plain data (for resume and prediction keys, and the resolved params file)."""
    return asdict(params) if is_dataclass(params) else params.model_dump(mode="json")


@dataclass(frozen=True)
class ModelConfig:
    """The ``model`` section and the chosen family's section: all that builds a model."""

    model: ModelParams
    family: Any  # an instance of the family's params schema

    def code_modules(self) -> tuple[str, ...]:
        return family(self.model.family).code_modules()

    def key(self) -> dict:
        return {"model": asdict(self.model), self.model.family: params_dict(self.family)}

    def build(self, num_classes: int, num_attributes: int, initial_weights: bool = True) -> nn.Module:
        """The family's model; ``initial_weights=False`` when a checkpoint's weights are loaded next."""
        net = family(self.model.family).build(self.family, self.model, num_classes, num_attributes, initial_weights)
        if not isinstance(net, DetectionModel):
            raise FamilyError(f"family {self.model.family!r} built a {type(net).__name__} without the contract's "
                              "mask_format and num_attributes (pipeline.models.contract)")
        if net.num_attributes and not isinstance(net, BoxAttributes):
            raise FamilyError(f"family {self.model.family!r} predicts {net.num_attributes} attributes but its model "
                              "has no attributes_of_boxes (pipeline.models.contract)")
        return net


def load(params_path: Path | str, name: str | None = None) -> ModelConfig:
    """The ``model`` section of a params file and the section of the family it names, or of family ``name``."""
    model = load_section(params_path, "model", ModelParams)
    chosen = family(name or model.family)
    return ModelConfig(replace(model, family=chosen.name), load_section(params_path, chosen.name, chosen.params))
