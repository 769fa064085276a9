"""The Mask2Former family: learning one image, detections with attributes, masks cropped without loss, weights from
a local folder or file (and refused when foreign), nothing reaching the network."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors.torch import save_file
from torchvision.ops import box_iou

from pipeline.inference.masks import paste
from pipeline.models.contract import DetectionModel, MaskFormat
from pipeline.models.families.mask2former.network import MASK_STRIDE, _boxes_and_scores, _crop
from pipeline.models.weights import WeightsError

from model_configs import one_image, smoke_config

NUM_CLASSES = 47  # background + the 46 categories
LOSSES = {"loss_classifier", "loss_mask", "loss_dice", "loss_attributes"}


def trained(steps: int) -> tuple[torch.nn.Module, list[float]]:
    torch.manual_seed(0)
    model = smoke_config("mask2former").build(NUM_CLASSES, 92)
    image, target = one_image()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model.train()
    history = []
    for _ in range(steps):
        losses = model([image, image], [target, target])
        assert set(losses) == LOSSES and all(v.ndim == 0 and torch.isfinite(v) for v in losses.values())
        history.append({k: v.item() for k, v in losses.items()})
        optimizer.zero_grad()
        sum(losses.values()).backward()
        optimizer.step()
    return model.eval(), history


@pytest.fixture(scope="module")
def model_of_one_image() -> torch.nn.Module:
    return trained(60)[0]


def test_a_train_step_returns_named_losses_that_fall_on_one_repeated_image():
    model, history = trained(30)
    assert isinstance(model, DetectionModel) and model.num_attributes == 92
    assert model.mask_format == MaskFormat("crop", 16)
    for name, share in (("loss_mask", 0.6), ("loss_dice", 0.6), ("loss_attributes", 0.75)):
        assert history[-1][name] < share * history[0][name], (name, history[0], history[-1])
    assert sum(history[-1].values()) < 0.6 * sum(history[0].values())


def test_eval_finds_the_trained_image_items_with_their_attributes(model_of_one_image):
    image, target = one_image()
    with torch.no_grad():
        found = model_of_one_image([image])[0]
    # shapes, dtypes and bounds of eval mode are the contract suite's (tests/models/test_contract.py), for every family
    assert 1 <= len(found["boxes"]) <= 20 and bool((found["scores"][:-1] >= found["scores"][1:]).all()), "best first"
    best = {int(label): k for k, label in reversed(list(enumerate(found["labels"].tolist())))}
    for box, label in zip(target["boxes"], target["labels"].tolist(), strict=True):
        assert label in best and box_iou(found["boxes"][best[label]][None], box[None]).item() > 0.5, label
    garment = found["attributes"][best[1]]
    assert garment[3] > 0.5 and garment[40] > 0.5 and garment[10] < 0.5, "the garment's query names its attributes"
    said = model_of_one_image.attributes_of_boxes([image], [target["boxes"]])[0]
    assert said.shape == (2, 92) and said[0, 3] > 0.5 and said[0, 40] > 0.5 and said[0, 10] < 0.5


def test_an_image_without_instances_trains_every_parameter_and_the_attribute_head_can_be_off():
    torch.manual_seed(0)
    model = smoke_config("mask2former").build(NUM_CLASSES, 92)
    image, _ = one_image()
    empty = {"boxes": torch.zeros((0, 4)), "labels": torch.zeros(0, dtype=torch.int64),
             "masks": torch.zeros((0, 64, 90), dtype=torch.uint8), "attributes": torch.zeros((0, 92))}
    losses = model.train()([image], [empty])
    sum(losses.values()).backward()
    assert set(losses) == LOSSES and all(torch.isfinite(v) for v in losses.values())
    idle = [name for name, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not idle, f"DistributedDataParallel waits for every gradient: {idle[:3]}"
    plain = smoke_config("mask2former", attribute_head=False).build(NUM_CLASSES, 92)
    assert plain.num_attributes == 0 and "loss_attributes" not in plain.train()([image], [empty])
    assert "attributes" not in plain.eval()([image])[0]


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 8), st.integers(0, 12), st.integers(3, 8), st.integers(3, 12))
def test_a_mask_stored_on_its_box_and_pasted_back_is_the_predicted_mask(top, left, height, width):
    """Its box spans every map pixel above the threshold, and the crop loses nothing the quarter-resolution map
    shows: pasted over the box at the input's size (as post-processing does), it is the map upsampled."""
    shape = torch.zeros((16, 24))
    shape[top : top + height, left : left + width] = 1
    shape[top + height // 2, left : left + width - 1] = 0  # a notch: the mask's shape, not only its box
    probabilities = (shape * 20 - 10).sigmoid()[None]
    boxes, score = _boxes_and_scores(probabilities, (16 * MASK_STRIDE, 24 * MASK_STRIDE))
    assert boxes[0].tolist() == [left * 4, top * 4, (left + width) * 4, (top + height) * 4]
    assert score.item() == pytest.approx(probabilities[probabilities > 0.5].mean().item())
    stored = _crop(probabilities, boxes, 16)
    canvas = np.zeros((16 * MASK_STRIDE, 24 * MASK_STRIDE), np.float32)
    paste((stored[0, 0].numpy() * 255).round().astype(np.uint8), boxes[0].numpy(), canvas, padding=0)
    truth = shape.repeat_interleave(MASK_STRIDE, 0).repeat_interleave(MASK_STRIDE, 1).numpy() > 0.5
    pasted = canvas > 0.5
    assert (pasted & truth).sum() / (pasted | truth).sum() >= 0.9


def test_a_batch_of_images_of_different_sizes_gives_each_its_own_bounds(model_of_one_image):
    """Each image is padded to the batch's size; its detections keep to its own pixels, odd sides included."""
    image, _ = one_image()
    small = image[:, :37, :53]
    with torch.no_grad():
        found = model_of_one_image([image, small])
    for output, (height, width) in zip(found, ((64, 90), (37, 53)), strict=True):
        assert len(output["boxes"]) and bool((output["boxes"] >= 0).all())
        assert bool((output["boxes"][:, 2] <= width).all() and (output["boxes"][:, 3] <= height).all())
        assert bool((output["boxes"][:, 2] > output["boxes"][:, 0]).all())


def test_a_box_ends_at_the_image_edge_whatever_the_side_modulo_the_stride():
    maps = torch.zeros((1, 10, 14))
    maps[0, 5:, 9:] = 0.9  # reaches the map's last row and column, which cover the image's last 1-3 pixels
    boxes, _ = _boxes_and_scores(maps, (38, 53))
    assert boxes.tolist() == [[36, 20, 53, 38]]


def test_an_empty_map_has_no_box_and_scores_0():
    boxes, score = _boxes_and_scores(torch.zeros((1, 16, 24)), (64, 96))
    assert boxes.tolist() == [[0, 0, 0, 0]] and score.tolist() == [0]


def test_weights_come_from_a_local_folder_or_file_and_a_foreign_backbone_is_refused(tmp_path, offline, caplog):
    torch.manual_seed(1)
    source = smoke_config("mask2former").build(81, 92, initial_weights=False)  # a "COCO" checkpoint: 80 classes
    source.net.save_pretrained(tmp_path / "coco")
    caplog.set_level("INFO")
    model = smoke_config("mask2former", weights=str(tmp_path / "coco")).build(NUM_CLASSES, 92)
    assert torch.equal(model.backbone.embedder.embedder.convolution.weight,
                       source.backbone.embedder.embedder.convolution.weight)
    mine, theirs = model.net.state_dict(), source.net.state_dict()
    assert all(torch.equal(mine[k], theirs[k]) for k in mine if not k.startswith(("class_predictor", "criterion")))
    assert model.net.class_predictor.weight.shape[0] == 47, "the classifier is re-initialised for 46 categories"
    assert "re-initialised net.class_predictor: 2 tensors" in caplog.text and "re-initialised net:" not in caplog.text
    torch.save({"model": model.state_dict()}, tmp_path / "best.pt")  # this project's checkpoint
    again = smoke_config("mask2former", weights=str(tmp_path / "best.pt"), no_object_weight=0.5).build(NUM_CLASSES, 92)
    assert all(torch.equal(v, again.state_dict()[k]) for k, v in model.state_dict().items()
               if not k.startswith("net.criterion")), "every weight, the attribute head's too"
    assert again.net.criterion.empty_weight[-1] == 0.5, "the loss's class weights follow params, not the file"
    frozen = smoke_config("mask2former", weights=str(tmp_path / "coco"), freeze_batchnorm=True).build(NUM_CLASSES, 92)
    torch.save({"model": frozen.state_dict()}, tmp_path / "frozen.pt")  # no BatchNorm step counters
    smoke_config("mask2former", weights=str(tmp_path / "frozen.pt"), freeze_batchnorm=True).build(NUM_CLASSES, 92)
    save_file(dict(theirs), tmp_path / "coco.safetensors")
    assert smoke_config("mask2former", weights=str(tmp_path / "coco.safetensors")).build(NUM_CLASSES, 92)
    wide = smoke_config("mask2former", backbone="resnet50").build(81, 92, initial_weights=False)
    wide.net.save_pretrained(tmp_path / "resnet50")
    with pytest.raises(WeightsError, match="tensors are absent or of another shape .* not the weights of"):
        smoke_config("mask2former", weights=str(tmp_path / "resnet50")).build(NUM_CLASSES, 92)
    (tmp_path / "empty").mkdir()
    (tmp_path / "broken.safetensors").write_bytes(b"\x00" * 20)
    for path, message in ((tmp_path / "empty", "no \\*.safetensors or pytorch_model.bin"),
                          (tmp_path / "broken.safetensors", "cannot read safetensors weights"),
                          (tmp_path / "absent", "weights file or folder not found")):
        with pytest.raises(WeightsError, match=f"{path}: {message}"):
            smoke_config("mask2former", weights=str(path)).build(NUM_CLASSES, 92)


def test_building_and_training_a_swin_reach_no_network(offline):
    import os

    assert os.environ["HF_HUB_OFFLINE"] == "1", "the family sets the Hugging Face hub offline"
    model = smoke_config("mask2former", backbone="swin-tiny").build(NUM_CLASSES, 92)
    image, target = one_image()
    sum(model.train()([image], [target]).values()).backward()
    model.eval()([image])
