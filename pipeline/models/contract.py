"""The seam between a model family and the rest of the pipeline: torchvision's detection-model contract.

Training, validation, TTA inference and the prediction store call a model only through this
contract, so a family is added by registering it (``pipeline.models.registry``), never by
editing them.

- ``model(images, targets)`` in train mode returns a dict of named scalar losses; the loop sums
  and logs them by name. ``images`` are float (3, h, w) tensors in [0, 1]; each target holds
  ``boxes`` (N, 4), ``labels`` (N,) (1-based categories, 0 is background), ``masks`` (N, h, w)
  and ``attributes`` (N, A) multi-hot.
- ``model(images)`` in eval mode returns, per image, ``boxes`` (N, 4) in the input image's
  pixels, ``labels`` (N,), ``scores`` (N,), ``masks`` (N, 1, M, M) probabilities laid out as
  ``model.mask_format`` says, and ``attributes`` (N, A) probabilities when ``model.num_attributes``
  is above 0.
- Images arrive at the size the family is to see them: the dataset and the TTA views fit them
  to the ``model`` section's ``min_size`` / ``max_size`` and scale them; a family does not resize again.
- ``model.attributes_of_boxes(images, boxes)`` (eval mode): the attribute probabilities of given
  boxes, e.g. the true ones, to judge the attributes apart from the detector. A family whose
  ``num_attributes`` is above 0 must have it (``BoxAttributes``; ``registry.ModelConfig.build`` checks).

Optional abilities, each a runtime-checkable protocol below that the pipeline tests with ``isinstance``:

- ``InstanceFeatures``: ``model.instance_features(images, boxes, masks)`` (eval mode; Mask R-CNN):
  named descriptors, (N, D) each, of given instances, for the catalogue of similar items (``pipeline.shop``).
- ``HasBackbone``: ``model.backbone``, the image-to-features module (Mask R-CNN, YOLACT: ResNet + FPN;
  the UNet: its encoder-decoder), which the speed options of ``pipeline.models.layout`` lay out
  channels-last and compile. It must be a class attribute (a property): from Python 3.12 ``isinstance``
  looks members up statically, and a submodule that ``nn.Module`` keeps in ``_modules`` is not found.
- ``InferenceCounts``: ``model.inference_counts``, a ``Counter`` of what eval mode kept and dropped (the
  UNet's connected components: ``kept``, ``dropped`` under ``unet.min_area``); predict reports it.
- ``PixelConfusion``: ``model.confusion(images, targets)``, the (C, C) pixel counts (truth by prediction)
  of a semantic family (the UNet), from which validation logs pixel accuracy and mean IoU.

Masks are box-relative maps rather than full-image ones: M*M bytes per detection instead of a
full-resolution image, and every post-processing choice (threshold, merge of views, output
grid) stays open without running the model again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol, runtime_checkable

if TYPE_CHECKING:
    from collections import Counter

    import torch
    from torch import nn

#: ``roi``: the map covers the box grown by one map pixel on each side and fades out there, as
#: Mask R-CNN's mask head and torchvision's ``paste_masks_in_image`` have it. ``crop``: the map
#: covers exactly the box (a full-image map cropped to each instance's box and resampled to M x M).
MaskKind = Literal["roi", "crop"]
MASK_KINDS: tuple[str, ...] = MaskKind.__args__


@dataclass(frozen=True)
class MaskFormat:
    """How a family's masks lie on their boxes; the prediction store records it in its manifest."""

    kind: MaskKind
    size: int  # M: each mask is M x M

    def __post_init__(self) -> None:
        if self.kind not in MASK_KINDS or self.size <= 0:
            raise ValueError(f"a mask format is one of {MASK_KINDS} with a positive size, got {self}")

    @property
    def padding(self) -> int:
        return mask_padding(self.kind)


def mask_padding(kind: MaskKind) -> int:
    """Map pixels outside the box on each side of a mask of this kind."""
    return 1 if kind == "roi" else 0


@runtime_checkable
class DetectionModel(Protocol):
    """What every family's model offers besides ``forward`` (see the module's docstring)."""

    mask_format: MaskFormat
    num_attributes: int

    def __call__(self, images: list[torch.Tensor], targets: list[dict] | None = None) -> dict | list[dict]: ...

    def train(self, mode: bool = True) -> DetectionModel: ...

    def eval(self) -> DetectionModel: ...


@runtime_checkable
class BoxAttributes(Protocol):
    """Attribute probabilities of given boxes, (N, num_attributes) per image: required with attributes."""

    def attributes_of_boxes(self, images: list[torch.Tensor], boxes: list[torch.Tensor]) -> list[torch.Tensor]: ...


@runtime_checkable
class InstanceFeatures(Protocol):
    """Named (N, D) descriptors of given instances (boxes and full-image masks), for similar-item search."""

    def instance_features(self, images: list[torch.Tensor], boxes: list[torch.Tensor],
                          masks: list[torch.Tensor]) -> dict[str, torch.Tensor]: ...


@runtime_checkable
class HasBackbone(Protocol):
    """The image-to-features module, which the speed options lay out channels-last and compile."""

    backbone: nn.Module


@runtime_checkable
class InferenceCounts(Protocol):
    """A ``Counter`` of what eval mode kept and dropped since it was last cleared."""

    inference_counts: Counter


@runtime_checkable
class PixelConfusion(Protocol):
    """The (C, C) pixel counts, truth by prediction, of a semantic family on a batch with its targets."""

    def confusion(self, images: list[torch.Tensor], targets: list[dict]) -> torch.Tensor: ...


#: Each optional ability by name (docs/models.md; the contract suite checks each on the families that have it).
ABILITIES: dict[str, type] = {"instance_features": InstanceFeatures, "backbone": HasBackbone,
                              "inference_counts": InferenceCounts, "confusion": PixelConfusion}
