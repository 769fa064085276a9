"""What a model family is: its name, params schema, builder, initial-weights key and smoke settings.

A module of its own, importing no more than the standard library, the ``model`` section's dataclass and the
digest helper, so that a family's package (which defines its ``FAMILY`` with it) loads with torch alone: no
pydantic, no registry.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pipeline.config.model import ModelParams
from pipeline.utils.fingerprint import imported_modules

if TYPE_CHECKING:
    from torch import nn

#: ``build(family_params, model_params, num_classes, num_attributes, initial_weights)``
Builder = Callable[[Any, ModelParams, int, int, bool], "nn.Module"]
#: ``one_image(model)``: a module taking one float (3, h, w) image and returning a tuple of tensors, which the
#: ONNX exporter can trace, and each output's name and meaning in order (``pipeline.inference.export``)
OnnxModule = Callable[["nn.Module"], tuple["nn.Module", dict[str, str]]]


@dataclass(frozen=True)
class Family:
    name: str  # the value of model.family, and the name of the family's params section
    params: type  # the schema of that section: a dataclass or a pydantic model
    build: Builder
    weights_param: str = "weights"  # the key of its section naming an initial weights file (Kaggle sessions set it)
    #: Its section's values for the lightest model, built and trained on a CPU in seconds at 64 x 96 pixels:
    #: the test suite checks every family of the registry with them (tests/models/test_contract.py).
    smoke_settings: Mapping[str, Any] = field(default_factory=dict)
    #: How its trained model exports to ONNX; None when it cannot, and ``no_onnx`` says why (docs/shop.md).
    onnx: OnnxModule | None = None
    no_onnx: str = ""

    def code_modules(self) -> tuple[str, ...]:
        """The project's modules the builder's module imports: a family's code, in the keys of its checkpoints
        and predictions (a plugin outside ``pipeline`` has none)."""
        module = self.build.__module__
        return imported_modules(module) if module.startswith("pipeline.") else ()
