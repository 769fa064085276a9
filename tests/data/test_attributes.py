"""Attributes: the head's targets and loss, groups, the chosen set, ClassId formatting, the policy and F1."""

from __future__ import annotations

import logging
import math

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.nn import functional as torch_f

from pipeline.config.inference import EXCLUSIVE_GROUPS, PostprocessParams, TuneParams
from pipeline.data import rle
from pipeline.data.attributes import FIT_GROUP, choose, group_f1, groups_of, multi_hot
from pipeline.data.labels import LabelError, LabelSet, load_labels
from pipeline.evaluation import report as evaluation
from pipeline.evaluation import scoring
from pipeline.evaluation import search as tuning
from pipeline.inference.detections import Detections, ImageRecord
from pipeline.inference.postprocess import check_attribute_settings, class_id, process_image
from pipeline.inference.trained import load_model
from pipeline.models.families.maskrcnn.attribute_head import AttributeRoIHeads, box_geometry
from pipeline.training.validation import true_box_attributes
from pipeline.utils.errors import PipelineError

from model_configs import changed, tiny_config

LABELS = load_labels()
GROUPS = groups_of(LABELS)
PARAMS = PostprocessParams(tta=True, score_thresh=0.0, nms_iou=0.5, mask_thresh=0.5, min_area=0, max_detections=100,
                           attribute_policy="full", grid="native")
TINY = tiny_config(rpn_pre_nms_top_n_test=50, rpn_post_nms_top_n_test=50, box_score_thresh=0.0,
                   box_detections_per_img=10)


def probabilities(*ids: int, rest: float = 0.05) -> np.ndarray:
    values = np.full(len(LABELS.attributes), rest, np.float32)
    values[list(ids)] = 0.9
    return values


# --- targets and groups -------------------------------------------------------------------------------------


def test_an_instance_without_attributes_is_a_row_of_zeros():
    target = multi_hot([(3, 20, 61), (), (91,)], 92)
    assert target.shape == (3, 92) and target.dtype == torch.float32
    assert target[0].nonzero().flatten().tolist() == [3, 20, 61]
    assert target[1].sum() == 0 and target[2, 91] == 1


def test_groups_follow_the_taxonomy_with_fit_split_off():
    assert GROUPS.members["length"] == tuple(range(10))
    assert GROUPS.members[FIT_GROUP] == (39, 40, 41, 42)
    assert 43 in GROUPS.members["silhouette"] and 39 not in GROUPS.members["silhouette"]
    every = sorted(a for ids in GROUPS.members.values() for a in ids)
    assert every == list(range(92)), "each attribute in exactly one group"
    assert set(EXCLUSIVE_GROUPS) <= set(GROUPS.names)


# --- choosing the set ---------------------------------------------------------------------------------------


def test_an_exclusive_group_gives_at_most_its_likeliest_attribute():
    values = probabilities(3, 5, 61, 72)  # two lengths and two patterns above the threshold
    values[5] = 0.95
    chosen = choose(values, GROUPS, {}, 0.5, ("length",))
    assert chosen == (5, 61, 72), "one length (the likeliest); patterns are not exclusive here"
    assert choose(values, GROUPS, {"length": 0.99}, 0.5, ("length",)) == (61, 72), "a group's own threshold"


@settings(max_examples=150, deadline=None)
@given(st.lists(st.floats(0, 1), min_size=92, max_size=92), st.floats(0.05, 0.95))
def test_a_chosen_set_is_sorted_above_threshold_and_exclusive(values, threshold):
    values = np.asarray(values, np.float32)
    chosen = choose(values, GROUPS, {}, threshold, EXCLUSIVE_GROUPS)
    assert list(chosen) == sorted(set(chosen))
    assert all(values[a] >= threshold for a in chosen)
    for name in EXCLUSIVE_GROUPS:
        assert len(set(chosen) & set(GROUPS.members[name])) <= 1


