"""The ``maskrcnn`` section of params.yaml: the schema of the Mask R-CNN family's settings.

A plain dataclass, not a pydantic model, so that the model builders and the benchmarks run on a bare GPU box
with torch alone; ``load_section`` validates it from params.yaml all the same.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

MaskRCNNArchitecture = Literal["maskrcnn_resnet50_fpn_v2", "maskrcnn_resnet50_fpn", "maskrcnn_resnet18_fpn"]
MASKRCNN_ARCHITECTURES: tuple[str, ...] = MaskRCNNArchitecture.__args__
FPN_LEVELS = 5  # P2-P5 and the max-pooled P6 of torchvision's FPN
DEFAULT_MASK_HEAD = (256, 256, 256, 256)


@dataclass(frozen=True)
class MaskRCNNParams:
    """The ``maskrcnn`` section: architecture, initial weights, RoI budgets, mask and attribute heads."""

    __pydantic_config__ = {"extra": "forbid"}

    architecture: MaskRCNNArchitecture
    weights: str = "none"  # none | torchvision | path to a checkpoint or state dict
    trainable_backbone_layers: int = 5
    freeze_batchnorm: bool = False  # backbone BatchNorm -> FrozenBatchNorm2d (fine-tuning with small batches)
    anchor_sizes: tuple[int, ...] = (32, 64, 128, 256, 512)
    aspect_ratios: tuple[float, ...] = (0.5, 1.0, 2.0)
    rpn_pre_nms_top_n_train: int = 2000
    rpn_post_nms_top_n_train: int = 2000
    rpn_pre_nms_top_n_test: int = 1000
    rpn_post_nms_top_n_test: int = 1000
    rpn_batch_size_per_image: int = 256
    box_batch_size_per_image: int = 512
    box_detections_per_img: int = 100
    box_score_thresh: float = 0.05
    # Conv channels of the mask head; torchvision's is four of 256. On a CPU a lighter head pays:
    # each positive RoI costs 0.9 GFLOPs forward in the default head, 0.17 in two of 128.
    mask_head_layers: tuple[int, ...] = DEFAULT_MASK_HEAD
    attribute_head: bool = True  # predict the attributes (its attribute_head module)
    attribute_loss_weight: float = 5.0  # on the mean binary cross-entropy over attributes

    def __post_init__(self) -> None:
        if not 0 <= self.trainable_backbone_layers <= 5:
            raise ValueError(f"trainable_backbone_layers must be 0-5, got {self.trainable_backbone_layers}")
        if len(self.anchor_sizes) != FPN_LEVELS or min(self.anchor_sizes) <= 0:
            raise ValueError(f"anchor_sizes needs {FPN_LEVELS} positive sizes (one per FPN level), "
                             f"got {list(self.anchor_sizes)}")
        if not self.mask_head_layers or min(self.mask_head_layers) <= 0:
            raise ValueError(f"mask_head_layers must be positive channel counts, got {list(self.mask_head_layers)}")
        if self.attribute_loss_weight < 0:
            raise ValueError(f"attribute_loss_weight must be >= 0, got {self.attribute_loss_weight}")
        if not self.aspect_ratios or min(self.aspect_ratios) <= 0:
            raise ValueError(f"aspect_ratios must be positive, got {list(self.aspect_ratios)}")
        counts = {k: v for k, v in asdict(self).items() if k.startswith(("rpn_", "box_")) and k != "box_score_thresh"}
        if bad := [k for k, v in counts.items() if v <= 0]:
            raise ValueError(f"must be positive: {', '.join(bad)}")
