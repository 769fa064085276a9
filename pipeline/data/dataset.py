"""A torch Dataset over the instance table and its images, in the form torchvision's Mask R-CNN trains on."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image, UnidentifiedImageError
from torchvision.ops import masks_to_boxes
from torchvision.transforms.v2 import functional as F

from pipeline.config.model import ModelParams
from pipeline.data import rle
from pipeline.data.annotations import DataError
from pipeline.data.attributes import multi_hot
from pipeline.data.folds import read_folds, split
from pipeline.data.pixels import to_rgb
from pipeline.data.transforms import Augment, fit_scale, resize, scaled_size
from pipeline.utils.fingerprint import text_digest
from pipeline.utils.paths import inside


def load_image(path: Path, height: int, width: int, scale: float) -> torch.Tensor:
    """The RGB image as a uint8 (3, h, w) tensor, JPEG-decoded at reduced size when ``scale`` allows.

    PIL's draft mode makes the JPEG decoder skip detail the resize would discard (1/2, 1/4, 1/8
    scaling in the DCT), several times faster on multi-megapixel photos.
    """
    try:
        with Image.open(path) as image:
            if image.size != (width, height):
                raise DataError(f"{path}: image is {image.size[0]}x{image.size[1]}, the table says {width}x{height}")
            target = scaled_size(height, width, min(scale, 1.0))
            image.draft("RGB", (target[1], target[0]))
            return F.pil_to_tensor(to_rgb(image))
    except FileNotFoundError as exc:
        raise DataError(f"{path}: image not found") from exc
    # PIL raises SyntaxError on some broken headers, DecompressionBombError on a size meant to exhaust memory
    except (OSError, UnidentifiedImageError, SyntaxError, Image.DecompressionBombError) as exc:
        raise DataError(f"{path}: cannot read image ({exc})") from exc


def decode_masks(rles: list[str], height: int, width: int) -> torch.Tensor:
    masks = np.zeros((len(rles), height, width), dtype=np.uint8)
    for i, text in enumerate(rles):
        masks[i] = rle.decode(text, height, width)
    return torch.from_numpy(masks)


def boxes_from_masks(masks: torch.Tensor) -> torch.Tensor:
    """Boxes (x1, y1, x2, y2) in pixel-edge coordinates: a one-pixel mask at (x, y) gives (x, y, x+1, y+1).

    ``masks_to_boxes`` returns the last pixel's index as x2/y2, i.e. zero-size boxes for thin
    objects, which Mask R-CNN rejects; the +1 makes every non-empty mask a valid box.
    """
    if not len(masks):
        return torch.zeros((0, 4), dtype=torch.float32)
    return masks_to_boxes(masks) + torch.tensor([0.0, 0.0, 1.0, 1.0])


@dataclass(frozen=True)
class _Image:
    image_id: str
    height: int
    width: int
    rles: list[str]
    labels: list[int]
    attributes: list[tuple[int, ...]]


class InstanceDataset(torch.utils.data.Dataset):
    """One item per image: ``(image, target, meta)``.

    ``image`` is a float (3, h, w) tensor in [0, 1], resized by the scale torchvision's
    Mask R-CNN would apply (``min_size``/``max_size``), times a random factor in training.
    ``target`` has ``boxes``, ``labels`` (category + 1; 0 is background), ``masks`` and
    ``attributes`` (N x ``num_attributes`` multi-hot; a row of zeros is an instance without attributes);
    ``meta`` has ``image_id`` and ``dropped``, the number of instances that became empty
    after resizing and were left out (Mask R-CNN cannot train on empty masks).

    An index is either an int (no augmentation) or ``(index, seed)`` as
    ``pipeline.data.sampler.EpochSampler`` yields (augmented with that seed).
    """

    def __init__(self, instances: pd.DataFrame, image_dir: Path | str, min_size: int, max_size: int,
                 num_attributes: int, augment: Augment | None = None) -> None:
        self.image_dir = Path(image_dir)
        self.min_size, self.max_size, self.num_attributes = min_size, max_size, num_attributes
        self.augment = augment
        self.images = [
            _Image(str(image_id), int(group.height.iloc[0]), int(group.width.iloc[0]), group.rle.tolist(),
                   (group.category.to_numpy(np.int64) + 1).tolist(), [tuple(map(int, a)) for a in group.attributes])
            for image_id, group in instances.groupby("image_id", sort=True)
        ]

    def __len__(self) -> int:
        return len(self.images)

    @property
    def image_ids(self) -> list[str]:
        return [item.image_id for item in self.images]

    def fingerprint(self) -> str:
        """Changes when any image, size, mask or label changes (a resumed run must train on the same data)."""
        return text_digest([f"{x.image_id} {x.height}x{x.width} {x.labels} {x.attributes} {'|'.join(x.rles)}"
                            for x in self.images])

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[torch.Tensor, dict, dict]:
        index, seed = key if isinstance(key, tuple) else (key, None)
        item = self.images[index]
        scale = fit_scale(item.height, item.width, self.min_size, self.max_size)
        path = inside(self.image_dir, item.image_id, "image_id of the instance table")
        high = self.augment.scale_range[1] if self.augment and seed is not None else 1.0
        image = load_image(path, item.height, item.width, scale * high)
        try:
            masks = decode_masks(item.rles, item.height, item.width)
        except rle.RLEError as exc:
            raise DataError(f"{path}: bad mask in the instance table ({exc})") from exc
        if self.augment and seed is not None:
            image, masks = self.augment(image, masks, scale, seed)
        else:
            image, masks = resize(image, masks, scaled_size(item.height, item.width, scale))
        keep = masks.flatten(1).any(1).bool()  # any() of uint8 is uint8, which would index as integers
        target = {"boxes": boxes_from_masks(masks[keep]),
                  "labels": torch.tensor(item.labels, dtype=torch.int64)[keep],
                  "masks": masks[keep],
                  "attributes": multi_hot(item.attributes, self.num_attributes)[keep]}
        meta = {"image_id": item.image_id, "dropped": int((~keep).sum())}
        return F.to_dtype(image, torch.float32, scale=True), target, meta


def collate(batch: list[tuple]) -> tuple[list, list, list]:
    """Lists, not stacked tensors: Mask R-CNN takes images of different sizes."""
    images, targets, metas = zip(*batch, strict=True)
    return list(images), list(targets), list(metas)


def fold_datasets(instances: pd.DataFrame, image_dir: Path | str, folds: Path, fold: int, model_params: ModelParams,
                  num_attributes: int, augment: Augment | None = None,
                  train_limit: int | None = None) -> tuple[InstanceDataset, InstanceDataset]:
    """The training and validation images of fold ``fold`` of ``folds`` (folds.csv), fitted to the model's input
    size; ``augment`` applies to the training images, the first ``train_limit`` of them only when given."""
    train_ids, val_ids = split(read_folds(folds), fold, str(folds))
    train_ids = train_ids[:train_limit] if train_limit else train_ids
    return (_images(instances, train_ids, image_dir, model_params, num_attributes, augment),
            _images(instances, val_ids, image_dir, model_params, num_attributes, None))


def validation_dataset(instances: pd.DataFrame, image_dir: Path | str, folds: Path, fold: int,
                       model_params: ModelParams, num_attributes: int) -> InstanceDataset:
    """The validation images of fold ``fold`` alone, as :func:`fold_datasets` gives them."""
    _, val_ids = split(read_folds(folds), fold, str(folds))
    return _images(instances, val_ids, image_dir, model_params, num_attributes, None)


def _images(instances: pd.DataFrame, image_ids: list[str], image_dir: Path | str, model_params: ModelParams,
            num_attributes: int, augment: Augment | None) -> InstanceDataset:
    return InstanceDataset(instances[instances.image_id.isin(image_ids)], image_dir, model_params.min_size,
                           model_params.max_size, num_attributes, augment)
