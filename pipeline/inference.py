"""Batched Mask R-CNN inference with test-time augmentation (scales x horizontal flip).

Each view resizes the image to the model's fitted scale times a factor and optionally flips
it; the detections of every view are mapped back to the original image frame. Masks stay in
the form the mask head produces them: an M x M probability map inside the detection's box.
That keeps every choice of post-processing (binarisation threshold, merge of views, output
grid) open without re-running the model, at M*M bytes per detection instead of a
full-resolution mask.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset
from torchvision.models.detection import MaskRCNN
from torchvision.models.detection.image_list import ImageList
from torchvision.transforms.v2 import functional as F

from pipeline import checkpoint
from pipeline.dataset import load_image
from pipeline.detections import Detections, ImageRecord
from pipeline.errors import PipelineError
from pipeline.fingerprint import file_digest, imported_modules, source_digest, text_digest
from pipeline.model import AttributeRoIHeads, ModelSpec, build_model
from pipeline.precision import autocast
from pipeline.predict_params import PredictParams
from pipeline.transforms import fit_scale, scaled_size

log = logging.getLogger(__name__)
ATTRIBUTE_HEAD = "roi_heads.attribute_predictor."


@dataclass(frozen=True)
class View:
    scale: float
    flip: bool

    @property
    def name(self) -> str:
        return f"x{self.scale:g}" + ("-flip" if self.flip else "")


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
        return index, load_image(self.image_dir / r.image_id, r.height, r.width, scale)


def _as_list(batch: list) -> list:
    return batch


def loader(files: ImageFiles, batch_size: int, workers: int) -> DataLoader:
    """Batches as lists of (index, image): the images differ in size."""
    return DataLoader(files, batch_size=batch_size, num_workers=workers, collate_fn=_as_list)



def _view_image(image: torch.Tensor, height: int, width: int, fitted: float, view: View) -> torch.Tensor:
    size = scaled_size(height, width, fitted * view.scale)
    if tuple(image.shape[-2:]) != size:
        image = F.resize(image, list(size), antialias=True)
    if view.flip:
        image = image.flip(-1)
    return F.to_dtype(image, torch.float32, scale=True)


def _to_original(output: dict, view_size: tuple[int, int], original: tuple[int, int], view: View, index: int,
                 ) -> Detections:
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
    )


def _as_bytes(probabilities: torch.Tensor) -> np.ndarray:
    """Probabilities in [0, 1] as uint8 x 255: a quarter of the space of float32, precise to 0.002."""
    return (probabilities * 255).round().clamp(0, 255).to(torch.uint8).cpu().numpy()


@torch.inference_mode()
def predict_batch(model: MaskRCNN, images: list[torch.Tensor], records: list[ImageRecord], views: list[View],
                  min_size: int, max_size: int, device: torch.device, precision: str = "fp32",
                  ) -> list[Detections]:
    """Detections of every view for a batch of uint8 (3, h, w) images whose original sizes ``records`` give.

    The model's own transform is bypassed (normalise and batch only) because each view is
    already at its size; its backbone, RPN and RoI heads run as in ``MaskRCNN.forward``.
    """
    model.eval()
    per_image: list[list[Detections]] = [[] for _ in images]
    for index, view in enumerate(views):
        inputs = [_view_image(image.to(device), r.height, r.width, fit_scale(r.height, r.width, min_size, max_size),
                              view) for image, r in zip(images, records, strict=True)]
        sizes = [tuple(x.shape[-2:]) for x in inputs]
        with autocast(device, precision):
            batch = model.transform.batch_images([model.transform.normalize(x) for x in inputs],
                                                 size_divisible=model.transform.size_divisible)
            image_list = ImageList(batch, sizes)
            features = model.backbone(image_list.tensors)
            proposals, _ = model.rpn(image_list, features)
            outputs, _ = model.roi_heads(features, proposals, image_list.image_sizes)
        for k, (output, size, r) in enumerate(zip(outputs, sizes, records, strict=True)):
            per_image[k].append(_to_original(output, size, (r.height, r.width), view, index))
    return [Detections.concat(parts, mask_size(model), num_attributes(model)) for parts in per_image]


def resolve_device(name: str) -> torch.device:
    """``auto`` is CUDA when torch sees a GPU, else the CPU."""
    if name == "cuda" and not torch.cuda.is_available():
        raise PipelineError("predict.device is cuda but torch sees no CUDA device")
    return torch.device("cuda" if name == "cuda" or (name == "auto" and torch.cuda.is_available()) else "cpu")


def checkpoint_path(run_dir: Path | str, name: str) -> Path:
    """``run_dir/<name>.pt``; ``best`` falls back, with a printed note, to ``last`` while no validation has run.

    A training session stopped by its time limit in the first epoch has only ``last.pt``: the
    submission is still made, from the best (the only) weights there are.
    """
    run_dir = Path(run_dir)
    path, last = run_dir / f"{name}.pt", run_dir / checkpoint.LAST
    if name == "best" and not path.is_file() and last.is_file():
        print(f"{path} does not exist yet (training has not finished an epoch): predicting with {last}")
        return last
    if not path.is_file():
        raise checkpoint.CheckpointError(f"{path}: no such checkpoint; run stage train first")
    return path


def load_model(path: Path | str, spec: ModelSpec, device: torch.device, num_attributes: int) -> MaskRCNN:
    """The trained model of a checkpoint (``best.pt`` or ``last.pt``), built as ``spec`` says, in eval mode.

    A checkpoint made before the attribute head existed (or with it off) still loads: the head
    keeps its initial weights, and a warning says so (its attribute predictions are then
    uninformed, and tuning will choose the category-only or drop policy).
    """
    saved = checkpoint.load(path, remedy="rerun stage train (dvc repro) to write it again")
    model = build_model(replace(spec, weights="none"), int(saved["num_classes"]), num_attributes)
    head = {k for k in model.state_dict() if k.startswith(ATTRIBUTE_HEAD)}
    state = saved["model"]
    if head and not head & set(state):
        log.warning("%s has no attribute head (%s): it is initialised, not trained; retrain for attribute "
                    "predictions", path, ", ".join(sorted(head)))
        state = {**state, **{k: v for k, v in model.state_dict().items() if k in head}}
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[:2]
        raise checkpoint.CheckpointError(f"{path}: does not fit the model section of params.yaml "
                                         f"({' '.join(first)}); retrain or restore the params it was made with",
                                         ) from exc
    return model.to(device).eval()


def prediction_key(checkpoint: Path | str, spec: ModelSpec, params: PredictParams, records: list[ImageRecord],
                   ) -> dict:
    """What a folder of predictions depends on: weights, model and TTA settings, inference code, images.

    Batch size, workers and part size change neither the detections nor their order.
    """
    return {"checkpoint": file_digest(checkpoint), "model": asdict(spec),
            "predict": params.model_dump(mode="json", exclude={"workers", "batch_size", "part_size"}),
            "code": source_digest(*imported_modules(__name__)),
            "images": text_digest([f"{r.image_id} {r.height}x{r.width}" for r in records])}


def num_attributes(model: MaskRCNN) -> int:
    """How many attribute probabilities each detection carries (0 without an attribute head)."""
    heads = model.roi_heads
    return heads.attribute_predictor.out_features if isinstance(heads, AttributeRoIHeads) else 0


def mask_size(model: MaskRCNN) -> int:
    """Side of the mask head's output (twice its RoI pooling size: 28 for torchvision's models)."""
    size = model.roi_heads.mask_roi_pool.output_size
    return 2 * (size if isinstance(size, int) else size[0])


def records_of(instances: pd.DataFrame, image_ids: list[str]) -> list[ImageRecord]:
    """The images ``image_ids`` with their original sizes from the instance table, in that order."""
    sizes = instances.groupby("image_id", sort=False)[["height", "width"]].first()
    if missing := [i for i in image_ids if i not in sizes.index]:
        raise PipelineError(f"{len(missing)} image(s) are not in the instance table, e.g. {missing[0]}")
    return [ImageRecord(i, int(sizes.at[i, "height"]), int(sizes.at[i, "width"])) for i in image_ids]


Batches = Iterator[tuple[list[ImageRecord], list[Detections]]]


def predict_files(model: MaskRCNN, spec: ModelSpec, views: list[View], batch_size: int, workers: int,
                  device: torch.device, precision: str) -> Callable[[list[ImageRecord], Path | str], Batches]:
    """A function from (records, image folder) to a stream of (records, detections) batches."""

    def run(records: list[ImageRecord], image_dir: Path | str) -> Batches:
        files = ImageFiles(records, image_dir, spec.min_size, spec.max_size, max(v.scale for v in views))
        for batch in loader(files, batch_size, workers):
            batch_records = [records[i] for i, _ in batch]
            yield batch_records, predict_batch(model, [image for _, image in batch], batch_records, views,
                                               spec.min_size, spec.max_size, device, precision)

    return run
