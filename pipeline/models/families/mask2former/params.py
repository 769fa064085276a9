"""The ``mask2former`` section of params.yaml: the schema of the Mask2Former family's settings.

A plain dataclass, not a pydantic model, so that the model builders and the benchmarks run on a bare GPU box
with torch alone; ``load_section`` validates it from params.yaml all the same.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

#: The backbones the family builds in code: two ResNets (CPU runs) and the four Swins of the public
#: Mask2Former COCO checkpoints, with their shapes (docs/models.md, "Mask2Former").
Mask2FormerBackbone = Literal["resnet18", "resnet50", "swin-tiny", "swin-small", "swin-base", "swin-large"]
MASK2FORMER_BACKBONES: tuple[str, ...] = Mask2FormerBackbone.__args__


@dataclass(frozen=True)
class Mask2FormerParams:
    """The ``mask2former`` section: Mask2Former (Cheng et al., CVPR 2022) with an attribute head on its queries.

    The defaults are the paper's COCO instance model on a ResNet-50 (100 queries, 9 decoder layers and the
    first prediction, 12,544 sampled points, loss weights 2 / 5 / 5); params.yaml sets the CPU demo.
    """

    __pydantic_config__ = {"extra": "forbid"}

    backbone: Mask2FormerBackbone = "resnet50"
    weights: str = "none"  # none (from scratch) | a local folder or file of Mask2Former weights (Hugging Face's)
    freeze_batchnorm: bool = False  # the ResNet's BatchNorm frozen (fine-tuning with a few images per GPU)
    num_queries: int = 100
    hidden_dim: int = 256  # width of the pixel decoder and the transformer decoder
    encoder_layers: int = 6  # deformable-attention layers of the pixel decoder
    decoder_layers: int = 10  # masked-attention layers of the transformer decoder, plus one (its first prediction)
    num_heads: int = 8
    encoder_feedforward_dim: int = 1024
    decoder_feedforward_dim: int = 2048
    train_num_points: int = 12544  # points sampled per mask for the matching cost and the mask losses
    class_weight: float = 2.0
    mask_weight: float = 5.0
    dice_weight: float = 5.0
    no_object_weight: float = 0.1  # on the cross-entropy of queries matched to nothing
    attribute_head: bool = True  # predict the attributes from each query's embedding
    attribute_weight: float = 2.0  # on the mean binary cross-entropy over the attributes of matched queries
    score_threshold: float = 0.0  # class probability x mask score below which a detection is dropped
    max_detections: int = 100  # the best (query, category) pairs kept per image
    mask_size: int = 64  # side of each detection's stored box-relative mask: at least max_size / 4 loses nothing

    def __post_init__(self) -> None:
        counts = {"num_queries": self.num_queries, "encoder_layers": self.encoder_layers,
                  "decoder_layers": self.decoder_layers - 1, "num_heads": self.num_heads,
                  "encoder_feedforward_dim": self.encoder_feedforward_dim,
                  "decoder_feedforward_dim": self.decoder_feedforward_dim, "train_num_points": self.train_num_points,
                  "max_detections": self.max_detections, "mask_size": self.mask_size - 1}
        if bad := [k for k, v in counts.items() if v <= 0]:
            raise ValueError(f"must be positive (decoder_layers and mask_size at least 2): {', '.join(bad)}")
        if self.hidden_dim <= 0 or self.hidden_dim % self.num_heads:
            raise ValueError(f"hidden_dim must be a positive multiple of num_heads, got {self.hidden_dim} and "
                             f"{self.num_heads}")
        weights = ("class_weight", "mask_weight", "dice_weight", "no_object_weight", "attribute_weight")
        if bad := [k for k in weights if getattr(self, k) < 0]:
            raise ValueError(f"loss weights must be >= 0: {', '.join(bad)}")
        if not 0 <= self.score_threshold < 1:
            raise ValueError(f"score_threshold must be in [0, 1), got {self.score_threshold}")
        if self.freeze_batchnorm and not self.backbone.startswith("resnet"):
            raise ValueError(f"freeze_batchnorm is for a ResNet backbone; {self.backbone} has LayerNorm")
