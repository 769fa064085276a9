"""YOLACT's parts on hand-computed inputs (Fast NMS, matching, hard negatives, crop, mask loss, prototypes),
and the family: the contract, learning one image, weights from a file, no network."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torchvision
from hypothesis import given, settings
from hypothesis import strategies as st
from torchvision.ops import batched_nms, box_iou

from pipeline.inference.masks import paste
from pipeline.models.contract import DetectionModel, MaskFormat
from pipeline.models.families.yolact.anchors import BACKGROUND, IGNORED, match_anchors
from pipeline.models.families.yolact.fast_nms import fast_nms
from pipeline.models.families.yolact.losses import assemble_masks, crop, hard_negatives, mask_loss
from pipeline.models.families.yolact.network import PROTOTYPE_STRIDE, _Forward, box_masks
from pipeline.models.weights import WeightsError

from model_configs import one_image, tiny_config, yolact_config

NUM_CLASSES = 47  # background + the 46 categories


def one_class_scores(scores: list[float], labels: list[int], classes: int = 2) -> torch.Tensor:
    """(N, C) scores where each box scores only in its own class."""
    table = torch.zeros((len(scores), classes))
    table[torch.arange(len(scores)), torch.tensor(labels)] = torch.tensor(scores)
    return table


def run_fast_nms(boxes: torch.Tensor, scores: torch.Tensor, iou: float = 0.5) -> set[int]:
    return set(fast_nms(boxes, scores, iou, top_k=1000, score_threshold=0.0, max_detections=1000).index.tolist())


def test_a_removed_box_still_removes_the_boxes_below_it_unlike_standard_nms():
    # A overlaps B (IoU 0.67), B overlaps C (0.67), A and C barely (0.33): standard NMS removes B, so C stays.
    boxes = torch.tensor([[0.0, 0, 10, 10], [2, 0, 12, 10], [4, 0, 14, 10]])
    scores = one_class_scores([0.9, 0.8, 0.7], [0, 0, 0])
    assert set(batched_nms(boxes, scores.max(1).values, torch.zeros(3), 0.5).tolist()) == {0, 2}
    assert run_fast_nms(boxes, scores) == {0}
    # The same boxes in three classes never touch each other: all kept, by both.
    scores = one_class_scores([0.9, 0.8, 0.7], [0, 1, 2], classes=3)
    assert run_fast_nms(boxes, scores) == {0, 1, 2}
    assert set(batched_nms(boxes, scores.max(1).values, torch.tensor([0, 1, 2]), 0.5).tolist()) == {0, 1, 2}


def test_fast_nms_keeps_the_best_boxes_first_and_at_most_max_detections():
    boxes = torch.tensor([[0.0, 0, 10, 10], [20, 20, 30, 30], [40, 40, 50, 50]])
    scores = one_class_scores([0.3, 0.9, 0.6], [0, 1, 0])
    kept = fast_nms(boxes, scores, 0.5, top_k=10, score_threshold=0.05, max_detections=2)
    assert kept.index.tolist() == [1, 2] and kept.label.tolist() == [1, 0]
    assert torch.allclose(kept.score, torch.tensor([0.9, 0.6]))
    assert not len(fast_nms(boxes, scores, 0.5, top_k=10, score_threshold=0.95, max_detections=5).index)


boxes_strategy = st.lists(st.tuples(st.integers(0, 40), st.integers(0, 40), st.integers(2, 30), st.integers(2, 30),
                                    st.integers(0, 2), st.integers(1, 1000)), min_size=1, max_size=25)


@settings(max_examples=60, deadline=None)
@given(boxes_strategy)
def test_fast_nms_keeps_what_standard_nms_keeps_less_the_boxes_a_removed_box_overlaps(drawn):
    """Fast NMS's rule: a box goes when any better box of its class overlaps it, removed or not. It agrees
    with torchvision's batched_nms wherever no removed box overlaps a box below it."""
    boxes = torch.tensor([[x, y, x + w, y + h] for x, y, w, h, _, _ in drawn], dtype=torch.float32)
    labels = [label for *_, label, _ in drawn]
    # distinct scores: the order is then the same for both
    scores = torch.tensor([s + k / 1e4 for k, (*_, s) in enumerate(drawn)]) / 1001
    fast = run_fast_nms(boxes, one_class_scores(scores.tolist(), labels, classes=3))
    standard = set(batched_nms(boxes, scores, torch.tensor(labels), 0.5).tolist())
    iou = box_iou(boxes, boxes)
    same_class = torch.tensor(labels)[:, None] == torch.tensor(labels)[None]
    better = scores[:, None] > scores[None]  # [i, j]: i is better than j
    suppressed_by_any = ((iou > 0.5) & same_class & better).any(0)
    assert fast == {j for j in range(len(drawn)) if not suppressed_by_any[j]}
    assert fast <= standard
    removed = torch.tensor([j not in standard for j in range(len(drawn))])
    chains = ((iou > 0.5) & same_class & better & removed[:, None]).any()
    if not chains:
        assert fast == standard


