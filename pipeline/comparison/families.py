"""Compare the families of ``compare.families`` from their finished outputs: one row each."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from pipeline.comparison.speed import measure
from pipeline.comparison.table import ComparisonError, entry, fashionpedia_scores, image_scores
from pipeline.config.comparison import CompareParams
from pipeline.config.inference import PredictParams
from pipeline.config.model import ModelParams
from pipeline.config.params import load_section
from pipeline.config.training import TrainParams
from pipeline.data.dataset import InstanceDataset
from pipeline.inference.trained import checkpoint_path
from pipeline.models import registry
from pipeline.utils import checkpoint

#: The record of a run with no validation yet (``last.pt`` only).
UNVALIDATED = {"epoch": None, "mask_ap": None}

#: What stage evaluate writes into each family's evaluation folder for the comparison.
IMAGE_SCORES = "image_scores.csv"
FASHIONPEDIA = "fashionpedia.json"


@dataclass(frozen=True)
class Settings:
    """The params sections the comparison reads: its own, and how the families were trained and predict."""

    params_path: Path
    model: ModelParams  # its family is the submission's
    compare: CompareParams
    train: TrainParams
    predict: PredictParams

    @classmethod
    def load(cls, params_path: Path) -> Settings:
        return cls(params_path, *(load_section(params_path, name, schema) for name, schema in (
            ("model", ModelParams), ("compare", CompareParams), ("train", TrainParams), ("predict", PredictParams))))


def compare(settings: Settings, run_root: Path, evaluation_root: Path, dataset: InstanceDataset,
            num_attributes: int) -> dict[str, dict[str, Any]]:
    """Each family of ``compare.families`` in a row (``pipeline.comparison.table.entry``), keyed by family;
    the submission's (``model.family``) must be one of them, and each must be a family of the registry.

    Reads ``<run_root>/<family>/best.pt`` (the validation record of its best epoch),
    ``<evaluation_root>/<family>/image_scores.csv`` and ``fashionpedia.json``; a missing one is a clear error
    naming the stage to run.
    A run stopped by its time limit before its first validation (a Kaggle session's) has only ``last.pt``:
    it is compared as stage predict used it, with no best epoch and no mask AP.
    Speed and memory are measured now, one family after the other, on ``dataset``'s first images.
    """
    params, submitted = settings.compare, settings.model.family
    if submitted not in params.families:
        raise ComparisonError(f"{settings.params_path}: model.family {submitted!r} (the submission's) is not in "
                              f"compare.families {list(params.families)}")
    for family in params.families:
        registry.family(family)  # an unknown name: the known families
    found = {}
    for family in params.families:  # every family's outputs first: a missing one fails before minutes of measuring
        try:
            weights = checkpoint_path(run_root / family, "best", doing="comparing")
        except checkpoint.CheckpointError:
            raise ComparisonError(f"{run_root / family / checkpoint.BEST}: missing: family {family!r} has not been "
                                  f"trained (dvc repro train@{family}, or add it to compare.families)") from None
        found[family] = (weights, image_scores(evaluation_root / family / IMAGE_SCORES, family),
                         fashionpedia_scores(evaluation_root / family / FASHIONPEDIA, family))
    rows = {}
    for family, (weights, scores, fashionpedia) in tqdm(found.items(), desc="compare", unit="family"):
        saved = checkpoint.load(weights, remedy=f"rerun stage train@{family}")
        record = saved.get("score") or UNVALIDATED
        measured = measure(weights, registry.load(settings.params_path, family), num_attributes, dataset, params,
                           settings.train, settings.predict)
        rows[family] = entry(family, scores, record, measured, params, fashionpedia)
    return rows
