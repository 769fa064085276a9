"""Configuration: every section of params.yaml as a typed, validated schema, and the one registry of them.

Stages read their sections here once (``load_section``) and pass plain values on.

Public names, imported on first use (docs/development.md, "Where a change goes").
"""

import lazy_loader

__getattr__, __dir__, __all__ = lazy_loader.attach(
    __name__,
    submod_attrs={
        "params": ["ParamsError", "ParamsSection", "load_section", "DataParams", "SyntheticParams", "PrepareParams",
                   "FoldsParams"],
        "literals": ["Device", "Grid", "MatchOn", "Precision"],
        "model": ["ModelParams", "MaskRCNNParams", "UNetParams", "YOLACTParams", "MASKRCNN_ARCHITECTURES"],
        "training": ["AugmentParams", "CacheParams", "TrainParams"],
        "inference": ["PredictParams", "PostprocessParams", "TuneParams", "EvaluateParams", "SubmissionParams"],
        "kaggle": ["KernelBuildParams", "SessionParams"],
        "shop": ["IndexParams", "SegmentParams", "FeatureKind", "FEATURE_KINDS"],
        "sections": ["SECTIONS", "STAGE_SECTIONS"],
        "tuned": ["Tuned", "load_tuned"],
    },
)
