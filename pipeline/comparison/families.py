"""Compare the families of ``compare.families`` from their finished outputs: one row each."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tqdm import tqdm

from pipeline.comparison.speed import measure
from pipeline.comparison.table import ComparisonError, entry, image_scores
from pipeline.config.comparison import CompareParams
from pipeline.config.inference import PredictParams
from pipeline.config.training import TrainParams
from pipeline.data.dataset import InstanceDataset
from pipeline.inference.predict import checkpoint_path
from pipeline.models import registry
from pipeline.utils import checkpoint

#: The record of a run with no validation yet (``last.pt`` only).
UNVALIDATED = {"epoch": None, "mask_ap": None}

#: What stage evaluate writes into each family's evaluation folder for the comparison.
IMAGE_SCORES = "image_scores.csv"


def compare(params_path: Path, submitted: str, run_root: Path, evaluation_root: Path,
            dataset: InstanceDataset, num_attributes: int, params: CompareParams, train: TrainParams,
            predict: PredictParams) -> dict[str, dict[str, Any]]:
    """Each family of ``params.families`` in a row (``pipeline.comparison.table.entry``), keyed by family;
    ``submitted`` (``model.family``) must be one of them.

    Reads ``<run_root>/<family>/best.pt`` (the validation record of its best epoch) and
    ``<evaluation_root>/<family>/image_scores.csv``; a missing one is a clear error naming the stage to run.
    A run stopped by its time limit before its first validation (a Kaggle session's) has only ``last.pt``:
    it is compared as stage predict used it, with no best epoch and no mask AP.
    Speed and memory are measured now, one family after the other, on ``dataset``'s first images.
    """
    if submitted not in params.families:
        raise ComparisonError(f"{params_path}: model.family {submitted!r} (the submission's) is not in "
                              f"compare.families {list(params.families)}")
    found = {}
    for family in params.families:  # every family's outputs first: a missing one fails before minutes of measuring
        try:
            weights = checkpoint_path(run_root / family, "best", doing="comparing")
        except checkpoint.CheckpointError:
            raise ComparisonError(f"{run_root / family / checkpoint.BEST}: missing: family {family!r} has not been "
                                  f"trained (dvc repro train@{family}, or add it to compare.families)") from None
        found[family] = weights, image_scores(evaluation_root / family / IMAGE_SCORES, family)
    rows = {}
    for family, (weights, scores) in tqdm(found.items(), desc="compare", unit="family"):
        saved = checkpoint.load(weights, remedy=f"rerun stage train@{family}")
        record = saved.get("score") or UNVALIDATED
        measured = measure(weights, registry.load(params_path, family), num_attributes, dataset, params, train,
                           predict)
        rows[family] = entry(family, scores, record, measured, params)
    return rows
