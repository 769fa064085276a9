"""The headline metrics: few, shared column names, taken from the reports they summarise."""

from __future__ import annotations

from pipeline.evaluation import headline


def test_each_stage_headline_uses_the_shared_columns_only():
    rows = [headline.training({"score": 0.1234567, "mask_ap": 0.2, "epoch": 3, "step": 30}, 1.5),
            headline.tuning({"tuned": 0.2, "tuned_held_out": 0.15, "default": 0.1}),
            headline.evaluation({"submitted": 0.3, "tuned_no_tta": 0.25, "per_class": {"1": 0.5},
                                 "fashionpedia": {"mask_ap": 0.12, "ap_iou_f1": 0.06, "mask_ap50": 0.3}}),
            headline.retrieval({"category": {"precision": 0.7, "margin": 0.3, "random": 0.4}, "by_features": {}})]
    assert all(set(row) <= set(headline.COLUMNS) for row in rows)
    assert rows[0] == {"score": 0.12346, "mask_ap": 0.2, "epoch": 3, "img_per_s": 1.5}
    assert rows[1] == {"score": 0.2, "held_out": 0.15}
    assert rows[2] == {"score": 0.3, "no_tta": 0.25, "mask_ap": 0.12, "ap_f1": 0.06}
    assert rows[3] == {"precision": 0.7}


def test_a_run_stopped_before_its_first_validation_has_only_its_throughput():
    assert headline.training(None, 2.0) == {"img_per_s": 2.0}


def test_a_fold_without_ground_truth_has_no_fashionpedia_columns():
    report = {"submitted": 1.0, "tuned_no_tta": 1.0, "fashionpedia": {"mask_ap": None, "ap_iou_f1": None}}
    assert headline.evaluation(report) == {"score": 1.0, "no_tta": 1.0}
