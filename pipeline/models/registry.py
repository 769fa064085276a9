"""Model families by name: ``model.family`` in params.yaml picks one, its own section configures it.

A family is its params schema (read from the section named like the family) and a builder that
returns a model honouring ``pipeline.models.contract``. ``register`` adds one, e.g. from a
plugin or a test, without editing the pipeline.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import asdict, dataclass, is_dataclass, replace
from pathlib import Path
from typing import Any

from torch import nn

from pipeline.config.model import MaskRCNNParams, ModelParams, UNetParams, YOLACTParams
from pipeline.config.params import load_section
from pipeline.models.contract import DetectionModel
from pipeline.utils.errors import PipelineError
from pipeline.utils.fingerprint import imported_modules

#: ``build(family_params, model_params, num_classes, num_attributes, initial_weights)``
Builder = Callable[[Any, ModelParams, int, int, bool], nn.Module]


class FamilyError(PipelineError):
    """An unknown family, or a family whose model breaks the contract."""


@dataclass(frozen=True)
class Family:
    name: str  # the value of model.family, and the name of the family's params section
    params: type  # the schema of that section: a dataclass or a pydantic model
    build: Builder
    weights_param: str = "weights"  # the key of its section naming an initial weights file (Kaggle sessions set it)

    def code_modules(self) -> tuple[str, ...]:
        """The project's modules the builder's module imports: a family's code, in the keys of its checkpoints
        and predictions (a plugin outside ``pipeline`` has none)."""
        module = self.build.__module__
        return imported_modules(module) if module.startswith("pipeline.") else ()


#: The built-in families: (schema, the module of their ``build``, weights key). Each is imported when first used,
#: so no stage imports a family it does not run, and dvc.yaml's per-family stages depend on that family's package.
_BUILT_IN: dict[str, tuple[type, str, str]] = {
    "maskrcnn": (MaskRCNNParams, "pipeline.models.maskrcnn.detector", "weights"),
    "unet": (UNetParams, "pipeline.models.unet.network", "encoder_weights"),
    "yolact": (YOLACTParams, "pipeline.models.yolact.network", "weights"),
}
_FAMILIES: dict[str, Family] = {}


def register(family: Family) -> None:
    """Add (or replace) a family."""
    _FAMILIES[family.name] = family


def family(name: str) -> Family:
    if name not in _FAMILIES and name in _BUILT_IN:
        schema, module, weights_param = _BUILT_IN[name]
        register(Family(name, schema, importlib.import_module(module).build, weights_param))
    if name not in _FAMILIES:
        raise FamilyError(f"model.family is {name!r}; the known families are "
                          f"{', '.join(sorted({*_BUILT_IN, *_FAMILIES}))}")
    return _FAMILIES[name]


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
        return net


def load(params_path: Path | str, name: str | None = None) -> ModelConfig:
    """The ``model`` section of a params file and the section of the family it names, or of family ``name``."""
    model = load_section(params_path, "model", ModelParams)
    chosen = family(name or model.family)
    return ModelConfig(replace(model, family=chosen.name), load_section(params_path, chosen.name, chosen.params))
