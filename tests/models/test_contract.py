"""The detection contract (``pipeline.models.contract``), checked alike on every family.

One suite run over every family, as segmentation-models-pytorch runs one tester over every
architecture: train mode on generated valid batches (sizes, empty images, one-pixel and
border-touching masks, piles of overlapping categories, a crowd of instances) gives named finite
scalar losses with finite gradients; eval mode on blank, noise and saturated images gives
well-formed detections in each image's bounds; the same seed and inputs give the same losses.
Every family the registry knows is checked with its smoke settings (``Family.smoke_settings``), and a family
registered from outside (``tests/fake_family.py``) with them; a new family's package needs nothing here.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st
from torch import nn

from family_subjects import FAMILIES, NUM_ATTRIBUTES, NUM_CLASSES, Subject, build_subject

TOLERANCE = 1e-3  # on box coordinates, in pixels


@pytest.fixture(scope="module", params=FAMILIES)
def subject(request) -> Subject:
    """Each family's model, built once for the module."""
    return build_subject(request.param)


Region = tuple[int, int, int, int]  # y0, x0, y1, x1: rows y0 to y1 - 1, columns x0 to x1 - 1
SHAPES = ("solid", "speckle", "cross", "frame")  # each covers its region's four sides: its box is the region
FILLS = ("noise", "blank", "saturated")


@dataclass(frozen=True)
class Instance:
    region: Region
    shape: str  # one of SHAPES
    label: int  # 1-based category
    attributes: tuple[int, ...] = ()  # the attributes it carries; none is a row of zeros


@dataclass(frozen=True)
class ImageSpec:
    height: int
    width: int
    instances: tuple[Instance, ...] = ()
    fill: str = "noise"  # one of FILLS
    seed: int = 0  # of the noise, and of speckled masks


# Valid inputs by construction -------------------------------------------------------------------------------


