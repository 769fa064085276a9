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
from pipeline.models import registry
from pipeline.utils import checkpoint

#: What stage evaluate writes into each family's evaluation folder for the comparison.
IMAGE_SCORES = "image_scores.csv"


def compare(params_path: Path, submitted: str, run_root: Path, evaluation_root: Path,
            dataset: InstanceDataset, num_attributes: int, params: CompareParams, train: TrainParams,
            predict: PredictParams) -> dict[str, dict[str, Any]]:
    """Each family of ``params.families`` in a row (``pipeline.comparison.table.entry``), keyed by family;
    ``submitted`` (``model.family``) must be one of them.

    Reads ``<run_root>/<family>/best.pt`` (the validation record of its best epoch) and
    ``<evaluation_root>/<family>/image_scores.csv``; a missing one is a clear error naming the stage to run.
    Speed and memory are measured now, one family after the other, on ``dataset``'s first images.
    """
    if submitted not in params.families:
        raise ComparisonError(f"{params_path}: model.family {submitted!r} (the submission's) is not in "
                              f"compare.families {list(params.families)}")
    found = {}
    for family in params.families:  # every family's outputs first: a missing one fails before minutes of measuring
        best = run_root / family / checkpoint.BEST
        if not best.is_file():
            raise ComparisonError(f"{best}: missing: family {family!r} has not been trained "
                                  f"(dvc repro train@{family}, or add it to compare.families)")
        found[family] = best, image_scores(evaluation_root / family / IMAGE_SCORES, family)
    rows = {}
    for family, (best, scores) in tqdm(found.items(), desc="compare", unit="family"):
        record = checkpoint.load(best, remedy=f"rerun stage train@{family}")["score"]
        measured = measure(best, registry.load(params_path, family), num_attributes, dataset, params, train, predict)
        rows[family] = entry(family, scores, record, measured, params)
    return rows
