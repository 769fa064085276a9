"""The ``model`` section (which family, at what input size) and each built-in family's own section.

Plain dataclasses, not pydantic models, so that the model builders and the benchmarks run on a
bare GPU box with torch alone; ``load_section`` validates them from params.yaml all the same.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

MaskRCNNArchitecture = Literal["maskrcnn_resnet50_fpn_v2", "maskrcnn_resnet50_fpn", "maskrcnn_resnet18_fpn"]
MASKRCNN_ARCHITECTURES: tuple[str, ...] = MaskRCNNArchitecture.__args__
FPN_LEVELS = 5  # P2-P5 and the max-pooled P6 of torchvision's FPN

DEFAULT_MASK_HEAD = (256, 256, 256, 256)
ResNetName = Literal["resnet18", "resnet34", "resnet50", "resnet101"]  # the UNet's encoder, YOLACT's backbone
UNET_DEPTH = 5  # a ResNet's five stride-2 stages: the decoder has one block per stage
YOLACT_LEVELS = 5  # P3-P7: the FPN on C3-C5 and two stride-2 convolutions above it


@dataclass(frozen=True)
class ModelParams:
    """The ``model`` section: the family (``pipeline.models.registry``) and the size images are fitted to.

    Every family sees images scaled so that the short side is ``min_size`` and the long side at
    most ``max_size``; the image cache and TTA resize to that, so it is shared, not a family's own.
    """

    __pydantic_config__ = {"extra": "forbid"}  # a misspelt key in params.yaml is an error

    family: str = "maskrcnn"
    min_size: int = 800
    max_size: int = 1333

    def __post_init__(self) -> None:
        if not 0 < self.min_size <= self.max_size:
            raise ValueError(f"need 0 < min_size <= max_size, got {self.min_size} and {self.max_size}")


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
    attribute_head: bool = True  # predict the attributes (pipeline.models.attribute_head)
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


@dataclass(frozen=True)
class UNetParams:
    """The ``unet`` section: a UNet with a sigmoid channel per category whose connected components become instances."""

    __pydantic_config__ = {"extra": "forbid"}

    encoder: ResNetName = "resnet18"
    encoder_weights: str = "none"  # none (from scratch) | path to a ResNet state dict, e.g. ImageNet's
    decoder_channels: tuple[int, ...] = (256, 128, 64, 32, 16)
    freeze_batchnorm: bool = False  # encoder BatchNorm -> FrozenBatchNorm2d (fine-tuning with small batches)
    dice_weight: float = 1.0  # on the Dice loss of the categories shown, beside binary cross-entropy (weight 1)
    pixel_threshold: float = 0.5  # a pixel shows a category where its channel's probability is above this
    min_area: int = 16  # components of fewer pixels, at the model's input size, are dropped and counted
    mask_size: int = 56  # side of the stored box-relative mask of each component

    def __post_init__(self) -> None:
        if len(self.decoder_channels) != UNET_DEPTH or min(self.decoder_channels) <= 0:
            raise ValueError(f"decoder_channels needs {UNET_DEPTH} positive channel counts, "
                             f"got {list(self.decoder_channels)}")
        if self.dice_weight < 0:
            raise ValueError(f"dice_weight must be >= 0, got {self.dice_weight}")
        if not 0 < self.pixel_threshold < 1:
            raise ValueError(f"pixel_threshold must be between 0 and 1, got {self.pixel_threshold}")
        if self.min_area < 1 or self.mask_size < 2:
            raise ValueError(f"min_area must be >= 1 and mask_size >= 2, got {self.min_area}, {self.mask_size}")


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
