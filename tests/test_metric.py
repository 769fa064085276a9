"""The competition metric: hand-computed cases and a brute-force reference on random cases."""

from __future__ import annotations

import numpy as np
import pycocotools.mask as coco_mask
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.metric import THRESHOLDS, class_score, evaluate, iou_matrix

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


def brute_force_class_score(predicted: list[np.ndarray], truth: list[np.ndarray]) -> float:
    """Independent reference: pixel IoU by boolean algebra, then at each threshold the same greedy matching."""
    if not predicted and not truth:
        return 1.0
    iou = np.zeros((len(predicted), len(truth)))
    for i, p in enumerate(predicted):
        for j, t in enumerate(truth):
            union = np.logical_or(p, t).sum()
            iou[i, j] = np.logical_and(p, t).sum() / union if union else 0.0
    precisions = []
    for threshold in THRESHOLDS:
        taken_p, taken_t, tp = set(), set(), 0
        for value, i, j in sorted(((iou[i, j], i, j) for i in range(len(predicted)) for j in range(len(truth))),
                                  key=lambda item: -item[0]):
            if value > 0.5 and i not in taken_p and j not in taken_t:
                taken_p.add(i)
                taken_t.add(j)
                tp += value > threshold
        precisions.append(tp / (len(predicted) + len(truth) - tp))
    return float(np.mean(precisions))


@st.composite
def masks(draw, count: int) -> list[np.ndarray]:
    out = []
    for _ in range(count):
        y0, x0 = draw(st.integers(0, 15)), draw(st.integers(0, 15))
        out.append(box(y0, y0 + draw(st.integers(1, 8)), x0, x0 + draw(st.integers(1, 8))))
    return out


@settings(max_examples=200, deadline=None)
@given(data=st.data(), n_pred=st.integers(0, 4), n_true=st.integers(0, 4))
def test_class_score_agrees_with_a_brute_force_reference(data, n_pred, n_true):
    truth = data.draw(masks(n_true))
    predicted = data.draw(masks(n_pred))
    # near-copies of true masks, so that matches at many IoU levels occur
    predicted += [t & box(0, 20, 0, data.draw(st.integers(1, 20))) for t in truth[: data.draw(st.integers(0, 2))]]
    predicted = [p for p in predicted if p.any()]
    expected = brute_force_class_score(predicted, truth)
    assert class_score(iou_matrix([rle(p) for p in predicted], [rle(t) for t in truth])) == pytest.approx(expected)
