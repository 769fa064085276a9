"""Scoring saved predictions and searching post-processing params."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipeline.config.inference import PostprocessParams, TuneParams
from pipeline.data import rle
from pipeline.data.labels import load_labels
from pipeline.evaluation import scoring
from pipeline.evaluation import search as tuning
from pipeline.inference.detections import Detections, ImageRecord

START = PostprocessParams(tta=True, score_thresh=0.1, nms_iou=0.5, mask_thresh=0.5, min_area=0, max_detections=100,
                          attribute_policy="category", grid="native")
TUNE = TuneParams(tta=(True, False), score_thresh=(0.1, 0.2, 0.4, 0.6), nms_iou=(0.5,), mask_thresh=(0.5,),
                  min_area=(0,), max_detections=(100,), attribute_thresh=(0.5,), attribute_policy=("category", "drop"),
                  rounds=2, max_images=100)
LABELS = load_labels()
FULL = np.full((28, 28), 255, np.uint8)


def square(top: int, left: int, size: int, height: int = 64, width: int = 64) -> np.ndarray:
    mask = np.zeros((height, width), bool)
    mask[top : top + size, left : left + size] = True
    return mask


def scene(n_images: int = 6):
    """Each image: one true object of category 5 found at score 0.9, and a false positive of category 7 at 0.3."""
    records = [ImageRecord(f"{k}.jpg", 64, 64) for k in range(n_images)]
    rows, detections = [], {}
    for r in records:
        rows.append({"image_id": r.image_id, "height": 64, "width": 64, "class_id": "5", "category": 5,
                     "rle": rle.encode(square(10, 10, 20))})
        detections[r.image_id] = Detections(np.array([[10, 10, 30, 30], [40, 40, 60, 60]], np.float32),
                                            np.array([0.9, 0.3], np.float32), np.array([5, 7], np.int16),
                                            np.array([0, 0], np.int8), np.stack([FULL, FULL]),
                                            np.zeros((2, 92), np.uint8), "roi", 1)
    return records, detections, pd.DataFrame(rows)


def test_the_search_finds_the_threshold_that_removes_the_false_positive():
    records, detections, table = scene()
    scorer = scoring.Scorer(detections, scoring.truth_on_grid(table, records, START), LABELS)
    start = scorer(START, records, "class_id").score
    assert start == pytest.approx(0.5), "one true positive and one false positive per image"
    found = tuning.search(scorer, records, START, TUNE, LABELS)
    assert found.start_score == pytest.approx(start)
    assert found.params.score_thresh == 0.4 and found.score == pytest.approx(1.0)
    assert found.params.tta is True and found.params.category_policy == {}, "ties keep the current value"
    assert found.policy_images == 0, "no image carries attributes"
    held_out, held_out_policy = tuning.held_out_score(scorer, records, START, TUNE, LABELS)
    assert held_out == pytest.approx(1.0) and held_out_policy is None


def test_the_threshold_phase_never_ends_below_its_start():
    records, detections, table = scene()
    scorer = scoring.Scorer(detections, scoring.truth_on_grid(table, records, START), LABELS)
    worse = TUNE.model_copy(update={"score_thresh": (0.95,), "attribute_policy": ("drop",)})
    found = tuning.search(scorer, records, START, worse, LABELS)
    assert found.thresholds_score == found.score == found.start_score and found.params.score_thresh == 0.1


def garment_scene(n_attributed: int, n_plain: int):
    """A dress (category 10) on every image, found at 0.9 with attributes 5 and 20 at probability 0.9.

    On the first ``n_attributed`` images the truth is ``10_5_20``; on the others it is ``10`` (annotated
    without attributes, as 80 % of the real training images are).
    """
    records = [ImageRecord(f"{k}.jpg", 64, 64) for k in range(n_attributed + n_plain)]
    rows, detections = [], {}
    probabilities = np.zeros((1, 92), np.uint8)
    probabilities[0, [5, 20]] = 230
    for k, r in enumerate(records):
        attributed = k < n_attributed
        rows.append({"image_id": r.image_id, "height": 64, "width": 64, "class_id": "10_5_20" if attributed else "10",
                     "category": 10, "rle": rle.encode(square(10, 10, 20))})
        detections[r.image_id] = Detections(np.array([[10, 10, 30, 30]], np.float32), np.array([0.9], np.float32),
                                            np.array([10], np.int16), np.array([0], np.int8), FULL[None].copy(),
                                            probabilities.copy(), "roi", 1)
    return records, detections, pd.DataFrame(rows)


def test_the_attribute_phase_gains_on_its_images_and_may_cost_on_all():
    """Tuned on the 2 attributed images, ``full`` wins there (0 -> 1) and loses the 4 others (1 -> 0)."""
    records, detections, table = garment_scene(2, 4)
    scorer = scoring.Scorer(detections, scoring.truth_on_grid(table, records, START), LABELS)
    found = tuning.search(scorer, records, START, TUNE.model_copy(update={"attribute_policy": ("category", "full")}),
                          LABELS)
    assert found.policy_images == 2 and found.params.category_policy == {10: "full"}
    assert (found.policy_start_score, found.policy_score) == (pytest.approx(0.0), pytest.approx(1.0))
    assert found.thresholds_score == pytest.approx(found.start_score) == pytest.approx(4 / 6)
    assert found.score == pytest.approx(2 / 6), "below the start on all images: reported, not hidden"
    on_all = tuning.search(scorer, records, START, TUNE.model_copy(update={
        "attribute_policy": ("category", "full"), "policy_images": "all"}), LABELS)
    assert on_all.params.category_policy == {} and on_all.score == pytest.approx(4 / 6), "tuned on all, it keeps"


def test_truth_is_resized_to_the_submission_grid():
    records, _, table = scene(1)
    truth = scoring.truth_on_grid(table, records, START.model_copy(update={"grid": "128x256"}))
    ((class_id, encoded),) = truth["0.jpg"]
    assert class_id == "5" and encoded["size"] == [128, 256]
    from pycocotools import mask as coco_mask

    assert coco_mask.area(encoded) == 40 * 80


def test_a_sample_is_seeded_and_keeps_the_order():
    records = [ImageRecord(f"{k}.jpg", 1, 1) for k in range(50)]
    first, again = tuning.sample(records, 10, seed=3), tuning.sample(records, 10, seed=3)
    assert first == again and len(first) == 10
    assert [records.index(r) for r in first] == sorted(records.index(r) for r in first)
    assert tuning.sample(records, 100, seed=3) == records


def test_parallel_scoring_gives_exactly_the_serial_score():
    rng = np.random.default_rng(0)
    records, detections, table = scene(9)
    for record in records[::2]:  # vary the images: some detections move, some images lose theirs
        found = detections[record.image_id]
        found.boxes += rng.uniform(-6, 6, found.boxes.shape).astype(np.float32)
    detections[records[1].image_id] = Detections.empty(28, 92, "roi", 1)
    truth = scoring.truth_on_grid(table, records, START)
    serial = scoring.Scorer(detections, truth, LABELS)(START, records, "class_id")
    with scoring.Scorer(detections, truth, LABELS, workers=3) as scorer:
        assert scorer.workers == 3
        parallel = scorer(START, records, "class_id")
        assert tuning.search(scorer, records, START, TUNE, LABELS) == tuning.search(
            scoring.Scorer(detections, truth, LABELS), records, START, TUNE, LABELS)
    assert parallel == serial and 0 < serial.score < 1
