"""The validation report: the metric under default and tuned post-processing, with and without TTA,
the attribute policies compared, the attributes' quality per group, the validation predictions in
submission format, and a gallery of pictures."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.config.inference import PostprocessParams
from pipeline.config.literals import MatchOn
from pipeline.data import rle
from pipeline.data.attributes import group_f1, groups_of
from pipeline.data.labels import LabelSet
from pipeline.evaluation import metric
from pipeline.evaluation.gallery import Shape, render
from pipeline.evaluation.metric import Score
from pipeline.evaluation.scoring import Scorer, Truth, attributed
from pipeline.inference.detections import Detections, ImageRecord, Instance
from pipeline.inference.postprocess import process_image
from pipeline.submission import rows as submission
from pipeline.submission.encode import encoded_rows
from pipeline.utils.io import atomic_path
from pipeline.utils.paths import inside

# What the policy comparison reports, each applied to every attribute category: drop (the 2019 winner's),
# category only, predicted attributes.
POLICIES = ("drop", "category", "full")


def scores(scorer: Scorer, records: Sequence[ImageRecord], default: PostprocessParams, tuned: PostprocessParams,
           match_on: MatchOn) -> tuple[dict, Score]:
    """The metric for {default, tuned} x {TTA, plain view}, and per class for the tuned set as submitted.

    Returns the metrics and the full score of the submitted (tuned) set.
    """
    result: dict = {"match_on": match_on, "images": len(records)}
    for name, params in (("default", default), ("tuned", tuned)):
        for tta in (True, False):
            value = scorer(params.model_copy(update={"tta": tta}), records, match_on)
            result[f"{name}_{'tta' if tta else 'no_tta'}"] = round(value.score, 5)
    submitted = scorer(tuned, records, match_on)
    result["submitted"] = round(submitted.score, 5)
    result["submitted_category_match"] = round(scorer(tuned, records, "category").score, 5)
    result["per_class"] = {key: round(value, 5) for key, value in submitted.per_class.items()}
    return result, submitted


def policy_comparison(scorer: Scorer, records: Sequence[ImageRecord], tuned: PostprocessParams,
                      match_on: MatchOn) -> dict:
    """The metric under each policy for all attribute categories, and under the tuned per-category policy.

    On all images of the fold and on the images whose ground truth carries attributes (the
    regime of the competition's test set); everything else as tuned.
    """
    truth = scorer.truth
    result = {}
    for name, subset in (("all_images", list(records)), ("attributed_images", attributed(records, truth))):
        row: dict = {"images": len(subset)}
        if subset:
            for policy in POLICIES:
                same = tuned.model_copy(update={"attribute_policy": policy, "category_policy": {}})
                row[policy] = round(scorer(same, subset, match_on).score, 5)
            row["tuned"] = round(scorer(tuned, subset, match_on).score, 5)
        result[name] = row
    return result


def attribute_quality(detections: Mapping[str, Detections], records: Sequence[ImageRecord], tuned: PostprocessParams,
                      truth: Truth, labels: LabelSet) -> dict:
    """F1 per attribute group of the predicted sets, on true instances with attributes that were found.

    Post-processes as ``tuned`` but with policy ``full`` for every garment, so that each has its
    predicted set, and without the score threshold, so that the attributes of every garment the
    detector finds are judged. A true instance is found by the best-overlapping prediction of its
    category (mask IoU > 0.5, one-to-one); ``exact_set`` is the share of found instances whose
    whole set is right.
    """
    every_garment = tuned.model_copy(update={"attribute_policy": "full", "category_policy": {}, "score_thresh": 0.0})
    pairs, missed = [], 0
    for record in records:  # one image's masks at a time: without a score threshold they are many
        true = [(labels.parse(c), m) for c, m in truth[record.image_id] if "_" in c]
        if not true:
            continue
        instances = process_image(detections[record.image_id], record.height, record.width, every_garment, labels)
        found = [(labels.parse(i.class_id), metric.encode(i.mask)) for i in instances]
        used: set[int] = set()
        for class_id, mask in true:
            candidates = [k for k, (p, _) in enumerate(found) if p.category == class_id.category and k not in used]
            ious = metric.iou_matrix([found[k][1] for k in candidates], [mask])[:, 0] if candidates else np.zeros(0)
            if not len(ious) or ious.max() <= 0.5:
                missed += 1
                continue
            best = candidates[int(np.argmax(ious))]
            used.add(best)
            pairs.append((class_id.attributes, found[best][0].attributes))
    exact = float(np.mean([set(t) == set(p) for t, p in pairs])) if pairs else float("nan")
    return {"found": len(pairs), "missed": missed, "exact_set": round(exact, 4),
            "groups": group_f1(pairs, groups_of(labels))}


def write_val_submission(detections: Mapping[str, Detections], records: Sequence[ImageRecord],
                         params: PostprocessParams, labels: LabelSet, path: Path | str, workers: int) -> pd.DataFrame:
    """Validation predictions in the submission format, validated like a real submission; post-processed and
    encoded an image at a time, as stage submission does (``workers`` processes)."""
    frame = encoded_rows(detections, records, params, labels, workers)
    submission.write(frame, path, params.grids(records), labels)
    return frame


def _shape(class_id: str, mask: np.ndarray, labels: LabelSet, score: float | None = None) -> Shape:
    """A mask named as the pictures name it: the category's and attributes' short names, and the score."""
    parsed = labels.parse(class_id)
    name, details = labels.short_names(parsed)
    return Shape(parsed.category, name if score is None else f"{name} {score:.2f}", details, mask)


def write_gallery(folder: Path | str, image_dir: Path | str, truth_table: pd.DataFrame,
                  instances: Mapping[str, Sequence[Instance]], records: Sequence[ImageRecord],
                  per_image: Mapping[str, float], labels: LabelSet, long_side: int) -> list[Path]:
    """One PNG per image of ``records``: ground truth beside the submitted prediction, with names and scores."""
    with atomic_path(folder) as tmp:
        tmp.mkdir()
        written = []
        for number, record in enumerate(records):
            rows = truth_table[truth_table.image_id == record.image_id]
            truth = [_shape(str(r.class_id), rle.decode(r.rle, record.height, record.width), labels)
                     for r in rows.itertuples(index=False)]
            predicted = [_shape(i.class_id, i.mask, labels, i.score) for i in instances[record.image_id]]
            title = f"{record.image_id}  score {per_image.get(record.image_id, float('nan')):.3f}"
            name = f"{number:02d}_{Path(record.image_id).stem}.png"
            render(inside(image_dir, record.image_id, "ImageId"), truth, predicted, long_side, title).save(tmp / name)
            written.append(Path(folder) / name)
    return written


#: The columns of evaluate's image scores: the file a comparison resamples for its interval.
IMAGE_SCORE_COLUMNS = ("ImageId", "score")


def write_image_scores(path: Path | str, per_image: Mapping[str, float]) -> None:
    """Each validation image's score with the submitted post-processing; their mean is the fold's score."""
    frame = pd.DataFrame(sorted(per_image.items()), columns=list(IMAGE_SCORE_COLUMNS))
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)
