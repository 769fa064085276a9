"""The contract's optional abilities (``pipeline.models.contract.ABILITIES``), each checked on every family that
has it, and the attributes of given boxes on every family that predicts attributes."""

from __future__ import annotations

import inspect
from collections.abc import Callable

import pytest
import torch
from torch import nn

from pipeline.models import contract

from family_subjects import FAMILIES, NUM_CLASSES, Subject, build_subject
from model_configs import one_image

#: What docs/models.md says each built-in family offers.
DOCUMENTED = {"maskrcnn": {"instance_features", "backbone"}, "unet": {"backbone", "inference_counts", "confusion"},
              "yolact": {"backbone"}, "mask2former": {"backbone"}, "fake": set()}


@pytest.fixture(scope="module", params=FAMILIES)
def subject(request) -> Subject:
    return build_subject(request.param)


def _two_images() -> tuple[list[torch.Tensor], list[dict]]:
    """The test image twice, the second cropped: two sizes, three instances in all (one cut by the crop)."""
    image, target = one_image()
    crop = {**target, "masks": target["masks"][:1, :48, :60], "boxes": torch.tensor([[10.0, 8, 60, 48]]),
            "labels": target["labels"][:1], "attributes": target["attributes"][:1]}
    return [image, image[:, :48, :60].contiguous()], [target, crop]


def check_instance_features(model: nn.Module) -> None:
    images, targets = _two_images()
    found = model.instance_features(images, [t["boxes"] for t in targets], [t["masks"] for t in targets])
    assert found and all(v.ndim == 2 and len(v) == 3 and torch.isfinite(v).all() for v in found.values()), found


def check_backbone(model: nn.Module) -> None:
    assert isinstance(model.backbone, nn.Module)
    inside = {id(p) for p in model.backbone.parameters()}
    assert inside and inside <= {id(p) for p in model.parameters()}, "compiling it would not speed the model up"


def check_inference_counts(model: nn.Module) -> None:
    model.inference_counts.clear()
    found = model(_two_images()[0])
    counts = model.inference_counts
    assert counts and all(isinstance(v, int) and v >= 0 for v in counts.values())
    assert counts["kept"] == sum(len(f["boxes"]) for f in found)


def check_confusion(model: nn.Module) -> None:
    images, targets = _two_images()
    counts = model.confusion(images, targets)
    assert counts.shape == (NUM_CLASSES, NUM_CLASSES)
    assert counts.sum().item() == sum(image.shape[-2] * image.shape[-1] for image in images), "each pixel once"


CHECKS: dict[str, Callable[[nn.Module], None]] = {
    "instance_features": check_instance_features, "backbone": check_backbone,
    "inference_counts": check_inference_counts, "confusion": check_confusion}


def test_every_optional_ability_has_its_check():
    assert set(CHECKS) == set(contract.ABILITIES)


def test_each_ability_a_family_has_works_as_the_contract_says(subject):
    model = subject.fresh(train=False)
    for name, ability in contract.ABILITIES.items():
        if isinstance(model, ability):
            with torch.no_grad():
                CHECKS[name](model)


def test_the_families_have_the_abilities_the_docs_give_them_on_every_python(subject):
    """isinstance on a protocol looks its members up statically from Python 3.12 on: a submodule that
    nn.Module keeps in ``_modules`` is not found there, so each member must be a class or instance attribute."""
    model = subject.fresh(train=False)
    has = {name for name, ability in contract.ABILITIES.items() if isinstance(model, ability)}
    assert has == DOCUMENTED.get(subject.name, has)
    for name in has:
        inspect.getattr_static(model, name)  # AttributeError: isinstance would say no on Python >= 3.12


def test_a_family_with_attributes_gives_those_of_given_boxes(subject):
    model = subject.fresh(train=False)
    if not model.num_attributes:
        return  # the UNet's: categories only
    assert isinstance(model, contract.BoxAttributes), "ModelConfig.build refuses such a model"
    images, targets = _two_images()
    with torch.no_grad():
        found = model.attributes_of_boxes(images, [t["boxes"] for t in targets])
    assert [tuple(f.shape) for f in found] == [(len(t["boxes"]), model.num_attributes) for t in targets]
    assert all(((f >= 0) & (f <= 1)).all() for f in found)
