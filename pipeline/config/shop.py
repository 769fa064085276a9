"""Typed sections of params.yaml for segmenting photos and the catalogue of similar items (``pipeline.shop``)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from pipeline.config.literals import Device, Precision
from pipeline.config.params import ParamsSection

#: The catalogue's instance descriptors (``model.instance_features``): ``fpn_mask``, FPN features pooled in the box and
#: weighted by the mask; ``box_head``, the box head's representation; ``texture``, mean and spread of the finest
#: features inside the mask (``pipeline.models.families.maskrcnn.detector``).
FeatureKind = Literal["fpn_mask", "box_head", "texture"]
FEATURE_KINDS: tuple[str, ...] = FeatureKind.__args__


class SegmentParams(ParamsSection):
    """``stages.segment`` and ``stages.similar``: what a photo's items are drawn and encoded on."""

    max_side: int = Field(2048, ge=64, description="long side of the masks' grid: the photo's size, or scaled "
                                                   "down to this (a 50-megapixel photo's masks would take GBs)")
    device: Device = "auto"
    precision: Precision = "bf16"


class IndexParams(ParamsSection):
    """``stages.index``: the catalogue of the training folds' instances, and its evaluation on the validation fold."""

    family: str = Field("maskrcnn", description="the trained family whose features describe the instances")
    features: Literal["auto"] | FeatureKind = Field(
        "auto", description="auto: the descriptor that retrieves better on the validation fold")
    kind: Literal["flat", "ivf"] = Field("flat", description="flat: exact inner product; ivf: clustered, approximate")
    nlist: int = Field(1024, ge=1, description="ivf: clusters (about 4 sqrt(n) for n items)")
    nprobe: int = Field(16, ge=1, description="ivf: clusters searched per query")
    k: int = Field(8, ge=1, description="results per query, and the k of the evaluation's precision@k")
    batch_size: int = Field(4, ge=1)
    workers: int = Field(0, ge=0, description="DataLoader processes decoding images")
    device: Device = "auto"
    precision: Precision = "bf16"
    seed: int = 0
