"""Inference: predictions with TTA, the raw prediction store, and post-processing into instances.

Public names, imported on first use (docs/development.md, "Where a change goes").
"""

import lazy_loader

__getattr__, __dir__, __all__ = lazy_loader.attach(
    __name__,
    submod_attrs={
        "predict": ["View", "make_views", "load_model", "predict_files", "prediction_key", "records_of",
                    "resolve_device"],
        "detections": ["Detections", "ImageRecord", "Instance"],
        "store": ["Made", "Predictions", "PredictionsError", "read", "write"],
        "postprocess": ["process_image", "predict_instances", "check_attribute_settings"],
        "masks": ["paste", "remove_overlaps"],
    },
)
