"""The evaluation of a family's validation predictions, as stage evaluate runs it: every score and picture.

The competition score with the default and the tuned post-processing, each with and without TTA, and the
submitted one; the attribute policies compared; the attributes' quality on the garments found; the Fashionpedia
mask AP and AP with attributes; the validation predictions as a submission file; a gallery of truth beside
prediction; each image's submitted score.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from pipeline.config.inference import EvaluateParams, PostprocessParams
from pipeline.data.labels import LabelSet
from pipeline.evaluation import report, scoring
from pipeline.evaluation.fashionpedia import fashionpedia_scores
from pipeline.inference.postprocess import predict_instances
from pipeline.inference.store import Predictions
from pipeline.utils.io import write_json


@dataclass(frozen=True)
class Outputs:
    """The files evaluation writes besides its metrics."""

    val_submission: Path  # the validation predictions in the submission format
    gallery: Path  # a folder of PNG pictures
    image_scores: Path | None = None  # each image's submitted score (stage compare's input)
    fashionpedia: Path | None = None  # the Fashionpedia scores as JSON (stage compare's input)


def evaluate(predictions: Predictions, instances: pd.DataFrame, images: Path, labels: LabelSet,
             default: PostprocessParams, tuned: PostprocessParams, params: EvaluateParams,
             outputs: Outputs) -> tuple[dict, int]:
    """The metrics of ``predictions`` (a validation folder) against ``instances``, the ground truth, and the number
    of rows of the validation submission; writes ``outputs``. ``images``: the original photos, for the gallery."""
    records, detections = predictions.images, predictions.by_image()
    truth = scoring.truth_on_grid(instances, records, tuned)
    with scoring.Scorer(detections, truth, labels, params.workers) as scorer:
        metrics, submitted = report.scores(scorer, records, default, tuned, params.match_on)
        metrics["attribute_policies"] = report.policy_comparison(scorer, records, tuned, params.match_on)
    if predictions.num_attributes:
        metrics["attributes"] = {"predicted": True,
                                 **report.attribute_quality(detections, records, tuned, truth, labels)}
    else:  # a family without attributes (the UNet): its ClassIds are the category alone
        metrics["attributes"] = {"predicted": False}
    metrics["fashionpedia"] = fashionpedia_scores(truth, detections, records, tuned, labels,
                                                  with_attributes=bool(predictions.num_attributes))
    frame = report.write_val_submission(detections, records, tuned, labels, outputs.val_submission, params.workers)
    shown = records[: params.gallery_images]
    report.write_gallery(outputs.gallery, images, instances, predict_instances(detections, shown, tuned, labels),
                         shown, submitted.per_image, labels, params.gallery_size)
    if outputs.image_scores:
        report.write_image_scores(outputs.image_scores, submitted.per_image)
    if outputs.fashionpedia:
        write_json(outputs.fashionpedia, metrics["fashionpedia"])
    return metrics, len(frame)