def papers_fast_nms(boxes: torch.Tensor, scores: torch.Tensor, iou: float, top_k: int, threshold: float,
                    most: int) -> list[tuple[int, int, float]]:
    """The paper's Fast NMS written out class by class: every class's top_k candidates, its full IoU matrix."""
    candidates = torch.nonzero(scores.max(1).values > threshold).squeeze(1).tolist()
    kept = []
    for label in range(scores.shape[1]):
        ranked = sorted(candidates, key=lambda i: -scores[i, label].item())[:top_k]
        for j, box in enumerate(ranked):
            better = [b for b in ranked[:j] if box_iou(boxes[b][None], boxes[box][None]).item() > iou]
            if not better and scores[box, label] > threshold:
                kept.append((box, label, scores[box, label].item()))
    return sorted(kept, key=lambda found: -found[2])[:most]


@settings(max_examples=60, deadline=None)
@given(boxes_strategy, st.floats(0.0, 0.6), st.integers(1, 8), st.integers(1, 30))
def test_fast_nms_is_the_papers_matrix_rule_whatever_the_threshold_top_k_and_limit(drawn, threshold, top_k, most):
    """Fast NMS skips the classes and ranks whose scores are under the threshold: the result must be the
    paper's full (classes, top_k, top_k) computation's, boxes, classes and scores."""
    boxes = torch.tensor([[x, y, x + w, y + h] for x, y, w, h, _, _ in drawn], dtype=torch.float32)
    generator = torch.Generator().manual_seed(sum(s for *_, s in drawn))
    scores = torch.rand((len(drawn), 4), generator=generator) ** 3  # mostly small, as a trained model's
    found = fast_nms(boxes, scores, 0.5, top_k=top_k, score_threshold=threshold, max_detections=most)
    got = list(zip(found.index.tolist(), found.label.tolist(), found.score.tolist(), strict=True))
    assert got == papers_fast_nms(boxes, scores, 0.5, top_k, threshold, most)


def test_anchors_match_at_or_above_half_are_background_below_0_4_and_ignored_between():
    truth = torch.tensor([[0.0, 0, 10, 10], [100, 100, 110, 110]])
    anchors = torch.tensor([[0.0, 0, 10, 12],  # IoU 0.83 with the first box
                            [0.0, 0, 10, 22],  # 0.45: ignored
                            [0.0, 0, 10, 30],  # 0.33: background
                            [50.0, 50, 60, 60],  # 0: background
                            [100.0, 100, 130, 130]])  # 0.11 with the second box, its best: positive all the same
    match = match_anchors(anchors, truth, torch.tensor([3, 7]), 0.5, 0.4)
    assert match.labels.tolist() == [3, IGNORED, BACKGROUND, BACKGROUND, 7]
    assert match.instance[match.positive].tolist() == [0, 1]
    empty = match_anchors(anchors, torch.zeros((0, 4)), torch.zeros(0, dtype=torch.int64), 0.5, 0.4)
    assert empty.labels.tolist() == [BACKGROUND] * 5


def test_hard_negative_mining_takes_the_three_worst_backgrounds_per_positive_and_never_an_ignored_anchor():
    labels = torch.tensor([5, 2, IGNORED] + [BACKGROUND] * 10)
    loss = torch.tensor([9.0, 9.0, 100.0] + [float(k) for k in range(10)])  # background k has loss k
    chosen = hard_negatives(loss, labels, ratio=3)
    assert torch.nonzero(chosen).squeeze(1).tolist() == [3 + k for k in range(4, 10)]  # the 6 worst: losses 4-9
    assert not hard_negatives(loss, torch.tensor([IGNORED] * 3 + [BACKGROUND] * 10), ratio=3).any()
    assert hard_negatives(loss, torch.tensor([1] * 12 + [BACKGROUND]), ratio=3).sum() == 1  # as many as there are


def test_crop_keeps_the_pixels_whose_centres_lie_in_the_box():
    kept = crop(torch.ones((1, 4, 5)), torch.tensor([[1.0, 1.0, 3.0, 3.0]]))
    assert kept[0].tolist() == [[0, 0, 0, 0, 0], [0, 1, 1, 0, 0], [0, 1, 1, 0, 0], [0, 0, 0, 0, 0]]
    assert crop(torch.ones((1, 4, 5)), torch.tensor([[0.4, 0.0, 0.6, 4.0]])).sum() == 4  # column 0's centre 0.5