def test_class_id_sorts_the_ids_numerically_and_follows_the_policy():
    values = probabilities(72, 3, 10, 20)
    assert class_id(0, values, PARAMS, LABELS) == "0_3_10_20_72", "numeric order, not text order (10 < 3)"
    assert class_id(0, values, PARAMS.model_copy(update={"category_policy": {0: "category"}}), LABELS) == "0"
    assert class_id(23, values, PARAMS, LABELS) == "23", "shoes carry no attributes"
    assert class_id(0, np.zeros(0, np.float32), PARAMS, LABELS) == "0", "a model without the head"


def test_class_id_checks_the_probabilities_against_the_label_set():
    with pytest.raises(PipelineError, match="91 attribute probabilities.*92"):
        class_id(0, probabilities(3)[:91], PARAMS, LABELS)
    fewer = LabelSet(LABELS.categories, LABELS.attributes[:50])
    with pytest.raises(LabelError, match="not in the label set"):
        LabelSet.format(fewer, LABELS.make(0, (3, 72)))


def test_attribute_settings_are_validated():
    with pytest.raises(ValueError, match="outside attribute_categories"):
        PostprocessParams.model_validate({**PARAMS.model_dump(), "category_policy": {23: "full"}})
    with pytest.raises(PipelineError, match="'lenght'"):
        check_attribute_settings(PARAMS.model_copy(update={"group_thresh": {"lenght": 0.3}}), LABELS)
    check_attribute_settings(PARAMS.model_copy(update={"group_thresh": {"length": 0.3}}), LABELS)


def test_views_average_their_attribute_probabilities():
    box = np.array([[10, 10, 40, 40]] * 2, np.float32)
    first, second = probabilities(3), probabilities(5)
    found = Detections(box, np.array([0.9, 0.8], np.float32), np.array([1, 1], np.int16), np.array([0, 1], np.int8),
                       np.full((2, 28, 28), 255, np.uint8), (np.stack([first, second]) * 255).astype(np.uint8),
                       "roi", 2)
    (instance,) = process_image(found, 64, 64, PARAMS.model_copy(update={"attribute_thresh": 0.6}), LABELS)
    assert instance.class_id == "1", "each length has (0.9 + 0.05) / 2 < 0.6 after averaging"
    (instance,) = process_image(found, 64, 64, PARAMS.model_copy(update={"attribute_thresh": 0.4}), LABELS)
    assert instance.class_id in ("1_3", "1_5"), "an exclusive group keeps one"


# --- the head -----------------------------------------------------------------------------------------------


def heads() -> AttributeRoIHeads:
    torch.manual_seed(0)
    found = TINY.build(47, 92).roi_heads
    assert isinstance(found, AttributeRoIHeads)
    return found


def test_the_loss_ignores_background_rois_and_instances_without_attributes():
    head = heads()
    features = torch.randn(6, head.attribute_predictor.in_features)  # representation + box geometry
    attributes = multi_hot([(3, 61), (), (5, 72)], 92)  # instance 1 (e.g. shoes, or an unannotated garment): none
    targets = [{"attributes": attributes}]
    matched = [torch.tensor([0, 1, 2, 0, 2, 1])]
    labels = [torch.tensor([2, 24, 9, 0, 9, 24])]  # RoI 3 is background although matched to instance 0
    loss = head.attribute_loss(features, matched, labels, targets)
    kept = [0, 2, 4]
    expected = torch_f.binary_cross_entropy_with_logits(head.attribute_predictor(features[kept]),
                                                        attributes[[0, 2, 2]])
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    other = features.clone()
    other[[1, 3, 5]] = torch.randn(3, features.shape[1]) * 10
    assert head.attribute_loss(other, matched, labels, targets).item() == pytest.approx(loss.item(), rel=1e-6)


def test_the_box_shape_reaches_the_classifier():
    """RoIAlign gives a mini and a maxi skirt the same grid; the geometry features tell them apart."""
    short, long = torch.tensor([[10.0, 10, 50, 30]]), torch.tensor([[10.0, 10, 50, 90]])
    geometry = box_geometry([short, long], [(100, 200), (100, 200)])
    assert geometry.shape == (2, 3)
    assert geometry[0].tolist() == pytest.approx([math.log(2.0), 0.2, 0.2])
    assert geometry[1].tolist() == pytest.approx([math.log(0.5), 0.2, 0.8])
    assert box_geometry([], []).shape == (0, 3)


