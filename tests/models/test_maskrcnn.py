"""Model builders, configurable geometry and the loading of initial weights."""

from __future__ import annotations

import logging
import urllib.error
from fractions import Fraction

import pytest
import torch
from torchvision.ops.misc import FrozenBatchNorm2d

from pipeline.config.params import ParamsError, load_section
from pipeline.models.contract import DetectionModel, MaskFormat
from pipeline.models.families.maskrcnn.params import MASKRCNN_ARCHITECTURES as ARCHITECTURES
from pipeline.models.families.maskrcnn.params import MaskRCNNParams
from pipeline.models.weights import WeightsError

from model_configs import maskrcnn_config
from model_configs import tiny_config as tiny_spec


def one_image() -> tuple[list[torch.Tensor], list[dict]]:
    generator = torch.Generator().manual_seed(0)
    image = torch.rand(3, 64, 96, generator=generator) * 0.2
    masks = torch.zeros(2, 64, 96, dtype=torch.uint8)
    masks[0, 8:40, 10:40] = 1
    masks[1, 30:60, 50:90] = 1
    image[:, masks[0].bool()] += torch.tensor([0.7, 0.1, 0.1])[:, None]
    image[:, masks[1].bool()] += torch.tensor([0.1, 0.1, 0.7])[:, None]
    attributes = torch.zeros(2, 92)
    attributes[0, [20, 61]] = 1  # the category-2 instance carries attributes, the category-23 one none
    target = {"boxes": torch.tensor([[10.0, 8, 40, 40], [50, 30, 90, 60]]), "labels": torch.tensor([3, 24]),
              "masks": masks, "attributes": attributes}
    return [image], [target]


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_loss_goes_down_on_one_repeated_image(architecture):
    torch.manual_seed(0)
    model = tiny_spec(architecture).build(47, 92).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    images, targets = one_image()
    losses = []
    for _ in range(6):
        loss = sum(model(images, targets).values())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert all(map(torch.isfinite, map(torch.tensor, losses)))
    assert sum(losses[-3:]) / 3 < 0.7 * losses[0], losses


def empty_target(height: int, width: int) -> dict:
    return {"boxes": torch.zeros((0, 4)), "labels": torch.zeros(0, dtype=torch.int64),
            "masks": torch.zeros((0, height, width), dtype=torch.uint8), "attributes": torch.zeros((0, 92))}


def test_a_batch_holding_an_image_without_instances_trains():
    torch.manual_seed(0)
    model = tiny_spec().build(47, 92).train()
    images, targets = one_image()
    images.append(torch.rand(3, 64, 80))
    targets.append(empty_target(64, 80))
    losses = model(images, targets)
    assert all(bool(torch.isfinite(value)) for value in losses.values()), losses
    sum(losses.values()).backward()
    alone = model(images[1:], targets[1:])  # only background: no box, mask or attribute target
    assert [alone[key].item() for key in ("loss_box_reg", "loss_mask", "loss_attributes")] == [0.0, 0.0, 0.0]


def test_the_attribute_loss_ignores_the_rois_of_an_image_without_instances():
    torch.manual_seed(0)
    heads = tiny_spec().build(47, 92).roi_heads
    represented = torch.randn(5, heads.attribute_predictor.in_features)
    _, targets = one_image()
    # RoIs 0-2 of the first image (matched to instances 0, 1, 0; the last is background), 3-4 of an empty one.
    matched = [torch.tensor([0, 1, 0]), torch.zeros(2, dtype=torch.int64)]
    labels = [torch.tensor([3, 24, 0]), torch.zeros(2, dtype=torch.int64)]
    loss = heads.attribute_loss(represented, matched, labels, [targets[0], empty_target(64, 80)])
    # Only RoI 0 has a target: instance 0 carries attributes, instance 1 none, RoI 2 is background.
    logits = heads.attribute_predictor(represented[:1])
    expected = torch.nn.functional.binary_cross_entropy_with_logits(logits, targets[0]["attributes"][:1])
    assert torch.allclose(loss, expected)