def mask_of(instance: Instance, height: int, width: int, seed: int = 0) -> torch.Tensor:
    """The (height, width) uint8 mask of ``instance``; every shape touches the four sides of its region."""
    y0, x0, y1, x1 = instance.region
    mask = torch.zeros((height, width), dtype=torch.uint8)
    inside = mask[y0:y1, x0:x1]  # a view: writing it writes the mask
    if instance.shape == "solid":
        inside[:] = 1
    elif instance.shape == "speckle":
        generator = torch.Generator().manual_seed(seed)
        inside[:] = torch.rand(inside.shape, generator=generator) < 0.5
        inside[[0, 0, -1, -1], [0, -1, 0, -1]] = 1  # the corners: the box is the region
    elif instance.shape == "cross":
        inside[(y1 - y0) // 2, :] = 1
        inside[:, (x1 - x0) // 2] = 1
    elif instance.shape == "frame":
        inside[[0, -1], :] = 1
        inside[:, [0, -1]] = 1
    else:
        raise ValueError(f"unknown shape {instance.shape!r}")
    return mask


def target_of(masks: torch.Tensor, labels: list[int], attributes: torch.Tensor) -> dict[str, torch.Tensor]:
    """The contract's target of (N, h, w) masks: each box the bounding box of its mask's pixels, in pixels,
    x1 and y1 exclusive (a one-pixel mask at row r, column c has the box c, r, c + 1, r + 1)."""
    boxes = torch.zeros((len(masks), 4), dtype=torch.float32)
    for k, mask in enumerate(masks):
        rows, cols = torch.nonzero(mask.any(1)).flatten(), torch.nonzero(mask.any(0)).flatten()
        assert len(rows), "an instance has at least one pixel"
        boxes[k] = torch.tensor([cols[0], rows[0], cols[-1] + 1, rows[-1] + 1], dtype=torch.float32)
    return {"boxes": boxes, "labels": torch.tensor(labels, dtype=torch.int64).reshape(-1),
            "masks": masks, "attributes": attributes.float()}


def image_of(spec: ImageSpec) -> torch.Tensor:
    if spec.fill == "noise":
        return torch.rand((3, spec.height, spec.width), generator=torch.Generator().manual_seed(spec.seed))
    return torch.full((3, spec.height, spec.width), 1.0 if spec.fill == "saturated" else 0.0)


def sample_of(spec: ImageSpec) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """An image and its target; an image without instances has (0, ...) tensors of the same dtypes."""
    height, width = spec.height, spec.width
    masks = torch.zeros((0, height, width), dtype=torch.uint8)
    if spec.instances:
        masks = torch.stack([mask_of(i, height, width, spec.seed + k) for k, i in enumerate(spec.instances)])
    attributes = torch.zeros((len(spec.instances), NUM_ATTRIBUTES))
    for k, instance in enumerate(spec.instances):
        attributes[k, list(instance.attributes)] = 1.0
    return image_of(spec), target_of(masks, [i.label for i in spec.instances], attributes)


def batch_of(specs: list[ImageSpec]) -> tuple[list[torch.Tensor], list[dict[str, torch.Tensor]]]:
    images, targets = zip(*map(sample_of, specs), strict=True)
    return list(images), list(targets)


def crowd(height: int = 96, width: int = 128, rows: int = 10, cols: int = 12) -> ImageSpec:
    """``rows * cols`` small instances on a grid, of every category and half of them with attributes,
    and four large ones across the grid: over a hundred instances in one image."""
    step_y, step_x = height // rows, width // cols
    instances = [Instance((r * step_y, c * step_x, (r + 1) * step_y - 1, (c + 1) * step_x - 1), SHAPES[k % 4],
                          1 + k % (NUM_CLASSES - 1), (k % NUM_ATTRIBUTES,) if k % 2 else ())
                 for k, (r, c) in enumerate((r, c) for r in range(rows) for c in range(cols))]
    instances += [Instance((0, 0, height, width), "frame", 1), Instance((5, 5, height - 5, width - 5), "solid", 2),
                  Instance((0, 0, height // 2, width), "solid", 3, (0, 1)), Instance((0, 0, height, 1), "solid", 4)]
    return ImageSpec(height, width, tuple(instances))


# Strategies -------------------------------------------------------------------------------------------------


def regions(height: int, width: int) -> st.SearchStrategy[Region]:
    """Any region of the image, one pixel, or the whole image (its masks touch every border)."""
    corner = st.tuples(st.integers(0, height - 1), st.integers(0, width - 1))
    anywhere = corner.flatmap(lambda c: st.tuples(st.just(c[0]), st.just(c[1]), st.integers(c[0] + 1, height),
                                                  st.integers(c[1] + 1, width)))
    one_pixel = corner.map(lambda c: (c[0], c[1], c[0] + 1, c[1] + 1))
    return st.one_of(anywhere, one_pixel, st.just((0, 0, height, width)))


labels = st.integers(1, NUM_CLASSES - 1)
attribute_sets = st.one_of(st.just(()), st.sets(st.integers(0, NUM_ATTRIBUTES - 1), min_size=1).map(sorted)
                           .map(tuple))


@st.composite
def piles(draw: st.DrawFn, height: int, width: int) -> list[Instance]:
    """Two to five instances of different categories on nearly the same pixels."""
    y0, x0, y1, x1 = draw(regions(height, width))
    categories = draw(st.lists(labels, min_size=2, max_size=5, unique=True))
    return [Instance((y0, x0, max(y1 - k, y0 + 1), max(x1 - k, x0 + 1)), draw(st.sampled_from(SHAPES)), label,
                     draw(attribute_sets)) for k, label in enumerate(categories)]


#: Sides of 32 to 128 px, and the extreme aspect ratios the image cache makes of long thin photos. Never a lone
#: image of 32 x 32 or less: its 1 x 1 map at stride 32 has one value per channel, which train-mode BatchNorm
#: refuses (the dataset fits images to model.min_size, so none reaches a family).
sizes = st.one_of(st.tuples(st.integers(32, 128), st.integers(33, 128)), st.sampled_from([(32, 200), (200, 32)]))


@st.composite
def image_specs(draw: st.DrawFn) -> ImageSpec:
    height, width = draw(sizes)
    single = st.builds(Instance, regions(height, width), st.sampled_from(SHAPES), labels, attribute_sets)
    instances = draw(st.lists(single, max_size=6))
    if draw(st.booleans()):
        instances += draw(piles(height, width))
    return ImageSpec(height, width, tuple(instances), draw(st.sampled_from(FILLS)), draw(st.integers(0, 2**16)))


# Checks -----------------------------------------------------------------------------------------------------


def check_losses(losses: object) -> None:
    assert isinstance(losses, dict) and losses, f"train mode returns a dict of losses, not {type(losses)}"
    for name, value in losses.items():
        assert isinstance(name, str) and isinstance(value, torch.Tensor), (name, type(value))
        assert value.ndim == 0 and value.dtype.is_floating_point, (name, value.shape, value.dtype)
        assert bool(torch.isfinite(value)), f"{name} = {value.item()}"


def check_backward(model: nn.Module, losses: dict[str, torch.Tensor]) -> None:
    sum(losses.values()).backward()
    gradients = {name: p.grad for name, p in model.named_parameters() if p.grad is not None}
    assert gradients, "no parameter got a gradient"
    bad = [name for name, grad in gradients.items() if not bool(torch.isfinite(grad).all())]
    assert not bad, f"non-finite gradients: {bad[:5]}"


def check_in_unit_interval(name: str, values: torch.Tensor) -> None:
    assert values.dtype.is_floating_point, (name, values.dtype)
    assert bool(((values >= 0) & (values <= 1)).all()), f"{name} outside [0, 1]: {values.min()}, {values.max()}"


def check_boxes(boxes: torch.Tensor, n: int, height: int, width: int) -> None:
    assert boxes.shape == (n, 4) and boxes.dtype.is_floating_point, (boxes.shape, boxes.dtype)
    assert bool(torch.isfinite(boxes).all()), boxes
    x0, y0, x1, y1 = boxes.unbind(1)
    for low, high, side in ((x0, x1, width), (y0, y1, height)):
        inside = (low >= -TOLERANCE) & (low <= high + TOLERANCE) & (high <= side + TOLERANCE)
        assert bool(inside.all()), f"boxes outside the {width} x {height} image: {boxes[~inside]}"


def check_detections(found: object, image: torch.Tensor, model: nn.Module) -> int:
    """The contract's eval output for one image; returns its number of detections."""
    assert isinstance(found, dict), type(found)
    n = len(found["labels"])
    check_boxes(found["boxes"], n, *image.shape[-2:])
    labels_ = found["labels"]
    assert labels_.shape == (n,) and labels_.dtype == torch.int64, (labels_.shape, labels_.dtype)
    assert bool(((labels_ >= 1) & (labels_ <= NUM_CLASSES - 1)).all()), labels_
    assert found["scores"].shape == (n,), found["scores"].shape
    check_in_unit_interval("scores", found["scores"])
    size = model.mask_format.size
    assert found["masks"].shape == (n, 1, size, size), found["masks"].shape
    check_in_unit_interval("masks", found["masks"])
    if model.num_attributes > 0:
        assert found["attributes"].shape == (n, model.num_attributes), found["attributes"].shape
        check_in_unit_interval("attributes", found["attributes"])
    return n


# The suite --------------------------------------------------------------------------------------------------

#: Batches every family is trained on besides the generated ones: extreme aspect ratios, a mask across the whole
#: image, an empty image and a one-pixel mask in a corner; images without instances alone; a pile of instances
#: of four categories on nearly the same pixels inside a frame along every border.
EXTREMES = [ImageSpec(32, 200, (Instance((0, 0, 32, 200), "cross", 5, (0, 2)),)), ImageSpec(200, 32),
            ImageSpec(64, 64, (Instance((63, 0, 64, 1), "solid", 46),), "saturated")]
NOTHING = [ImageSpec(48, 64, fill="blank"), ImageSpec(64, 48)]
PILE = [ImageSpec(72, 56, (*(Instance((8 + k, 6, 60, 50 - k), SHAPES[k], 10 + k, (k,) if k % 2 else ())
                             for k in range(4)), Instance((0, 0, 72, 56), "frame", 46, (0, 1, 2, 3))), seed=3)]


def test_targets_are_built_from_their_masks():
    one_pixel = sample_of(ImageSpec(40, 50, (Instance((7, 9, 8, 10), "speckle", 3, (1,)),)))[1]
    assert one_pixel["boxes"].tolist() == [[9, 7, 10, 8]] and one_pixel["masks"].sum() == 1
    whole = sample_of(ImageSpec(40, 50, tuple(Instance((0, 0, 40, 50), shape, 1) for shape in SHAPES)))[1]
    assert whole["boxes"].tolist() == [[0, 0, 50, 40]] * 4 and whole["attributes"].sum() == 0
    empty = sample_of(ImageSpec(40, 50))[1]
    assert empty["boxes"].shape == (0, 4) and empty["boxes"].dtype == torch.float32
    assert empty["labels"].shape == (0,) and empty["labels"].dtype == torch.int64
    assert empty["masks"].shape == (0, 40, 50) and empty["masks"].dtype == torch.uint8
    assert empty["attributes"].shape == (0, NUM_ATTRIBUTES) and empty["attributes"].dtype == torch.float32
    assert len(crowd().instances) >= 100


def check_train_step(model: nn.Module, specs: list[ImageSpec]) -> None:
    losses = model(*batch_of(specs))
    check_losses(losses)
    check_backward(model, losses)


@settings(max_examples=8, derandomize=True, deadline=None)
@given(st.lists(image_specs(), min_size=1, max_size=3))
@example(EXTREMES)
@example(NOTHING)
@example(PILE)
def test_train_mode_returns_finite_scalar_losses_with_finite_gradients(subject, specs):
    check_train_step(subject.fresh(train=True), specs)


def test_train_mode_takes_over_a_hundred_instances_in_one_image(subject):
    check_train_step(subject.fresh(train=True), [crowd(), ImageSpec(64, 96, (Instance((10, 10, 50, 80), "solid", 7),))])


def test_eval_mode_returns_well_formed_detections_of_blank_noise_and_saturated_images(subject):
    model = subject.fresh(train=False)
    specs = [ImageSpec(64, 64, fill="blank"), ImageSpec(48, 96, fill="noise"), ImageSpec(96, 40, fill="saturated"),
             ImageSpec(32, 200, fill="noise", seed=1), ImageSpec(200, 32, fill="blank")]
    images = [image_of(spec) for spec in specs]
    with torch.no_grad():
        found = model(images)
    assert isinstance(found, list) and len(found) == len(images), type(found)
    counts = [check_detections(f, image, model) for f, image in zip(found, images, strict=True)]
    assert sum(counts) > 0, "no detection to check: the configuration's score threshold is too high"


def test_the_same_seed_and_inputs_give_the_same_losses(subject):
    specs = [ImageSpec(64, 80, (Instance((4, 6, 40, 50), "speckle", 12, (1,)), Instance((30, 20, 64, 80), "solid", 3),
                                Instance((10, 10, 11, 11), "solid", 30))),
             ImageSpec(48, 48, (Instance((0, 0, 48, 48), "frame", 8),), "saturated")]
    runs = []
    for _ in range(2):
        model = subject.fresh(train=True)
        runs.append({name: value.item() for name, value in model(*batch_of(specs)).items()})
    assert runs[0] == runs[1]
