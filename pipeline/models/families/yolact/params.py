"""The ``yolact`` section of params.yaml: the schema of the YOLACT family's settings.

A plain dataclass, not a pydantic model, so that the model builders and the benchmarks run on a bare GPU box
with torch alone; ``load_section`` validates it from params.yaml all the same.
"""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.config.literals import ResNetName

YOLACT_LEVELS = 5  # P3-P7: the FPN on C3-C5 and two stride-2 convolutions above it


@dataclass(frozen=True)
class YOLACTParams:
    """The ``yolact`` section: YOLACT (Bolya et al., ICCV 2019) as docs/models.md describes it.

    The defaults are the paper's (ResNet-50, 32 prototypes, anchors for 550 px); params.yaml sets the CPU demo.
    The input size is the ``model`` section's, shared by all families.
    """

    __pydantic_config__ = {"extra": "forbid"}

    backbone: ResNetName = "resnet50"
    weights: str = "none"  # none (from scratch) | path to a ResNet state dict (ImageNet's) or a detector's checkpoint
    freeze_batchnorm: bool = False  # backbone BatchNorm frozen (the reference does below 6 images per GPU)
    prototypes: int = 32  # k
    anchor_sizes: tuple[int, ...] = (24, 48, 96, 192, 384)  # one per level P3-P7, in input pixels
    aspect_ratios: tuple[float, ...] = (1.0, 0.5, 2.0)  # height / width
    positive_iou: float = 0.5  # anchors at or above it are matched to the box
    negative_iou: float = 0.4  # anchors below it are background; those in between are ignored
    negatives_per_positive: int = 3  # online hard-negative mining
    masks_to_train: int = 100  # per image, chosen at random among the positives
    min_box_fraction: float = 4 / 550  # true boxes narrower or lower than this fraction of the image are not trained
    class_weight: float = 1.0
    box_weight: float = 1.5
    mask_weight: float = 6.125
    semantic_weight: float = 1.0
    attribute_weight: float = 5.0  # on the mean binary cross-entropy of the attribute branch (0 trains it not)
    attribute_branch: bool = True  # predict the attributes beside the mask coefficients
    score_threshold: float = 0.05
    nms_iou: float = 0.5
    nms_top_k: int = 200  # per class, before Fast NMS
    max_detections: int = 100
    mask_size: int = 56  # side of each detection's stored box-relative mask

    def __post_init__(self) -> None:
        if len(self.anchor_sizes) != YOLACT_LEVELS or min(self.anchor_sizes) <= 0:
            raise ValueError(f"anchor_sizes needs {YOLACT_LEVELS} positive sizes (one per level P3-P7), "
                             f"got {list(self.anchor_sizes)}")
        if not self.aspect_ratios or min(self.aspect_ratios) <= 0:
            raise ValueError(f"aspect_ratios must be positive, got {list(self.aspect_ratios)}")
        if not 0 < self.negative_iou <= self.positive_iou <= 1:
            raise ValueError(f"need 0 < negative_iou <= positive_iou <= 1, got {self.negative_iou}, "
                             f"{self.positive_iou}")
        counts = {"prototypes": self.prototypes, "negatives_per_positive": self.negatives_per_positive,
                  "masks_to_train": self.masks_to_train, "nms_top_k": self.nms_top_k,
                  "max_detections": self.max_detections, "mask_size": self.mask_size - 1}
        if bad := [k for k, v in counts.items() if v <= 0]:
            raise ValueError(f"must be positive (mask_size at least 2): {', '.join(bad)}")
        weights = ("class_weight", "box_weight", "mask_weight", "semantic_weight", "attribute_weight")
        if bad := [k for k in weights if getattr(self, k) < 0]:
            raise ValueError(f"loss weights must be >= 0: {', '.join(bad)}")
        if not 0 <= self.score_threshold < 1 or not 0 < self.nms_iou <= 1 or not 0 <= self.min_box_fraction < 1:
            raise ValueError("need 0 <= score_threshold < 1, 0 < nms_iou <= 1 and 0 <= min_box_fraction < 1")
