"""Model families by name: ``model.family`` in params.yaml picks one, its own section configures it.

A family is its params schema (read from the section named like the family) and a builder that
returns a model honouring ``pipeline.models.contract``. ``register`` adds one, e.g. from a
plugin or a test, without editing the pipeline.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, is_dataclass
from pathlib import Path
from typing import Any

from torch import nn

from pipeline.config.model import MaskRCNNParams, ModelParams
from pipeline.config.params import load_section
from pipeline.models import maskrcnn
from pipeline.models.contract import DetectionModel
from pipeline.utils.errors import PipelineError

#: ``build(family_params, model_params, num_classes, num_attributes, initial_weights)``
Builder = Callable[[Any, ModelParams, int, int, bool], nn.Module]


class FamilyError(PipelineError):
    """An unknown family, or a family whose model breaks the contract."""


@dataclass(frozen=True)
class Family:
    name: str  # the value of model.family, and the name of the family's params section
    params: type  # the schema of that section: a dataclass or a pydantic model
    build: Builder


_FAMILIES: dict[str, Family] = {"maskrcnn": Family("maskrcnn", MaskRCNNParams, maskrcnn.build)}


def register(family: Family) -> None:
    """Add (or replace) a family."""
    _FAMILIES[family.name] = family


def family(name: str) -> Family:
    if name not in _FAMILIES:
        raise FamilyError(f"model.family is {name!r}; the known families are {', '.join(sorted(_FAMILIES))}")
    return _FAMILIES[name]


def params_dict(params: Any) -> dict:
    """A family's params as plain data (for resume and prediction keys, and the resolved params file)."""
    return asdict(params) if is_dataclass(params) else params.model_dump(mode="json")


@dataclass(frozen=True)
class ModelConfig:
    """The ``model`` section and the chosen family's section: all that builds a model."""

    model: ModelParams
    family: Any  # an instance of the family's params schema

    def key(self) -> dict:
        return {"model": asdict(self.model), self.model.family: params_dict(self.family)}

    def build(self, num_classes: int, num_attributes: int, initial_weights: bool = True) -> nn.Module:
        """The family's model; ``initial_weights=False`` when a checkpoint's weights are loaded next."""
        net = family(self.model.family).build(self.family, self.model, num_classes, num_attributes, initial_weights)
        if not isinstance(net, DetectionModel):
            raise FamilyError(f"family {self.model.family!r} built a {type(net).__name__} without the contract's "
                              "mask_format and num_attributes (pipeline.models.contract)")
        return net


def load(params_path: Path | str) -> ModelConfig:
    """The ``model`` section of a params file and the section of the family it names."""
    model = load_section(params_path, "model", ModelParams)
    chosen = family(model.family)
    return ModelConfig(model, load_section(params_path, chosen.name, chosen.params))
