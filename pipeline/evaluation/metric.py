"""The competition metric, as the winning team replicated it (docs/competition.md, "Metric").

For each image and each class present in the ground truth or the prediction: match predicted
to true masks by IoU; at each threshold t in 0.50, 0.55, ..., 0.95 a match needs IoU > t and
precision(t) = TP / (TP + FP + FN); the class score is the mean over the thresholds. The image
score is the mean over its classes; an image with neither truth nor prediction scores 1. The
final score is the mean over images.

"Class" is the whole ClassId string by default (category plus sorted attributes, as the
competition matched) or the category alone. Masks are COCO RLEs (pycocotools), all of one
image on one grid; IoUs of all pairs come from one ``pycocotools.mask.iou`` call.

Matching is one-to-one, greedily by decreasing IoU. For t >= 0.5 and masks that do not overlap
within a class (true masks never do; a valid submission's neither) every pair above t is
already unique, so the greedy choice changes nothing there; it only makes overlapping
predictions count once.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pycocotools.mask as coco_mask

from pipeline.config.literals import MatchOn

THRESHOLDS = np.round(np.arange(0.5, 0.96, 0.05), 2)

# (ClassId string, COCO RLE dict) for one mask.
Labelled = tuple[str, dict]


def encode(mask: np.ndarray) -> dict:
    """The COCO RLE of one binary (height, width) mask."""
    return encode_many(mask[None])[0]


def encode_many(masks: np.ndarray) -> list[dict]:
    """The COCO RLEs of binary (N, height, width) masks, in one call to pycocotools."""
    if not len(masks):
        return []
    return coco_mask.encode(np.asfortranarray(masks.astype(np.uint8).transpose(1, 2, 0)))


def class_key(class_id: str, match_on: MatchOn) -> str:
    """What two ClassIds must share to be matched: the whole string, or the category before the first ``_``."""
    return str(class_id) if match_on == "class_id" else str(class_id).split("_", 1)[0]


def iou_matrix(predicted: Sequence[dict], truth: Sequence[dict]) -> np.ndarray:
    """IoU of every predicted mask (rows) with every true mask (columns)."""
    if not predicted or not truth:
        return np.zeros((len(predicted), len(truth)))
    return np.asarray(coco_mask.iou(list(predicted), list(truth), [0] * len(truth)), dtype=np.float64)


def matches_per_threshold(iou: np.ndarray) -> np.ndarray:
    """True positives at each threshold under one-to-one matching by decreasing IoU."""
    pairs = np.argwhere(iou > THRESHOLDS[0])
    order = np.argsort(-iou[pairs[:, 0], pairs[:, 1]], kind="stable")
    used_rows, used_cols, matched = set(), set(), []
    for row, col in pairs[order]:
        if row not in used_rows and col not in used_cols:
            used_rows.add(row)
            used_cols.add(col)
            matched.append(iou[row, col])
    matched = np.asarray(matched)
    return (matched[None, :] > THRESHOLDS[:, None]).sum(axis=1)


def class_score(iou: np.ndarray) -> float:
    """Mean over the thresholds of TP / (TP + FP + FN) for one class of one image."""
    n_pred, n_true = iou.shape
    if n_pred == 0 and n_true == 0:
        return 1.0
    tp = matches_per_threshold(iou)
    return float(np.mean(tp / (n_pred + n_true - tp)))


def image_scores(truth: Sequence[Labelled], predicted: Sequence[Labelled], match_on: MatchOn = "class_id",
                 ) -> dict[str, float]:
    """Score of each class present in ``truth`` or ``predicted`` for one image (empty for an empty image)."""
    by_class: dict[str, tuple[list, list]] = defaultdict(lambda: ([], []))
    for class_id, rle in truth:
        by_class[class_key(class_id, match_on)][1].append(rle)
    for class_id, rle in predicted:
        by_class[class_key(class_id, match_on)][0].append(rle)
    return {key: class_score(iou_matrix(preds, trues)) for key, (preds, trues) in by_class.items()}


@dataclass(frozen=True)
class Score:
    score: float  # the leaderboard number: mean over images
    per_image: dict[str, float]
    per_class: dict[str, float]  # mean score of a class over the images where it occurs (truth or prediction)


def summarize(classes_per_image: Mapping[str, Mapping[str, float]]) -> Score:
    """The metric from each image's class scores (``image_scores``); an image without classes scores 1."""
    per_image, class_totals = {}, defaultdict(list)
    for image_id, classes in classes_per_image.items():
        per_image[image_id] = float(np.mean(list(classes.values()))) if classes else 1.0
        for key, value in classes.items():
            class_totals[key].append(value)
    per_class = {key: float(np.mean(values)) for key, values in sorted(class_totals.items())}
    score = float(np.mean(list(per_image.values()))) if per_image else 0.0
    return Score(score, per_image, per_class)


def evaluate(truth: Mapping[str, Sequence[Labelled]], predicted: Mapping[str, Sequence[Labelled]],
             match_on: MatchOn = "class_id") -> Score:
    """The metric over the images of ``truth``; predictions for images not in ``truth`` are an error."""
    unknown = set(predicted) - set(truth)
    if unknown:
        raise ValueError(f"predictions for {len(unknown)} image(s) without ground truth, e.g. {sorted(unknown)[0]}")
    return summarize({image_id: image_scores(truth[image_id], predicted.get(image_id, ()), match_on)
                      for image_id in truth})