def test_the_head_on_true_boxes_is_scored_on_annotated_instances_only():
    truth = multi_hot([(3, 61), (), (5, 72)], 92)
    said = torch.zeros(3, 92)
    said[0, [3, 61]] = 0.9  # exactly right
    said[1, 7] = 0.9  # an unannotated instance: not counted
    said[2, [5, 66]] = 0.8  # one of two right, one wrong
    score = true_box_attributes([(truth, said)])
    assert score == {"attribute_f1": pytest.approx(2 * 3 / (4 + 4)), "attribute_exact": 0.5}
    assert true_box_attributes([(multi_hot([()], 92), said[:1])]) == {}


def test_a_batch_without_attributes_has_a_zero_loss_that_still_reaches_every_head_parameter():
    head = heads()
    features = torch.randn(3, head.attribute_predictor.in_features)
    loss = head.attribute_loss(features, [torch.tensor([0, 0, 1])], [torch.tensor([5, 0, 24])],
                               [{"attributes": multi_hot([(), ()], 92)}])
    assert loss.item() == 0
    loss.backward()
    assert all(p.grad is not None and not p.grad.any() for p in head.attribute_predictor.parameters()), \
        "DistributedDataParallel needs a (zero) gradient for every parameter"


def test_training_reports_the_weighted_loss_and_inference_returns_probabilities():
    torch.manual_seed(0)
    image = torch.rand(3, 64, 96)
    masks = torch.zeros(1, 64, 96, dtype=torch.uint8)
    masks[0, 8:50, 10:60] = 1
    target = {"boxes": torch.tensor([[10.0, 8, 60, 50]]), "labels": torch.tensor([2]), "masks": masks,
              "attributes": multi_hot([(3, 61)], 92)}
    losses = {}
    for weight in (1.0, 3.0):
        torch.manual_seed(0)
        model = changed(TINY, attribute_loss_weight=weight).build(47, 92).train()
        losses[weight] = model([image], [target])["loss_attributes"].item()
    assert losses[1.0] > 0 and losses[3.0] == pytest.approx(3 * losses[1.0], rel=1e-5)
    (output,) = model.eval()([image])
    assert output["attributes"].shape == (len(output["boxes"]), 92) and len(output["boxes"]) > 0
    assert output["attributes"].min() >= 0 and output["attributes"].max() <= 1
    headless = changed(TINY, attribute_head=False).build(47, 92)
    assert not isinstance(headless.roi_heads, AttributeRoIHeads)


def test_a_checkpoint_without_the_head_still_loads_with_the_head_initialised(tmp_path, caplog):
    torch.manual_seed(1)
    old = changed(TINY, attribute_head=False).build(47, 92)
    torch.save({"model": old.state_dict(), "num_classes": 47}, tmp_path / "best.pt")
    with caplog.at_level(logging.WARNING, logger="pipeline.models.families.maskrcnn"):
        model = load_model(tmp_path / "best.pt", TINY, torch.device("cpu"), 92)
    assert "have no attribute head" in caplog.text and "roi_heads.attribute_predictor.weight" in caplog.text
    ours = model.state_dict()
    assert all(torch.equal(value, ours[key]) for key, value in old.state_dict().items())
    assert ours["roi_heads.attribute_predictor.bias"].eq(-3.0).all(), "the head keeps its initial weights"


def test_initial_weights_without_the_head_say_it_is_initialised(tmp_path, caplog):
    old = changed(TINY, attribute_head=False).build(47, 92)
    torch.save(old.state_dict(), tmp_path / "weights.pt")
    with caplog.at_level(logging.INFO, logger="pipeline.models.families.maskrcnn"):
        changed(TINY, weights=str(tmp_path / "weights.pt")).build(47, 92)
    assert "re-initialised roi_heads.attribute_predictor: 2 tensors" in caplog.text


