"""The one registry of params.yaml's sections: each name with the schema that validates it."""

from __future__ import annotations

from pipeline.config.comparison import CompareParams
from pipeline.config.inference import (
    EvaluateParams,
    PostprocessParams,
    PredictParams,
    SubmissionParams,
    TuneParams,
)
from pipeline.config.kaggle import KernelBuildParams, SessionParams
from pipeline.config.model import ModelParams
from pipeline.config.params import DataParams, FoldsParams, PrepareParams, SyntheticParams
from pipeline.config.shop import IndexParams, SegmentParams
from pipeline.config.training import AugmentParams, CacheParams, TrainParams

#: The sections the pipeline's stages read (a Kaggle notebook session reads these too), besides each model family's
#: own section, named like the family, whose schema is the family's (``pipeline.models.registry.sections``).
STAGE_SECTIONS: dict[str, type] = {
    "data": DataParams, "synthetic": SyntheticParams, "prepare": PrepareParams, "folds": FoldsParams,
    "model": ModelParams, "augment": AugmentParams, "cache": CacheParams, "train": TrainParams,
    "predict": PredictParams, "postprocess": PostprocessParams, "tune": TuneParams, "submission": SubmissionParams,
    "evaluate": EvaluateParams, "segment": SegmentParams, "index": IndexParams, "compare": CompareParams,
    "kaggle_session": SessionParams,
}
#: The sections above and the one ``make kaggle-kernel`` reads when building (the families' come from the registry).
SECTIONS: dict[str, type] = {**STAGE_SECTIONS, "kaggle_kernel": KernelBuildParams}
