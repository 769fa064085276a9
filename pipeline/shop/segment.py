"""Any photo in, its items out: the trained model with TTA and the tuned post-processing, on the photo's own size.

The masks lie on the photo's grid: its own size, or scaled down so that its long side is
``segment.max_side`` (one bool mask of a 50-megapixel photo is 50 MB); boxes are in the photo's
pixels either way.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torchvision.transforms.v2 import functional as F

from pipeline.config.inference import PostprocessParams
from pipeline.config.model import ModelParams
from pipeline.data.labels import LabelSet
from pipeline.data.pixels import to_rgb
from pipeline.data.transforms import fit_scale, scaled_size
from pipeline.inference.detections import ImageRecord
from pipeline.inference.postprocess import process_image
from pipeline.inference.predict import Inference, predict_batch
from pipeline.shop.photos import DECODE_ERRORS, PHOTO_FORMATS
from pipeline.utils.errors import PipelineError


class PhotoError(PipelineError):
    """A file that is not a readable image."""


@dataclass
class Photo:
    """A photo upright (EXIF orientation applied) in RGB, at the size the largest TTA view needs."""

    name: str  # the file's path, or the name given with an image in memory
    height: int  # the photo's own size
    width: int
    pixels: torch.Tensor  # uint8 (3, h, w), h <= height
    image: Image.Image | None = None  # the full-size photo when it came from memory (a file is decoded again)

    def grid(self, max_side: int) -> tuple[int, int]:
        """(height, width) of the masks: the photo's size, scaled down to a long side of ``max_side``."""
        return scaled_size(self.height, self.width, min(1.0, max_side / max(self.height, self.width)))


@dataclass
class Item:
    """One found item: category, attributes (label ids), score, box (photo pixels) and mask (on the grid)."""

    category: int
    attributes: tuple[int, ...]
    score: float
    box: tuple[float, float, float, float]  # x0, y0, x1, y1
    mask: np.ndarray  # bool (grid height, grid width)


#: A photo: its file, or an image in memory (a PIL image, or a uint8 array (h, w), (h, w, 3) RGB or (h, w, 4) RGBA).
PhotoSource = Path | str | Image.Image | np.ndarray


def read_photo(path: Path | str, model_params: ModelParams, max_scale: float) -> Photo:
    """Decode a photo (``PHOTO_FORMATS``: grayscale, palette and alpha too); a clear error for anything else."""
    path = Path(path)
    if path.is_dir():
        raise PhotoError(f"{path}: a folder, not a photo (give the photos' files, e.g. {path}/*.jpg)")
    if not path.is_file():
        raise PhotoError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise PhotoError(f"{path}: the file is empty")
    try:
        with Image.open(path, formats=PHOTO_FORMATS) as opened:
            image = to_rgb(ImageOps.exif_transpose(opened))
    except UnidentifiedImageError as exc:
        raise PhotoError(f"{path}: not an image ({', '.join(PHOTO_FORMATS)})") from exc
    except DECODE_ERRORS as exc:
        raise PhotoError(f"{path}: not an image PIL can read ({exc})") from exc
    return _fitted(image, str(path), model_params, max_scale, keep=False)


def photo_in_memory(image: Image.Image | np.ndarray, name: str, model_params: ModelParams,
                    max_scale: float) -> Photo:
    """A PIL image (EXIF orientation applied) or a uint8 array (h, w), (h, w, 3) RGB or (h, w, 4) RGBA."""
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8 or image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (3, 4)):
            raise PhotoError(f"{name}: an array photo must be uint8 of shape (h, w), (h, w, 3) or (h, w, 4), not "
                             f"{image.dtype} {image.shape}")
        if min(image.shape[:2]) < 1:
            raise PhotoError(f"{name}: an empty array {image.shape}")
        image = Image.fromarray(np.ascontiguousarray(image))
    elif not isinstance(image, Image.Image):
        raise PhotoError(f"{name}: a photo is a path, a PIL image or a numpy array, not {type(image).__name__}")
    try:  # a PIL image opened lazily is decoded here: a damaged one fails here
        image = to_rgb(ImageOps.exif_transpose(image))
    except DECODE_ERRORS as exc:
        raise PhotoError(f"{name}: cannot read this image ({exc})") from exc
    return _fitted(image, name, model_params, max_scale, keep=True)


def _fitted(image: Image.Image, name: str, model_params: ModelParams, max_scale: float, keep: bool) -> Photo:
    """The photo with its pixels at the size the largest view needs; ``keep`` the full-size image beside them."""
    height, width = image.height, image.width
    fitted = fit_scale(height, width, model_params.min_size, model_params.max_size)
    needed = scaled_size(height, width, min(1.0, fitted * max_scale))
    pixels = image
    if needed != (height, width):
        pixels = image.resize((needed[1], needed[0]), Image.Resampling.BILINEAR, reducing_gap=2.0)
    return Photo(name, height, width, F.pil_to_tensor(pixels), image if keep else None)


def segment_photo(inference: Inference, photo: Photo, params: PostprocessParams, labels: LabelSet,
                  max_side: int) -> list[Item]:
    """The photo's items, best first, as ``stages.submission`` would submit them (on the photo's grid)."""
    record = ImageRecord(Path(photo.name).name or "photo", photo.height, photo.width)
    (detections,) = predict_batch(inference, [photo.pixels], [record])
    grid_h, grid_w = photo.grid(max_side)
    to_photo = np.array([photo.width / grid_w, photo.height / grid_h] * 2)
    found = process_image(detections, photo.height, photo.width, params, labels, grid=(grid_h, grid_w))
    items = []
    for instance in sorted(found, key=lambda i: -i.score):
        class_id = labels.parse(instance.class_id)
        rows, cols = np.flatnonzero(instance.mask.any(1)), np.flatnonzero(instance.mask.any(0))
        box = np.array([cols[0], rows[0], cols[-1] + 1, rows[-1] + 1]) * to_photo
        items.append(Item(class_id.category, class_id.attributes, round(instance.score, 4),
                          tuple(round(float(v), 1) for v in box), instance.mask))
    return items


def photo_on_grid(photo: Photo, max_side: int) -> Image.Image:
    """The photo, upright in RGB, at its mask grid's size (decoded again: ``pixels`` may be smaller)."""
    grid_h, grid_w = photo.grid(max_side)
    if photo.image is not None:
        image = photo.image
    else:
        try:
            with Image.open(photo.name, formats=PHOTO_FORMATS) as opened:
                image = to_rgb(ImageOps.exif_transpose(opened))
        except DECODE_ERRORS as exc:
            raise PhotoError(f"{photo.name}: no longer the photo that was segmented ({exc})") from exc
    return image.resize((grid_w, grid_h), Image.Resampling.BILINEAR) if image.size != (grid_w, grid_h) else image


@dataclass
class Segmenter:
    """A trained model with its TTA views and tuned post-processing: a photo (path or image in memory) in, items
    out."""

    inference: Inference
    postprocess: PostprocessParams
    labels: LabelSet
    max_side: int

    def __call__(self, source: PhotoSource, name: str = "photo") -> tuple[Photo, list[Item]]:
        """Items of a photo file, or of an image in memory called ``name`` in messages and JSON."""
        sizes, scale = self.inference.model_params, self.inference.max_scale
        photo = (read_photo(source, sizes, scale) if isinstance(source, (str, Path))
                 else photo_in_memory(source, name, sizes, scale))
        return photo, segment_photo(self.inference, photo, self.postprocess, self.labels, self.max_side)
