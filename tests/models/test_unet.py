"""The UNet family meets the detection contract, learns, loads encoder weights from a file, and stays offline."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch
import torchvision
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.models.contract import DetectionModel, MaskFormat
from pipeline.models.weights import WeightsError

from model_configs import one_image, tiny_config, unet_config

NUM_CLASSES = 47  # background + the 46 categories


def test_a_train_step_returns_named_losses_that_fall_on_one_repeated_image():
    torch.manual_seed(0)
    model = unet_config().build(NUM_CLASSES, 92)
    assert isinstance(model, DetectionModel) and model.num_attributes == 0
    assert model.mask_format == MaskFormat("crop", 16)
    image, target = one_image()
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    history = []
    for _ in range(25):
        losses = model([image], [target])
        assert set(losses) == {"loss_bce", "loss_dice"} and all(v.ndim == 0 for v in losses.values())
        history.append(sum(losses.values()).item())
        optimizer.zero_grad()
        sum(losses.values()).backward()
        optimizer.step()
    assert history[-1] < 0.5 * history[0], history


def test_eval_returns_well_formed_detections_of_the_trained_image():
    torch.manual_seed(0)
    model = unet_config().build(NUM_CLASSES, 92)
    image, target = one_image()
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(40):
        optimizer.zero_grad()
        sum(model([image], [target]).values()).backward()
        optimizer.step()
    model.eval()
    with torch.no_grad():
        outputs = model([image, image[:, :40, :70]])  # two sizes in one batch: each cropped to its own
    for output, (height, width) in zip(outputs, ((64, 90), (40, 70)), strict=True):
        n = len(output["labels"])
        assert output["boxes"].shape == (n, 4) and output["scores"].shape == (n,)
        assert output["masks"].shape == (n, 1, 16, 16) and output["labels"].dtype == torch.int64
        assert bool(((output["scores"] > 0) & (output["scores"] <= 1)).all()) and bool((output["labels"] >= 1).all())
        assert bool((output["boxes"][:, 2] <= width).all()) and bool((output["boxes"][:, 3] <= height).all())
        assert "attributes" not in output
    assert {1, 24} <= set(outputs[0]["labels"].tolist()), "it learned the image's two categories"
    assert model.inference_counts["kept"] == sum(len(o["labels"]) for o in outputs)


@functools.cache
def _unet_with_dice_weight_2() -> torch.nn.Module:
    return unet_config(dice_weight=2.0).build(NUM_CLASSES, 92, initial_weights=False).train()


def _expected_losses(logits: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    """Binary cross-entropy over every category and pixel, and the Dice loss averaged over the categories the
    truth shows, of (K, h, w) logits and (K, h, w) 0/1 truth (float64)."""
    probabilities = 1 / (1 + np.exp(-logits))
    bce = -(truth * np.log(probabilities) + (1 - truth) * np.log(1 - probabilities)).mean()
    shown = [c for c in range(len(truth)) if truth[c].any()]
    dice = [2 * (probabilities[c] * truth[c]).sum() / (probabilities[c].sum() + truth[c].sum()) for c in shown]
    return bce, float(np.mean([1 - d for d in dice])) if shown else 0.0


@settings(max_examples=30)
@given(layers=st.lists(st.lists(st.sampled_from([0, 1, 5, 24, 46]), min_size=6, max_size=6), min_size=1,
                       max_size=3),
       seed=st.integers(0, 2**16))
def test_the_losses_of_a_tiny_image_are_binary_cross_entropy_and_the_dice_loss_of_the_categories_shown(layers, seed):
    """A 2 x 3 image padded to 2 x 4 (the pad ignored), its instances overlapping (one per layer and category):
    BCE over every category channel, Dice over the categories shown only."""
    model = _unet_with_dice_weight_2()
    logits = 3 * torch.randn((1, NUM_CLASSES - 1, 2, 4), generator=torch.Generator().manual_seed(seed))
    masks, labels = [], []
    for layer in layers:
        grid = np.array(layer).reshape(2, 3)
        for category in sorted(set(layer) - {0}):
            masks.append(grid == category)
            labels.append(category)
    target = {"labels": torch.tensor(labels, dtype=torch.int64),
              "masks": torch.from_numpy(np.stack(masks) if masks else np.zeros((0, 2, 3), bool))}
    truth = np.zeros((NUM_CLASSES - 1, 2, 3))
    for mask, label in zip(masks, labels, strict=True):
        truth[label - 1] = np.maximum(truth[label - 1], mask)
    model.logits = lambda images: logits  # the network's output, fixed: the losses are what is checked
    losses = model([torch.zeros((3, 2, 3))], [target])
    bce, dice = _expected_losses(logits[0, :, :, :3].double().numpy(), truth)
    assert losses["loss_bce"].item() == pytest.approx(bce, rel=1e-5)
    assert losses["loss_dice"].item() == pytest.approx(2.0 * dice, rel=1e-5, abs=1e-6)


def test_encoder_weights_load_from_a_resnet_state_dict_file(tmp_path):
    resnet = torchvision.models.resnet18(weights=None)
    torch.nn.init.constant_(resnet.conv1.weight, 0.125)
    path = tmp_path / "resnet18.pth"
    torch.save(resnet.state_dict(), path)  # as torchvision's ImageNet file: with the classifier (fc)
    model = unet_config(encoder_weights=str(path)).build(NUM_CLASSES, 92)
    assert torch.equal(model.net.encoder.conv1.weight, resnet.conv1.weight)
    assert torch.equal(model.net.encoder.layer4[1].bn2.running_var, resnet.layer4[1].bn2.running_var)
    scratch = unet_config().build(NUM_CLASSES, 92, initial_weights=False)
    assert not torch.equal(scratch.net.encoder.conv1.weight, resnet.conv1.weight)


def test_a_mask_rcnn_checkpoint_gives_its_resnet_body_to_the_encoder(tmp_path):
    detector = tiny_config().build(NUM_CLASSES, 92, initial_weights=False)
    path = tmp_path / "best.pt"
    torch.save({"model": detector.state_dict(), "num_classes": NUM_CLASSES}, path)
    model = unet_config(encoder_weights=str(path)).build(NUM_CLASSES, 92)
    assert torch.equal(model.net.encoder.layer3[0].conv1.weight, detector.backbone.body.layer3[0].conv1.weight)


def test_weights_of_another_network_are_refused_with_the_file_named(tmp_path):
    path = tmp_path / "resnet34.pth"
    torch.save(torchvision.models.resnet34(weights=None).state_dict(), path)
    refused = (r"resnet34.pth: not the weights of a ResNet like unet.encoder's: \d+ tensors absent, of "
               r"another shape or extra \(the ResNet has 120\), e\.g\. layer1\.2")
    with pytest.raises(WeightsError, match=refused):
        unet_config(encoder_weights=str(path)).build(NUM_CLASSES, 92)
    with pytest.raises(WeightsError, match="missing.pth: weights file not found"):
        unet_config(encoder_weights=str(tmp_path / "missing.pth")).build(NUM_CLASSES, 92)


def test_building_and_training_reach_no_network(offline):
    """smp downloads ImageNet weights when asked for them; the family never asks."""
    unet_config(encoder="resnet50").build(NUM_CLASSES, 92)  # the original comparison's encoder
    model = unet_config().build(NUM_CLASSES, 92)
    image, target = one_image()
    sum(model.train()([image], [target]).values()).backward()
    model.eval()([image])
