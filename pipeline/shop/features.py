"""Instance descriptors for retrieval: the family's own features of an instance, L2-normalised."""

from __future__ import annotations

import numpy as np
import torch

from pipeline.config.shop import FEATURE_KINDS
from pipeline.models.contract import DetectionModel
from pipeline.utils.device import autocast
from pipeline.utils.errors import PipelineError


class FeaturesError(PipelineError):
    """A model that cannot describe instances."""


def require_features(model: DetectionModel, family: str) -> None:
    if not callable(getattr(model, "instance_features", None)):
        raise FeaturesError(f"family {family} has no instance features (pipeline.models.contract): build the "
                            "catalogue with a Mask R-CNN run (index.family: maskrcnn)")


@torch.inference_mode()
def embed(model: DetectionModel, images: list[torch.Tensor], boxes: list[torch.Tensor], masks: list[torch.Tensor],
          device: torch.device, precision: str = "fp32") -> dict[str, np.ndarray]:
    """Each kind's (N, D) float32 descriptors, unit length, of the instances of ``images`` (all on the model's input).

    Images are float (3, h, w) in [0, 1]; boxes (n_i, 4) and masks (n_i, h, w) in their pixels.
    An instance whose descriptor is zero (nothing to pool) stays zero.
    """
    model.eval()
    with autocast(device, precision):
        found = model.instance_features([i.to(device) for i in images], [b.to(device).float() for b in boxes],
                                        [m.to(device) for m in masks])
    return {kind: torch.nn.functional.normalize(found[kind].float(), dim=1).cpu().numpy() for kind in FEATURE_KINDS}