def test_the_mask_loss_is_the_mean_cross_entropy_over_the_true_box_whatever_lies_outside_it():
    truth = torch.zeros((1, 8, 8))
    truth[0, 2:4, 2:4] = 1
    small, large = torch.tensor([[2.0, 2, 4, 4]]), torch.tensor([[0.0, 0, 8, 8]])
    assert mask_loss(torch.zeros((1, 8, 8)), truth, small).item() == pytest.approx(math.log(2))
    assert mask_loss(torch.zeros((1, 8, 8)), truth, large).item() == pytest.approx(math.log(2)), "per box area"
    confident = torch.full((1, 8, 8), -20.0)
    confident[0, 2:4, 2:4] = 20.0
    assert mask_loss(confident, truth, small).item() == pytest.approx(0.0, abs=1e-6)
    confident[0, 6:, 6:] = 20.0  # wrong, but outside the box
    assert mask_loss(confident, truth, small).item() == pytest.approx(0.0, abs=1e-6)
    assert mask_loss(confident, truth, large).item() > 1.0
    two = mask_loss(torch.zeros((2, 8, 8)), truth.repeat(2, 1, 1), small.repeat(2, 1))
    assert two.item() == pytest.approx(2 * math.log(2)), "summed over masks"


def test_the_mask_loss_of_a_sample_of_positives_stands_for_all_of_them():
    """Over ``masks_to_train`` positives, a random sample is trained, its loss scaled by positives / sample."""
    model = yolact_config(masks_to_train=2).build(NUM_CLASSES, 92)
    out = _Forward(batch=torch.zeros((1, 3, 32, 32)), head={"coefficients": torch.zeros((1, 10, 8))},
                   prototypes=torch.zeros((1, 8, 8, 8)), semantic=None, anchors=torch.zeros((10, 4)))
    truth = torch.zeros((1, 8, 8))
    target = {"boxes": torch.tensor([[0.0, 0, 16, 16]])}
    for positives in (1, 2, 5):  # zero logits: every mask costs log 2 per pixel of its box, log 2 in all
        loss = model._mask_loss(out, 0, torch.arange(positives), torch.zeros(positives, dtype=torch.int64), target,
                                truth)
        assert float(loss) == pytest.approx(positives * math.log(2)), positives


