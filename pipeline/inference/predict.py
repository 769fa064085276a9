"""Batched inference with test-time augmentation (scales x horizontal flip), for any model family.

Each view resizes the image to the model's fitted scale times a factor and optionally flips
it; the detections of every view are mapped back to the original image frame. Masks stay in
the box-relative form of ``pipeline.models.contract``, M x M probabilities per detection, which
keeps every choice of post-processing (binarisation threshold, merge of views, output grid)
open without re-running the model.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms.v2 import functional as F

from pipeline.config.inference import PredictParams
from pipeline.config.model import ModelParams
from pipeline.data.dataset import load_image
from pipeline.data.transforms import fit_scale, scaled_size
from pipeline.inference.detections import Detections, ImageRecord
from pipeline.models.contract import DetectionModel, MaskFormat
from pipeline.models.registry import ModelConfig
from pipeline.utils.device import autocast
from pipeline.utils.errors import PipelineError, from_worker
from pipeline.utils.fingerprint import file_digest, imported_modules, source_digest, text_digest
from pipeline.utils.paths import inside

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class View:
    scale: float
    flip: bool

    @property
    def name(self) -> str:
        return f"x{self.scale:g}" + ("-flip" if self.flip else "")


@dataclass(frozen=True)
class Inference:
    """A trained model and how to run it: its TTA views, the input size, the device and the arithmetic."""

    model: DetectionModel
    views: list[View]
    model_params: ModelParams  # min_size and max_size: each view fits the image to them, times its scale
    device: torch.device
    precision: str = "fp32"
    stack_views: bool = False  # predict.stack_views: one forward for all views

    @property
    def max_scale(self) -> float:
        """The largest view's factor: an image is decoded at no more than that."""
        return max(view.scale for view in self.views)


def make_views(scales: tuple[float, ...], hflip: bool) -> list[View]:
    """The plain view (scale 1, no flip) first, then the other scales, then the flipped copies."""
    ordered = sorted(scales, key=lambda s: (s != 1.0, s))
    return [View(s, False) for s in ordered] + ([View(s, True) for s in ordered] if hflip else [])


class ImageFiles(Dataset):
    """Decodes each image at the largest size any view needs (JPEG draft mode skips the rest)."""

    def __init__(self, records: list[ImageRecord], image_dir: Path | str, min_size: int, max_size: int,
                 max_scale: float) -> None:
        self.records, self.image_dir = records, Path(image_dir)
        self.min_size, self.max_size, self.max_scale = min_size, max_size, max_scale

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> tuple[int, torch.Tensor]:
        r = self.records[index]
        scale = fit_scale(r.height, r.width, self.min_size, self.max_size) * self.max_scale
        return index, load_image(inside(self.image_dir, r.image_id, "ImageId"), r.height, r.width, scale)


def _as_list(batch: list) -> list:
    return batch


def loader(files: ImageFiles, batch_size: int, workers: int, pin_memory: bool = False) -> DataLoader:
    """Batches as lists of (index, image): the images differ in size."""
    return DataLoader(files, batch_size=batch_size, num_workers=workers, collate_fn=_as_list, pin_memory=pin_memory)



def _view_image(image: torch.Tensor, height: int, width: int, fitted: float, view: View) -> torch.Tensor:
    size = scaled_size(height, width, fitted * view.scale)
    if tuple(image.shape[-2:]) != size:
        image = F.resize(image, list(size), antialias=True)
    if view.flip:
        image = image.flip(-1)
    return F.to_dtype(image, torch.float32, scale=True)


def _to_original(output: dict, view_size: tuple[int, int], original: tuple[int, int], view: View, index: int,
                 mask_format: MaskFormat, n_views: int) -> Detections:
    """Undo the view: mirror boxes and masks of a flipped view, rescale boxes to the original size."""
    boxes = output["boxes"].float()
    masks = output["masks"][:, 0].float()
    if view.flip:
        boxes = torch.stack([view_size[1] - boxes[:, 2], boxes[:, 1], view_size[1] - boxes[:, 0], boxes[:, 3]], 1)
        masks = masks.flip(-1)
    factors = torch.tensor([original[1] / view_size[1], original[0] / view_size[0]] * 2, device=boxes.device)
    return Detections(
        boxes=(boxes * factors).cpu().numpy().astype(np.float32),
        scores=output["scores"].float().cpu().numpy(),
        categories=(output["labels"] - 1).cpu().numpy().astype(np.int16),
        views=np.full(len(boxes), index, np.int8),
        masks=_as_bytes(masks),
        attributes=_as_bytes(output["attributes"].float()) if "attributes" in output
        else np.zeros((len(boxes), 0), np.uint8),
        mask_kind=mask_format.kind,
        n_views=n_views,
    )