def test_geometry_and_roi_budgets_come_from_the_spec():
    spec = tiny_spec(aspect_ratios=(0.25, 0.5, 1.0, 2.0), box_detections_per_img=7, rpn_pre_nms_top_n_test=123)
    model = spec.build(47, 92)
    assert model.rpn.anchor_generator.sizes == ((8,), (16,), (32,), (64,), (128,))
    assert model.rpn.head.cls_logits.out_channels == 4
    assert model.roi_heads.detections_per_img == 7
    assert model.rpn._pre_nms_top_n["testing"] == 123
    assert (model.transform.min_size, model.transform.max_size) == ((64,), 96)
    assert model.roi_heads.box_predictor.cls_score.out_features == 47
    light = tiny_spec(mask_head_layers=(128, 64)).build(47, 92)
    convs = [m for m in light.roi_heads.mask_head.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [128, 64]
    assert light.roi_heads.mask_predictor.mask_fcn_logits.out_channels == 47


def test_the_model_keeps_the_contract_images_at_their_size_and_masks_as_roi_maps():
    """The dataset and each TTA view size the images; torchvision would resize them back to min_size."""
    model = tiny_spec(mask_head_layers=(64,)).build(47, 92)
    assert isinstance(model, DetectionModel) and model.num_attributes == 92
    assert model.mask_format == MaskFormat("roi", 28)
    image = torch.rand(3, 50, 70)
    for mode in (True, False):
        model.train(mode)
        assert model.transform.resize(image)[0].shape == image.shape
    with torch.no_grad():
        found = model([image])[0]
    assert found["masks"].shape[1:] == (1, 28, 28) and found["attributes"].shape[1] == 92
    assert (found["boxes"][:, 2:] <= torch.tensor([70, 50])).all()
    assert tiny_spec(attribute_head=False).build(47, 92).num_attributes == 0


def test_roi_poolers_use_the_fpn_strides_whatever_batch_comes_first():
    """torchvision's poolers would guess the level scales from their first batch and keep the guess."""
    from torchvision.ops.poolers import _setup_scales

    strides = [1 / 4, 1 / 8, 1 / 16, 1 / 32]
    model = maskrcnn_config(min_size=66, max_size=200).build(47, 92).eval()
    image = torch.rand(3, 66, 100)  # batched at 96 x 128: the padding is a third of the height
    with torch.no_grad():
        features = model.backbone(model.transform([image])[0].tensors)
        model([image])
    levels = [features[name] for name in model.roi_heads.box_roi_pool.featmap_names]
    assert _setup_scales(levels, [(66, 100)], 224, 4)[0][0] == 1 / 2, "what torchvision alone would infer"
    for pooler in (model.roi_heads.box_roi_pool, model.roi_heads.mask_roi_pool):
        assert pooler.scales == strides and (pooler.map_levels.k_min, pooler.map_levels.k_max) == (2, 5)
    assert _setup_scales(levels, [(96, 128)], 224, 4)[0] == strides, "without padding the guess is the stride"


def test_params_section_validates_the_spec(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("maskrcnn:\n  architecture: maskrcnn_resnet18_fpn\n  anchor_sizes: [16, 32, 64]\n")
    with pytest.raises(ParamsError, match="anchor_sizes needs 5"):
        load_section(path, "maskrcnn", MaskRCNNParams)
    path.write_text("maskrcnn:\n  architecture: maskrcnn_resnet18_fpn\n  anchor_sises: [16, 32, 64, 128, 256]\n")
    with pytest.raises(ParamsError, match="anchor_sises"):
        load_section(path, "maskrcnn", MaskRCNNParams)
    path.write_text("maskrcnn:\n  architecture: maskrcnn_resnet18_fpn\n  anchor_sizes: [16, 32, 64, 128, 256]\n")
    assert load_section(path, "maskrcnn", MaskRCNNParams).anchor_sizes == (16, 32, 64, 128, 256)


def test_state_dict_with_other_classes_loads_what_fits_and_says_what_it_did(tmp_path, caplog):
    torch.manual_seed(1)
    source = tiny_spec().build(91, 92)
    path = tmp_path / "coco_like.pt"
    torch.save(source.state_dict(), path)
    torch.manual_seed(2)
    with caplog.at_level(logging.INFO, logger="pipeline.models.families.maskrcnn"):
        model = tiny_spec(weights=str(path)).build(47, 92)
    theirs, ours = source.state_dict(), model.state_dict()
    for key in ("backbone.body.layer1.0.conv1.weight", "backbone.fpn.layer_blocks.0.0.weight",
                "rpn.head.cls_logits.weight", "roi_heads.mask_head.0.0.weight",
                "roi_heads.mask_predictor.conv5_mask.weight"):
        assert torch.equal(theirs[key], ours[key]), key
    assert ours["roi_heads.box_predictor.cls_score.weight"].shape == (47, 1024)
    assert ours["roi_heads.mask_predictor.mask_fcn_logits.weight"].shape[0] == 47
    log = caplog.text
    assert "loaded backbone.body" in log and "loaded roi_heads.mask_head" in log
    assert "re-initialised roi_heads.box_predictor: 4 tensors" in log
    assert "[91, 1024] there, [47, 1024] here" in log
    assert "re-initialised roi_heads.mask_predictor: 2 tensors" in log
    assert "re-initialised backbone" not in log


def test_our_checkpoint_dict_is_accepted_as_initial_weights(tmp_path):
    source = tiny_spec().build(47, 92)
    path = tmp_path / "best.pt"
    torch.save({"model": source.state_dict(), "score": {"mask_ap": 0.3}}, path)
    model = tiny_spec(weights=str(path)).build(47, 92)
    assert all(torch.equal(a, b) for a, b in zip(source.state_dict().values(), model.state_dict().values(),
                                                  strict=True))


@pytest.mark.parametrize("content", [b"", b"not a torch file", None])
def test_unreadable_weights_name_the_file(tmp_path, content):
    path = tmp_path / "weights.pt"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(WeightsError, match="weights.pt"):
        tiny_spec(weights=str(path)).build(47, 92)


def test_weights_only_loading_refuses_pickled_code(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"model": {"x": torch.zeros(1)}, "code": Fraction(1, 3)}, path)  # any class outside the allow-list
    with pytest.raises(WeightsError, match="evil.pt: cannot read weights"):
        tiny_spec(weights=str(path)).build(47, 92)


def test_offline_torchvision_weights_give_advice(monkeypatch):
    def offline(self, *args, **kwargs):
        raise urllib.error.URLError("no route to host")

    from torchvision.models import WeightsEnum

    monkeypatch.setattr(WeightsEnum, "get_state_dict", offline)
    with pytest.raises(WeightsError, match="set maskrcnn.weights to the file's path"):
        tiny_spec("maskrcnn_resnet50_fpn_v2", weights="torchvision").build(47, 92)


def test_fine_tuning_freezes_batchnorm_and_the_lower_backbone(tmp_path):
    torch.save(tiny_spec().build(47, 92).state_dict(), tmp_path / "start.pt")
    model = tiny_spec(weights=str(tmp_path / "start.pt"), freeze_batchnorm=True,
                      trainable_backbone_layers=3).build(47, 92)
    body = model.backbone.body
    assert isinstance(body.bn1, FrozenBatchNorm2d) and isinstance(body.layer4[0].bn1, FrozenBatchNorm2d)
    assert not any(p.requires_grad for n, p in body.named_parameters() if n.startswith(("conv1", "layer1")))
    assert all(p.requires_grad for n, p in body.named_parameters() if n.startswith(("layer2", "layer3", "layer4")))
    assert all(p.requires_grad for p in model.roi_heads.parameters())
