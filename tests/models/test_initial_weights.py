"""Every source of initial weights that docs/models.md and docs/training.md list, into every family's ResNet."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torchvision
from torchvision.ops.misc import FrozenBatchNorm2d

from pipeline.models.registry import family
from pipeline.models.weights import WeightsError

from model_configs import changed, one_image, tiny_config, unet_config, yolact_config

NUM_CLASSES = 47
CONFIGS = {"maskrcnn": tiny_config, "unet": unet_config, "yolact": yolact_config}


def resnet_of(model: torch.nn.Module) -> torch.nn.Module:
    """The family's ResNet: Mask R-CNN's and YOLACT's backbone body, the UNet's encoder."""
    return model.net.encoder if hasattr(model, "net") else model.backbone.body


def randomised(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    """``model`` with every ResNet tensor (BatchNorm statistics included) drawn anew, so sources differ."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for tensor in resnet_of(model).state_dict().values():
            if tensor.is_floating_point():
                tensor.copy_(torch.rand(tensor.shape, generator=generator) + 0.5)
    return model


def imagenet_file(path: Path) -> torch.nn.Module:
    """torchvision's ImageNet ResNet-18 file: a bare state dict, its classifier included."""
    resnet = torchvision.models.resnet18(weights=None)
    with torch.no_grad():
        resnet.conv1.weight.fill_(0.25)
        resnet.layer4[1].bn2.running_var.fill_(3.0)
    torch.save(resnet.state_dict(), path)
    return resnet


def checkpoint_file(path: Path, name: str, bare: bool = False, frozen: bool = False) -> torch.nn.Module:
    """A checkpoint of this project's family ``name`` ({"model": ...}), or its bare state dict (torchvision's
    detector files are bare); ``frozen``: of a run with frozen BatchNorm, which has no step counters (as
    torchvision's COCO detectors). Its ResNet is what the file offers."""
    config = CONFIGS[name]()
    if frozen:
        config = changed(config, freeze_batchnorm=True, **{family(name).weights_param: "a file"})
    model = randomised(config.build(NUM_CLASSES, 92, initial_weights=False), seed=len(name))
    state = model.state_dict()
    torch.save(state if bare else {"model": state, "num_classes": NUM_CLASSES}, path)
    return resnet_of(model)


SOURCES = {
    "imagenet": imagenet_file,
    "maskrcnn checkpoint": lambda path: checkpoint_file(path, "maskrcnn"),
    "torchvision detector": lambda path: checkpoint_file(path, "maskrcnn", bare=True, frozen=True),
    "frozen unet checkpoint": lambda path: checkpoint_file(path, "unet", frozen=True),
    "unet checkpoint": lambda path: checkpoint_file(path, "unet"),
    "yolact checkpoint": lambda path: checkpoint_file(path, "yolact"),
}


@pytest.mark.parametrize("source", SOURCES)
@pytest.mark.parametrize("name", CONFIGS)
def test_a_family_takes_its_resnet_from_every_listed_source(tmp_path, name, source):
    path = tmp_path / "weights.pt"
    offered = SOURCES[source](path)
    config = CONFIGS[name]()
    model = changed(config, **{family(name).weights_param: str(path)}).build(NUM_CLASSES, 92)
    mine = resnet_of(model).state_dict()
    theirs = offered.state_dict()
    assert set(mine) - set(theirs) <= {key for key in mine if key.endswith("num_batches_tracked")}
    differing = [key for key, tensor in mine.items() if key in theirs and not torch.equal(tensor, theirs[key])]
    assert not differing, f"{name} from {source}: {len(differing)} tensors differ, e.g. {differing[:3]}"


@pytest.mark.parametrize("name", CONFIGS)
def test_a_file_without_a_matching_resnet_is_refused_with_its_name(tmp_path, name):
    path = tmp_path / "resnet34.pth"
    torch.save(torchvision.models.resnet34(weights=None).state_dict(), path)
    config = changed(CONFIGS[name](), **{family(name).weights_param: str(path)})
    with pytest.raises(WeightsError, match=r"resnet34.pth: not the weights of a ResNet like \w+\.\w+"):
        config.build(NUM_CLASSES, 92)


@pytest.mark.parametrize("name", ["unet", "yolact"])
def test_fine_tuning_freezes_the_loaded_resnets_batchnorm_and_trains_the_rest(tmp_path, name):
    """As Mask R-CNN's ``freeze_batchnorm``: the ResNet keeps the file's statistics through training steps."""
    offered = imagenet_file(tmp_path / "resnet18.pth")
    config = changed(CONFIGS[name](), **{family(name).weights_param: str(tmp_path / "resnet18.pth"),
                                         "freeze_batchnorm": True})
    model = config.build(NUM_CLASSES, 92).train()
    resnet = resnet_of(model)
    norms = [m for m in resnet.modules() if "BatchNorm" in type(m).__name__]
    assert norms and all(isinstance(m, FrozenBatchNorm2d) for m in norms)
    image, target = one_image()
    sum(model([image, image.flip(-1)], [target, target]).values()).backward()
    state = resnet.state_dict()
    assert torch.equal(state["layer4.1.bn2.running_var"], offered.layer4[1].bn2.running_var)
    assert resnet.conv1.weight.grad is not None, "the convolutions still train"
    others = [m for n, m in model.named_modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert name == "yolact" or others, "the UNet's decoder, from scratch, keeps its trainable BatchNorm"
    unfrozen = changed(CONFIGS[name](), **{family(name).weights_param: str(tmp_path / "resnet18.pth")})
    assert not any(isinstance(m, FrozenBatchNorm2d) for m in unfrozen.build(NUM_CLASSES, 92).modules())


@pytest.mark.parametrize("name", CONFIGS)
def test_frozen_batchnorm_without_initial_weights_is_refused(name):
    config = changed(CONFIGS[name](), freeze_batchnorm=True)  # valid params: a Kaggle session sets the path later
    with pytest.raises(WeightsError, match=rf"{name}.freeze_batchnorm: true needs initial weights"):
        config.build(NUM_CLASSES, 92)
    assert config.build(NUM_CLASSES, 92, initial_weights=False) is not None, "a checkpoint's weights come next"


def test_a_yolact_checkpoint_gives_mask_rcnn_its_resnet_but_not_its_fpn_of_other_levels(tmp_path):
    offered = checkpoint_file(tmp_path / "yolact.pt", "yolact")
    torch.manual_seed(0)
    fresh = tiny_config().build(NUM_CLASSES, 92)
    torch.manual_seed(0)  # the same initial weights, before the file's are loaded
    model = changed(tiny_config(), weights=str(tmp_path / "yolact.pt")).build(NUM_CLASSES, 92)
    assert torch.equal(model.backbone.body.layer3[0].conv1.weight, offered.layer3[0].conv1.weight)
    # YOLACT's FPN is on C3-C5: its first output convolution (P3's) has the shape of Mask R-CNN's P2 one.
    assert torch.equal(model.backbone.fpn.layer_blocks[0][0].weight, fresh.backbone.fpn.layer_blocks[0][0].weight)
