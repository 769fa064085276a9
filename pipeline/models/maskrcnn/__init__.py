"""The Mask R-CNN family: torchvision's detector with an attribute head.

Public names, imported on first use (docs/development.md, "Where a change goes").
"""

import lazy_loader

__getattr__, __dir__, __all__ = lazy_loader.attach(
    __name__,
    submod_attrs={
        "detector": ["FashionMaskRCNN", "build", "PARAMETER_GROUPS"],
        "attribute_head": ["AttributeRoIHeads"],
    },
)
