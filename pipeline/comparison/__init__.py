"""The comparison of model families: speed, size and memory measured alike, scores with their intervals.

Public names, imported on first use (docs/development.md, "Where a change goes").
"""

import lazy_loader

__getattr__, __dir__, __all__ = lazy_loader.attach(
    __name__,
    submod_attrs={
        "families": ["compare", "IMAGE_SCORES"],
        "speed": ["Measurement", "measure"],
        "table": ["ComparisonError", "entry", "markdown", "chart", "write"],
    },
)
