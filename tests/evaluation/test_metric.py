"""The competition metric: hand-computed cases, and a reference written from the rules on random cases."""

from __future__ import annotations

import itertools

import numpy as np
import pycocotools.mask as coco_mask
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.evaluation.metric import THRESHOLDS, class_score, evaluate, iou_matrix

SIZE = (20, 20)


def rle(mask: np.ndarray) -> dict:
    return coco_mask.encode(np.asfortranarray(mask.astype(np.uint8)))


def box(y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    mask = np.zeros(SIZE, dtype=bool)
    mask[y0:y1, x0:x1] = True
    return mask


def test_thresholds_are_the_ten_of_the_competition():
    assert THRESHOLDS.tolist() == [0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95]


def test_perfect_prediction_scores_one():
    truth = {"a": [("1", rle(box(0, 5, 0, 5))), ("3_10_20", rle(box(8, 12, 0, 20)))]}
    assert evaluate(truth, truth).score == 1.0


def test_an_image_with_neither_truth_nor_prediction_scores_one():
    assert evaluate({"a": []}, {}).score == 1.0


def test_only_false_positives_or_only_misses_score_zero():
    truth = {"a": [], "b": [("1", rle(box(0, 5, 0, 5)))]}
    result = evaluate(truth, {"a": [("1", rle(box(0, 5, 0, 5)))]})
    assert result.per_image == {"a": 0.0, "b": 0.0}


def test_a_match_at_iou_072_passes_exactly_five_thresholds():
    true_mask = box(0, 10, 0, 10)  # 100 pixels
    predicted = np.zeros(SIZE, dtype=bool)
    predicted[0:8, 0:9] = True  # 72 pixels inside: IoU 0.72
    assert iou_matrix([rle(predicted)], [rle(true_mask)])[0, 0] == pytest.approx(0.72)
    result = evaluate({"a": [("5", rle(true_mask))]}, {"a": [("5", rle(predicted))]})
    assert result.score == pytest.approx(0.5)  # IoU > 0.50, 0.55, 0.60, 0.65, 0.70; not > 0.75


def test_two_classes_are_averaged_within_the_image():
    half = np.zeros(SIZE, dtype=bool)
    half[0:8, 0:9] = True
    truth = {"a": [("1", rle(box(0, 10, 0, 10))), ("2", rle(box(12, 20, 12, 20)))]}
    predicted = {"a": [("1", rle(half)), ("2", rle(box(12, 20, 12, 20)))]}
    result = evaluate(truth, predicted)
    assert result.per_class == {"1": pytest.approx(0.5), "2": 1.0}
    assert result.score == pytest.approx(0.75)


def test_attributes_must_match_unless_matching_on_category():
    truth = {"a": [("10_7_20", rle(box(0, 10, 0, 10)))]}
    predicted = {"a": [("10_7", rle(box(0, 10, 0, 10)))]}
    assert evaluate(truth, predicted).score == 0.0
    assert evaluate(truth, predicted, match_on="category").score == 1.0


def test_a_duplicate_prediction_is_a_false_positive():
    truth = {"a": [("1", rle(box(0, 10, 0, 10)))]}
    predicted = {"a": [("1", rle(box(0, 10, 0, 10))), ("1", rle(box(0, 10, 0, 9)))]}
    assert evaluate(truth, predicted).score == pytest.approx(0.5)


def test_predictions_for_unknown_images_are_an_error():
    with pytest.raises(ValueError, match="without ground truth"):
        evaluate({"a": []}, {"b": []})


def pixel_iou(predicted: list[np.ndarray], truth: list[np.ndarray]) -> np.ndarray:
    iou = np.zeros((len(predicted), len(truth)))
    for i, p in enumerate(predicted):
        for j, t in enumerate(truth):
            union = np.logical_or(p, t).sum()
            iou[i, j] = np.logical_and(p, t).sum() / union if union else 0.0
    return iou


def rules_class_score(predicted: list[np.ndarray], truth: list[np.ndarray]) -> float:
    """The metric read from its rules alone (docs/competition.md), nothing shared with pipeline.evaluation.metric.

    At each threshold t a prediction and a true mask match when their IoU exceeds t, each at most
    once; TP(t) is the largest number of such pairs, found by trying every one-to-one assignment of
    the smaller side to the larger.
    """
    if not predicted and not truth:
        return 1.0
    iou = pixel_iou(predicted, truth)
    if iou.shape[0] > iou.shape[1]:
        iou = iou.T
    precisions = []
    for threshold in THRESHOLDS:
        tp = max((sum(iou[i, j] > threshold for i, j in enumerate(assigned))
                  for assigned in itertools.permutations(range(iou.shape[1]), iou.shape[0])), default=0)
        precisions.append(tp / (len(predicted) + len(truth) - tp))
    return float(np.mean(precisions))


@st.composite
def masks(draw, count: int) -> list[np.ndarray]:
    out = []
    for _ in range(count):
        y0, x0 = draw(st.integers(0, 15)), draw(st.integers(0, 15))
        out.append(box(y0, y0 + draw(st.integers(1, 8)), x0, x0 + draw(st.integers(1, 8))))
    return out


def disjoint(masks_: list[np.ndarray]) -> list[np.ndarray]:
    """Each mask less the pixels of those before it: one class's true masks never share a pixel."""
    taken = np.zeros(SIZE, dtype=bool)
    out = []
    for mask in masks_:
        mask = mask & ~taken
        taken |= mask
        if mask.any():
            out.append(mask)
    return out


@settings(max_examples=300)
@given(data=st.data(), n_pred=st.integers(0, 4), n_true=st.integers(0, 4))
def test_class_score_agrees_with_the_rules_on_disjoint_truth(data, n_pred, n_true):
    """Greedy matching by IoU equals the best matching whenever true masks do not overlap (IoU > 0.5 puts
    more than half a prediction inside a true mask, so inside one at most). Predictions may overlap."""
    truth = disjoint(data.draw(masks(n_true)))
    predicted = data.draw(masks(n_pred))
    # near-copies of true masks and duplicates, so that matches at many IoU levels and contested ones occur
    predicted += [t & box(0, 20, 0, data.draw(st.integers(1, 20))) for t in truth[: data.draw(st.integers(0, 2))]]
    predicted += predicted[: data.draw(st.integers(0, 1))]
    predicted = [p for p in predicted if p.any()]
    expected = rules_class_score(predicted, truth)
    assert class_score(iou_matrix([rle(p) for p in predicted], [rle(t) for t in truth])) == pytest.approx(expected)


def test_where_greedy_and_the_best_matching_differ_both_sides_overlap():
    """Outside the competition's data: two true masks of one class that overlap, and overlapping predictions.
    A takes T1 (IoU 0.91) first; B, above 0.5 only with T1, is left out. Best: A-T2 (0.75), B-T1 (0.6)."""
    t1, t2 = box(0, 10, 0, 10), box(0, 10, 2, 12)
    a, b = box(0, 10, 0, 11), box(0, 10, 0, 6)
    iou = pixel_iou([a, b], [t1, t2])
    assert iou[0, 0] > iou[0, 1] > 0.5 and iou[1, 0] > 0.5 > iou[1, 1]
    greedy = class_score(iou_matrix([rle(a), rle(b)], [rle(t1), rle(t2)]))
    assert greedy < rules_class_score([a, b], [t1, t2])
