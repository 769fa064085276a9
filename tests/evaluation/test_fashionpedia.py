"""The Fashionpedia evaluation (the official ``FPEval``) on hand cases whose answers are known."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.data.labels import load_labels
from pipeline.evaluation import fashionpedia
from pipeline.evaluation.fashionpedia import SUMMARY, evaluate

LABELS = load_labels()
SIZE = (40, 60)
GARMENT = 0  # a category with attributes in both label sets (shirt, blouse)
PART = 31  # sleeve: a part without attributes here (Fashionpedia's has some); none on either side is an F1 of 1


def _mask(y0: int, x0: int, y1: int, x1: int) -> np.ndarray:
    mask = np.zeros(SIZE, bool)
    mask[y0:y1, x0:x1] = True
    return mask


def _dataset(*instances: tuple[int, tuple[int, ...], np.ndarray]) -> dict:
    truths = []
    for number, (category, attributes, mask) in enumerate(instances, start=1):
        rle = fashionpedia._encoded(mask)
        truths.append({"image_id": 1, "category_id": category, "attribute_ids": list(attributes), "segmentation": rle,
                       "id": number, "iscrowd": 0, "area": float(mask.sum()), "bbox": [0, 0, 1, 1]})
    return {"images": [{"id": 1, "height": SIZE[0], "width": SIZE[1]}], "annotations": truths,
            "categories": [{"id": c.id, "name": c.name} for c in LABELS.categories],
            "attributes": [{"id": a.id, "name": a.name} for a in LABELS.attributes]}


def _detected(category: int, attributes: tuple[int, ...], mask: np.ndarray, score: float = 0.9) -> dict:
    return {"image_id": 1, "category_id": category, "attribute_ids": list(attributes),
            "segmentation": fashionpedia._encoded(mask), "score": score}


SHIRT = (GARMENT, (7, 20), _mask(5, 5, 35, 30))
SLEEVE = (PART, (), _mask(10, 35, 30, 55))


def test_a_perfect_prediction_scores_1_with_and_without_attributes():
    scores = evaluate(_dataset(SHIRT, SLEEVE), [_detected(*SHIRT), _detected(*SLEEVE)])
    assert set(scores) == set(SUMMARY)
    assert scores == pytest.approx(dict.fromkeys(SUMMARY, 1.0))


def test_a_right_mask_with_wrong_attributes_scores_on_iou_not_on_iou_and_f1():
    wrong = (GARMENT, (0, 1, 2), SHIRT[2])
    scores = evaluate(_dataset(SHIRT), [_detected(*wrong)])
    assert scores["mask_ap"] == pytest.approx(1.0)
    assert scores["ap_iou_f1"] == pytest.approx(0.0)


def test_a_part_without_attributes_scores_on_iou_alone():
    scores = evaluate(_dataset(SLEEVE), [_detected(*SLEEVE)])
    assert scores["mask_ap"] == scores["ap_iou_f1"] == pytest.approx(1.0)


def test_ap_counts_the_iou_thresholds_a_mask_passes():
    # 20 x 20 true, 20 x 24 predicted over it: IoU 400 / 480 = 0.833, above 0.50 ... 0.80 (7 of 10 thresholds)
    truth, shifted = (PART, (), _mask(10, 10, 30, 30)), (PART, (), _mask(10, 10, 30, 34))
    scores = evaluate(_dataset(truth), [_detected(*shifted)])
    assert scores["mask_ap"] == pytest.approx(0.7, abs=1e-3)
    assert scores["mask_ap50"] == pytest.approx(1.0) and scores["mask_ap75"] == pytest.approx(1.0)


def test_no_detection_scores_0_and_numpy_is_left_as_it_was():
    scores = evaluate(_dataset(SHIRT), [])
    assert scores["mask_ap"] == 0.0 and scores["ap_iou_f1"] == 0.0
    assert "float" not in np.__dict__, "the evaluator's np.float alias is removed after the call"


def _store_case(attributes: tuple[int, ...]):
    """One 40 x 60 image's truth (a shirt with attributes 7 and 10, a sleeve) and detections of both on their
    exact boxes (``crop`` masks filling them) whose garment carries ``attributes`` with probability 1."""
    from pipeline.config.inference import PostprocessParams
    from pipeline.config.params import load_section
    from pipeline.evaluation import metric
    from pipeline.inference.detections import Detections, ImageRecord

    params = load_section("params.yaml", "postprocess", PostprocessParams).model_copy(update={"grid": "native"})
    record = ImageRecord("a.jpg", *SIZE)
    shirt, sleeve = _mask(5, 5, 35, 30), _mask(10, 35, 30, 55)
    truth = {"a.jpg": [("0_7_10", metric.encode(shirt)), ("31", metric.encode(sleeve))]}
    probabilities = np.zeros((2, 92), np.uint8)
    probabilities[0, list(attributes)] = 255
    boxes, scores = np.array([[5, 5, 30, 35], [35, 10, 55, 30]], np.float32), np.array([0.9, 0.8], np.float32)
    detections = Detections(boxes, scores, np.array([GARMENT, PART], np.int16), np.zeros(2, np.int8),
                            np.full((2, 16, 16), 255, np.uint8), probabilities, "crop", 1)
    return truth, {"a.jpg": detections}, [record], params


def test_the_adapter_scores_the_pipelines_own_perfect_predictions_1_and_wrong_attributes_on_iou_alone():
    scores = fashionpedia.fashionpedia_scores(*_store_case((7, 10)), LABELS, with_attributes=True)
    assert scores["mask_ap"] == pytest.approx(1.0) and scores["ap_iou_f1"] == pytest.approx(1.0)
    assert scores["images"] == scores["attributed_images"] == 1
    wrong = fashionpedia.fashionpedia_scores(*_store_case((0, 11)), LABELS, with_attributes=True)
    assert wrong["mask_ap"] == pytest.approx(1.0)
    assert wrong["ap_iou_f1"] == pytest.approx(0.5), "the sleeve (no attributes) still counts; the shirt does not"


def test_the_adapter_ranks_every_detection_whatever_the_tuned_thresholds():
    truth, detections, records, params = _store_case((7, 10))
    strict = params.model_copy(update={"score_thresh": 0.95, "max_detections": 1, "min_area": 10_000})
    found = fashionpedia.fashionpedia_scores(truth, detections, records, strict, LABELS, with_attributes=True)
    assert found["mask_ap"] == pytest.approx(1)


def test_attributes_are_judged_on_the_images_that_have_them_and_not_for_a_family_without_any():
    """A garment whose annotation has no attributes is unannotated: an image of such garments alone is left out of
    AP with attributes, where the evaluator would refuse every detection naming one."""
    from pipeline.evaluation import metric
    from pipeline.inference.detections import ImageRecord

    truth, detections, records, params = _store_case((7, 10))
    truth["b.jpg"] = [("0", metric.encode(_mask(5, 5, 35, 30)))]  # the same shirt, its attributes not annotated
    detections["b.jpg"] = detections["a.jpg"].select(np.array([True, False]))
    records = [*records, ImageRecord("b.jpg", *SIZE)]
    found = fashionpedia.fashionpedia_scores(truth, detections, records, params, LABELS, with_attributes=True)
    assert found["images"] == 2 and found["attributed_images"] == 1
    assert found["mask_ap"] == pytest.approx(1.0) and found["ap_iou_f1"] == pytest.approx(1.0)
    plain = fashionpedia.fashionpedia_scores(truth, detections, records, params, LABELS, with_attributes=False)
    assert plain["mask_ap"] == pytest.approx(1.0) and plain["attributed_images"] == 0
    assert plain["ap_iou_f1"] is plain["ap_iou50_f1"] is plain["ap_iou75_f1"] is None