def _as_bytes(probabilities: torch.Tensor) -> np.ndarray:
    """Probabilities in [0, 1] as uint8 x 255: a quarter of the space of float32, precise to 0.002."""
    return (probabilities * 255).round().clamp(0, 255).to(torch.uint8).cpu().numpy()


@torch.inference_mode()
def predict_batch(inference: Inference, images: list[torch.Tensor], records: list[ImageRecord]) -> list[Detections]:
    """Detections of every view for a batch of uint8 (3, h, w) images whose original sizes ``records`` give.

    One forward per view, or with ``stack_views`` one for all views (``predict.stack_views``):
    fewer, larger kernels, but each image is padded to the batch's largest view, which moves
    scores near the image's right and bottom edges by a rounding-sized amount.
    """
    model, sizes, n_views = inference.model.eval(), inference.model_params, len(inference.views)
    fmt = model.mask_format
    per_image: list[list[Detections]] = [[] for _ in images]
    on_device = [image.to(inference.device, non_blocking=True) for image in images]
    indexed = list(enumerate(inference.views))
    for group in [indexed] if inference.stack_views else [[pair] for pair in indexed]:
        inputs = [_view_image(image, r.height, r.width, fit_scale(r.height, r.width, sizes.min_size, sizes.max_size),
                              view) for _, view in group for image, r in zip(on_device, records, strict=True)]
        with autocast(inference.device, inference.precision):
            outputs = model(inputs)
        for n, (output, x) in enumerate(zip(outputs, inputs, strict=True)):
            (index, view), k = group[n // len(images)], n % len(images)
            size = (records[k].height, records[k].width)
            per_image[k].append(_to_original(output, tuple(x.shape[-2:]), size, view, index, fmt, n_views))
    return [Detections.concat(parts, fmt.size, model.num_attributes, fmt.kind, n_views) for parts in per_image]


def prediction_key(checkpoint: Path | str, config: ModelConfig, params: PredictParams, records: list[ImageRecord],
                   ) -> dict:
    """What a folder of predictions depends on: weights, model, TTA and batch settings, inference code, images.

    Workers and part size change neither the detections nor their order. The batch size does:
    a family pads the images of a batch to one size, which moves scores near the padded edges
    and so, around a threshold, the detections kept; a folder resumed with another batch size
    would mix the two.
    """
    return {"checkpoint": file_digest(checkpoint), **config.key(),
            "predict": params.model_dump(mode="json", exclude={"workers", "part_size"}),
            "code": source_digest(*sorted({*imported_modules(__name__), *config.code_modules()})),
            "images": text_digest([f"{r.image_id} {r.height}x{r.width}" for r in records])}


def records_of(instances: pd.DataFrame, image_ids: list[str]) -> list[ImageRecord]:
    """The images ``image_ids`` with their original sizes from the instance table, in that order."""
    sizes = instances.groupby("image_id", sort=False)[["height", "width"]].first()
    if missing := [i for i in image_ids if i not in sizes.index]:
        raise PipelineError(f"{len(missing)} image(s) are not in the instance table, e.g. {missing[0]}")
    return [ImageRecord(i, int(sizes.at[i, "height"]), int(sizes.at[i, "width"])) for i in image_ids]


Batches = Iterator[tuple[list[ImageRecord], list[Detections]]]


def predict_files(inference: Inference, batch_size: int, workers: int,
                  ) -> Callable[[list[ImageRecord], Path | str], Batches]:
    """A function from (records, image folder) to a stream of (records, detections) batches."""
    sizes = inference.model_params

    def run(records: list[ImageRecord], image_dir: Path | str) -> Batches:
        files = ImageFiles(records, image_dir, sizes.min_size, sizes.max_size, inference.max_scale)
        try:
            for batch in loader(files, batch_size, workers, pin_memory=inference.device.type == "cuda"):
                batch_records = [records[i] for i, _ in batch]
                yield batch_records, predict_batch(inference, [image for _, image in batch], batch_records)
        except PipelineError as exc:  # a worker's error: its message, not its traceback
            if (raised := from_worker(exc)) is exc:
                raise
            raise raised from None

    return run
