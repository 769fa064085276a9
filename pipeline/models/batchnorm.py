"""Freezing a pretrained network's BatchNorm, for fine-tuning with a few images per GPU.

With 2-4 images a GPU (the real data at 1024 px on a T4 or an H100) a batch's statistics are
too noisy to normalise by, and they would overwrite the ImageNet ones; frozen layers keep the
loaded statistics and affine weights. From random init they must train instead: frozen random
statistics never learn.
"""

from __future__ import annotations

from torch import nn
from torchvision.ops.misc import FrozenBatchNorm2d

from pipeline.models.weights import WeightsError


def require_weights(section: str, weights_key: str, weights: str) -> None:
    """Frozen BatchNorm keeps the statistics of the weights it is given: of a random init, which never learn.

    Checked when the model is built with its initial weights, not in params.yaml: a Kaggle session
    fills the weights path in after the params are read.
    """
    if weights == "none":
        raise WeightsError(f"{section}.freeze_batchnorm: true needs initial weights ({section}.{weights_key} is "
                           "none): frozen statistics of a random init never learn")


def freeze_batchnorm(module: nn.Module) -> None:
    """Replace every BatchNorm2d under ``module`` by a FrozenBatchNorm2d with the same statistics and weights.

    torchvision has no public helper for this; its builders choose the norm layer at construction,
    before the weights (loaded afterwards here) are known.
    """
    for name, child in module.named_children():
        if isinstance(child, nn.BatchNorm2d):
            frozen = FrozenBatchNorm2d(child.num_features, eps=child.eps)
            for key in ("weight", "bias", "running_mean", "running_var"):
                getattr(frozen, key).copy_(getattr(child, key).detach())
            setattr(module, name, frozen)
        else:
            freeze_batchnorm(child)