# --- tuning the policy and the report -----------------------------------------------------------------------


def square(top: int, left: int, size: int) -> np.ndarray:
    mask = np.zeros((64, 64), bool)
    mask[top : top + size, left : left + size] = True
    return mask


def garment_scene():
    """Two images with attributes: a top (1) whose attributes the model gets right, a skirt (7) it gets wrong."""
    records = [ImageRecord(f"{k}.jpg", 64, 64) for k in range(2)]
    rows, detections = [], {}
    for r in records:
        for category, class_id_, top in ((1, "1_3_61", 2), (7, "7_5_72", 34)):
            rows.append({"image_id": r.image_id, "height": 64, "width": 64, "class_id": class_id_,
                         "category": category, "rle": rle.encode(square(top, 2, 24))})
        said = np.stack([probabilities(3, 61), probabilities(8, 66)])
        detections[r.image_id] = Detections(np.array([[2, 2, 26, 26], [2, 34, 26, 58]], np.float32),
                                            np.array([0.9, 0.9], np.float32), np.array([1, 7], np.int16),
                                            np.zeros(2, np.int8), np.full((2, 28, 28), 255, np.uint8),
                                            (said * 255).astype(np.uint8), "roi", 1)
    return records, detections, pd.DataFrame(rows)


TUNE = TuneParams(tta=(True,), score_thresh=(0.0,), nms_iou=(0.5,), mask_thresh=(0.5,), min_area=(0,),
                  max_detections=(100,), attribute_thresh=(0.5,), attribute_policy=("full", "category", "drop"),
                  rounds=2, max_images=10)


def test_tuning_keeps_attributes_where_they_are_right_and_drops_the_category_where_they_are_wrong():
    records, detections, table = garment_scene()
    start = PARAMS.model_copy(update={"attribute_policy": "category"})
    truth = scoring.truth_on_grid(table, records, start)
    scorer = scoring.Scorer(detections, truth, LABELS)
    found = tuning.search(scorer, records, start, TUNE, LABELS)
    assert found.policy_images == 2
    assert found.params.policy(1) == "full" and found.params.policy(7) == "drop"
    assert found.score == pytest.approx(1 / 2), "per image: the top matches, the dropped skirt is one missed class"
    report = evaluation.policy_comparison(scorer, records, found.params, "class_id")["attributed_images"]
    # Per image: category only -> 4 classes, all 0; drop -> 2 missed classes; full -> top right, skirt 2 zeros;
    # tuned -> top right + the missed skirt.
    assert report == {"images": 2, "drop": 0.0, "category": 0.0, "full": pytest.approx(1 / 3, abs=1e-5),
                      "tuned": pytest.approx(1 / 2)}


def test_attribute_quality_counts_per_group_on_found_garments():
    records, detections, table = garment_scene()
    truth = scoring.truth_on_grid(table, records, PARAMS)
    quality = evaluation.attribute_quality(detections, records, PARAMS, truth, LABELS)
    assert quality["found"] == 4 and quality["missed"] == 0 and quality["exact_set"] == 0.5
    assert quality["groups"]["length"]["micro_f1"] == pytest.approx(2 * 2 / (2 * 2 + 2 + 2))
    assert quality["groups"]["textile pattern"]["macro_f1"] == pytest.approx((1 + 0 + 0) / 3, abs=1e-4)


def test_group_f1_by_hand():
    pairs = [((3, 61), (3, 61)), ((5, 72), (8, 72)), ((), (3,))]
    report = group_f1(pairs, GROUPS)
    assert report["length"]["micro_f1"] == pytest.approx(2 * 1 / (2 * 1 + 2 + 1), abs=1e-4)
    assert report["length"]["attributes_seen"] == 3
    assert report["textile pattern"] == {"micro_f1": 1.0, "macro_f1": 1.0, "instances": 3, "attributes_seen": 2}
    assert "waistline" not in report