def test_a_coefficient_vector_assembles_its_prototypes():
    prototypes = torch.rand((6, 7, 4))
    coefficients = torch.tensor([[0.0, 1, 0, 0], [0.5, 0, 0, -1], [0, 0, 0, 0]])
    masks = assemble_masks(prototypes, coefficients)
    assert masks.shape == (3, 6, 7)
    assert torch.allclose(masks[0], prototypes[..., 1])
    assert torch.allclose(masks[1], 0.5 * prototypes[..., 0] - prototypes[..., 3])
    assert torch.equal(masks[2], torch.zeros((6, 7))), "no bias: a zero vector is a zero mask"


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 8), st.integers(0, 12), st.integers(3, 8), st.integers(3, 10))
def test_a_mask_stored_on_its_box_and_pasted_back_is_the_assembled_mask(top, left, height, width):
    """The stored crop mask loses nothing the prototypes show: pasted over its box at the input's size
    (as post-processing does), it is the assembled mask upsampled from the prototypes' stride 4."""
    shape = torch.zeros((16, 24))
    shape[top : top + height, left : left + width] = 1
    shape[top + height // 2, left : left + width - 1] = 0  # a notch: the mask's shape, not only its box
    prototypes = torch.stack([shape, torch.ones((16, 24))], -1)  # (H, W, k): the shape, and a constant
    coefficients = torch.tensor([[20.0, -10.0]])  # logits +10 on the shape, -10 elsewhere
    box = torch.tensor([[left, top, left + width, top + height]], dtype=torch.float32) * PROTOTYPE_STRIDE
    stored = box_masks(prototypes, coefficients, box, 56)
    assert stored.shape == (1, 1, 56, 56)
    canvas = np.zeros((16 * PROTOTYPE_STRIDE, 24 * PROTOTYPE_STRIDE), np.float32)
    paste((stored[0, 0].numpy() * 255).round().astype(np.uint8), box[0].numpy(), canvas, padding=0)
    truth = shape.repeat_interleave(PROTOTYPE_STRIDE, 0).repeat_interleave(PROTOTYPE_STRIDE, 1).numpy() > 0.5
    pasted = canvas > 0.5
    assert (pasted & truth).sum() / (pasted | truth).sum() >= 0.9


def trained(steps: int) -> tuple[torch.nn.Module, list[float]]:
    torch.manual_seed(0)
    model = yolact_config().build(NUM_CLASSES, 92)
    image, target = one_image()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model.train()
    history = []
    for _ in range(steps):
        losses = model([image, image], [target, target])
        assert set(losses) == {"loss_classifier", "loss_box_reg", "loss_mask", "loss_semantic", "loss_attributes"}
        assert all(v.ndim == 0 and torch.isfinite(v) for v in losses.values())
        history.append(sum(losses.values()).item())
        optimizer.zero_grad()
        sum(losses.values()).backward()
        optimizer.step()
    return model.eval(), history


def test_a_train_step_returns_named_losses_that_fall_on_one_repeated_image():
    model, history = trained(30)
    assert isinstance(model, DetectionModel) and model.num_attributes == 92
    assert model.mask_format == MaskFormat("crop", 16)
    assert history[-1] < 0.2 * history[0], history


def test_eval_returns_well_formed_detections_of_the_trained_image():
    model, _ = trained(40)
    image, target = one_image()
    with torch.no_grad():
        found = model([image])[0]
    n = len(found["boxes"])
    assert 1 <= n <= 50
    assert found["boxes"].shape == (n, 4) and found["masks"].shape == (n, 1, 16, 16)
    assert found["labels"].dtype == torch.int64 and bool(((found["labels"] >= 1) & (found["labels"] <= 46)).all())
    assert bool((found["scores"][:-1] >= found["scores"][1:]).all()), "best first"
    assert bool((found["boxes"][:, 0] >= 0).all() and (found["boxes"][:, 2] <= 90).all()
                and (found["boxes"][:, 3] <= 64).all())
    assert found["masks"].min() >= 0 and found["masks"].max() <= 1 and found["attributes"].shape == (n, 92)
    best = {int(label): box for label, box in zip(found["labels"].flip(0), found["boxes"].flip(0), strict=True)}
    for box, label in zip(target["boxes"], target["labels"].tolist(), strict=True):
        assert label in best and box_iou(best[label][None], box[None]).item() > 0.5, (label, found["boxes"][:3])
    said = model.attributes_of_boxes([image], [target["boxes"]])[0]
    assert said.shape == (2, 92) and said[0, 3] > 0.5 and said[0, 40] > 0.5 and said[0, 10] < 0.5


def test_the_family_predicts_categories_only_when_its_attribute_branch_is_off():
    model = yolact_config(attribute_branch=False).build(NUM_CLASSES, 92)
    image, target = one_image()
    assert model.num_attributes == 0 and "loss_attributes" not in model.train()([image], [target])
    assert "attributes" not in model.eval()([image])[0]


def test_an_image_without_instances_trains_and_an_untrained_model_may_find_nothing():
    torch.manual_seed(0)
    model = yolact_config().build(NUM_CLASSES, 92)
    image, _ = one_image()
    empty = {"boxes": torch.zeros((0, 4)), "labels": torch.zeros(0, dtype=torch.int64),
             "masks": torch.zeros((0, 64, 90), dtype=torch.uint8), "attributes": torch.zeros((0, 92))}
    losses = model.train()([image], [empty])
    sum(losses.values()).backward()
    assert all(torch.isfinite(v) for v in losses.values())
    found = model.eval()([image])[0]
    assert found["masks"].shape[1:] == (1, 16, 16) and len(found["boxes"]) == len(found["attributes"])


def test_backbone_weights_come_from_an_imagenet_file_or_a_detector_checkpoint_and_others_are_refused(tmp_path):
    imagenet = torchvision.models.resnet18(weights=None)
    torch.save(imagenet.state_dict(), tmp_path / "resnet18.pth")
    model = yolact_config(weights=str(tmp_path / "resnet18.pth")).build(NUM_CLASSES, 92)
    assert torch.equal(model.backbone.body.layer2[0].conv1.weight, imagenet.layer2[0].conv1.weight)
    detector = tiny_config().build(NUM_CLASSES, 92, initial_weights=False)
    torch.save({"model": detector.state_dict(), "num_classes": NUM_CLASSES}, tmp_path / "best.pt")
    model = yolact_config(weights=str(tmp_path / "best.pt")).build(NUM_CLASSES, 92)
    assert torch.equal(model.backbone.body.layer4[1].conv2.weight, detector.backbone.body.layer4[1].conv2.weight)
    torch.save(torchvision.models.resnet34(weights=None).state_dict(), tmp_path / "resnet34.pth")
    with pytest.raises(WeightsError, match=r"resnet34.pth: not the weights of a ResNet like yolact.backbone's"):
        yolact_config(weights=str(tmp_path / "resnet34.pth")).build(NUM_CLASSES, 92)


def test_building_and_training_the_papers_resnet50_reach_no_network(offline):
    model = yolact_config(backbone="resnet50").build(NUM_CLASSES, 92)
    image, target = one_image()
    sum(model.train()([image], [target]).values()).backward()
    model.eval()([image])
