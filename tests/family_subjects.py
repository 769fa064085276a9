"""The models the contract suites check: every family of the registry and a family registered from outside.

``tests/models/test_contract.py`` and ``tests/models/test_abilities.py`` build each once per module, with its
smoke settings (``Family.smoke_settings``) and score thresholds that make a random initialisation detect.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from pipeline.models import registry
from pipeline.models.registry import ModelConfig

from model_configs import smoke_config

FAMILIES = (*registry.names(), "fake")
NUM_CLASSES = 47  # background + the 46 categories
NUM_ATTRIBUTES = 4
SEED = 0

#: Score thresholds of 0 (the UNet's pixel threshold under its initial 5 %) make a randomly initialised model return
#: detections, so that eval mode's masks and attributes are checked, not only empty outputs. A family not named
#: here is checked with its smoke settings alone.
DETECTING = {
    "maskrcnn": {"mask_head_layers": (64, 64), "box_score_thresh": 0.0, "box_detections_per_img": 20,
                 "rpn_pre_nms_top_n_test": 200, "rpn_post_nms_top_n_test": 100},
    "unet": {"pixel_threshold": 0.01},
    "yolact": {"score_threshold": 0.0, "max_detections": 20},
}


def family_config(name: str) -> ModelConfig:
    """One small configuration per family: its smoke settings, detecting from a random initialisation."""
    return smoke_config(name, **DETECTING.get(name, {}))


class Subject:
    """A family's model as built, restored before each use so that examples do not depend on each other."""

    def __init__(self, name: str, model: nn.Module) -> None:
        self.name, self.model = name, model
        self.initial = {key: value.detach().clone() for key, value in model.state_dict().items()}

    def __repr__(self) -> str:  # Hypothesis prints it in a falsifying example: the name, not the weights
        return f"Subject({self.name!r})"

    def fresh(self, train: bool) -> nn.Module:
        """The model with its initial weights and statistics, no gradients, the random generator at ``SEED``."""
        self.model.load_state_dict(self.initial)
        self.model.zero_grad(set_to_none=True)
        torch.manual_seed(SEED)
        return self.model.train(train)


def build_subject(name: str) -> Subject:
    """Family ``name``'s model. ``fake`` is registered into a copy of the registry, dropped after the build:
    other tests expect the built-in families alone."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(registry, "_FAMILIES", dict(registry._FAMILIES))
        if name == "fake":
            import fake_family  # its first import registers it too, but another test may have imported it

            registry.register(fake_family.FAKE)
        torch.manual_seed(SEED)
        model = family_config(name).build(NUM_CLASSES, NUM_ATTRIBUTES, initial_weights=False)
    return Subject(name, model)
