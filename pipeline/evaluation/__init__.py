"""Evaluation: the competition metric, mask AP, the post-processing search, the report and the gallery.

Public names, imported on first use (docs/development.md, "Where a change goes").
"""

import lazy_loader

__getattr__, __dir__, __all__ = lazy_loader.attach(
    __name__,
    submod_attrs={
        "metric": ["Score", "evaluate", "image_scores"],
        "coco": ["mask_ap"],
        "search": ["Scorer", "SearchResult", "held_out_score"],
        "report": ["scores", "policy_comparison", "attribute_quality", "write_val_submission", "write_gallery"],
        "gallery": ["render"],
    },
)
