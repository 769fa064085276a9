"""The YOLACT family: prototypes and per-anchor mask coefficients, Fast NMS; no compiled ops.

Public names, imported on first use (docs/development.md, "Where a change goes").
"""

import lazy_loader

__getattr__, __dir__, __all__ = lazy_loader.attach(
    __name__,
    submod_attrs={
        "network": ["FashionYOLACT", "build"],
        "anchors": ["AnchorMatch", "match_anchors"],
        "fast_nms": ["fast_nms", "pairwise_iou"],
        "losses": ["assemble_masks", "crop", "hard_negatives", "mask_loss", "semantic_loss"],
    },
)
