"""The UNet family: a UNet with a sigmoid channel per category whose connected components are the instances.

Public names, imported on first use (docs/development.md, "Where a change goes").
"""

import lazy_loader

__getattr__, __dir__, __all__ = lazy_loader.attach(
    __name__,
    submod_attrs={
        "network": ["FashionUNet", "build", "category_targets", "top_category"],
        "components": ["Components", "instances"],
    },
)
