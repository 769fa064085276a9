"""Validation after each epoch: the competition metric and mask AP of a model on the held-out fold.

Post-processing here is fixed, not tuned (that is stage tune's job, after training): detections
scoring at least ``VAL_SCORE_THRESH``, masks at 0.5, overlaps within a class removed, ClassIds
matched on the category. The model is reached only through ``pipeline.models.contract``.
"""

from __future__ import annotations

import numpy as np
import torch
from torchvision.models.detection.roi_heads import paste_masks_in_image

from pipeline.data.dataset import InstanceDataset
from pipeline.evaluation import metric
from pipeline.evaluation.coco import encode_masks, image_annotations, mask_ap
from pipeline.inference.detections import Instance
from pipeline.inference.masks import paste, remove_overlaps
from pipeline.models.contract import MaskFormat, PixelConfusion
from pipeline.training import distributed
from pipeline.utils.device import autocast

# The validation number that picks the best checkpoint: the competition metric.
SCORE = "score"
VAL_SCORE_THRESH = 0.5


def image_masks(output: dict[str, torch.Tensor], size: tuple[int, int], mask_format: MaskFormat) -> torch.Tensor:
    """The contract's box-relative masks as (N, 1, h, w) probabilities over an image of ``size``.

    RoI maps are pasted as torchvision's Mask R-CNN pastes them (whole-pixel boxes), which keeps
    the validation score, and so the choice of ``best.pt``, what it was before the family seam;
    other kinds go through the exact paste that post-processing uses.
    """
    if mask_format.kind == "roi":
        return paste_masks_in_image(output["masks"], output["boxes"], size, padding=mask_format.padding)
    canvas = np.zeros((len(output["masks"]), *size), np.float32)
    maps = (output["masks"][:, 0].clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    for k, (mask, box) in enumerate(zip(maps, output["boxes"].numpy(), strict=True)):
        paste(mask, box, canvas[k], mask_format.padding)
    return torch.from_numpy(canvas)[:, None]


def competition_lists(target: dict, output: dict) -> tuple[list[metric.Labelled], list[metric.Labelled]]:
    """Truth and prediction of one image as the competition metric takes them (ClassId = category).

    ``output["masks"]`` are full-image probabilities here (see ``image_masks``).
    """
    truth = list(zip((str(int(label) - 1) for label in target["labels"].tolist()), encode_masks(target["masks"]),
                     strict=True))
    keep = output["scores"] >= VAL_SCORE_THRESH
    found = [Instance(str(int(label) - 1), score, mask) for label, score, mask in
             zip(output["labels"][keep].tolist(), output["scores"][keep].tolist(),
                 (output["masks"][keep, 0] > 0.5).numpy(), strict=True)]
    return truth, [(i.class_id, metric.encode(i.mask)) for i in remove_overlaps(found) if i.mask.any()]


def _predict_share(model: torch.nn.Module, dataset: InstanceDataset, context: distributed.Context, batch_size: int,
                   precision: str) -> tuple[list, ...]:
    """This process's images of ``dataset``: COCO entries, competition lists and true-box attributes."""
    images, truth, detected, competition, attributes = [], [], [], [], []
    mine = list(range(context.rank, len(dataset), context.world_size))
    for start in range(0, len(mine), batch_size):
        batch = [dataset[i] for i in mine[start : start + batch_size]]
        inputs = [image.to(context.device) for image, _, _ in batch]
        with autocast(context.device, precision):
            outputs = model(inputs)
            if model.num_attributes:
                said = model.attributes_of_boxes(inputs, [target["boxes"].to(context.device) for _, target, _ in batch])
        if model.num_attributes:
            attributes += [(target["attributes"], probabilities.float().cpu())
                           for (_, target, _), probabilities in zip(batch, said, strict=True)]
        for index, (image, target, meta), output in zip(mine[start : start + batch_size], batch, outputs,
                                                        strict=True):
            output = {k: v.float().cpu() for k, v in output.items()}
            output["masks"] = image_masks(output, tuple(image.shape[-2:]), model.mask_format)
            images.append((index + 1, image.shape[1], image.shape[2]))
            gt, dt = image_annotations(index + 1, target, output)
            truth += gt
            detected += dt
            competition.append((meta["image_id"], *competition_lists(target, output)))
    return images, truth, detected, competition, attributes


@torch.inference_mode()
def evaluate(model: torch.nn.Module, dataset: InstanceDataset, context: distributed.Context, num_classes: int,
             batch_size: int, precision: str) -> dict[str, float]:
    """The competition metric (``score``) and mask AP on ``dataset``; each process predicts its share."""
    was_training = model.training
    model.eval()
    share = _predict_share(model, dataset, context, batch_size, precision)
    model.train(was_training)
    parts = distributed.gather(context, share)
    score = mask_ap(*(sum((part[k] for part in parts), []) for k in range(3)), num_classes=num_classes)
    per_image = [item for part in parts for item in part[3]]
    value = metric.evaluate({i: t for i, t, _ in per_image}, {i: p for i, _, p in per_image}, "category").score
    if model.num_attributes:
        score.update(true_box_attributes([item for part in parts for item in part[4]]))
    return {SCORE: value, **score, **pixel_scores(model, dataset, context, batch_size, precision)}


def _confusion_share(model: torch.nn.Module, dataset: InstanceDataset, indices: list[int], context: distributed.Context,
                     batch_size: int, precision: str) -> torch.Tensor:
    counts = None
    for start in range(0, len(indices), batch_size):
        batch = [dataset[i] for i in indices[start : start + batch_size]]
        with autocast(context.device, precision):
            found = model.confusion([image.to(context.device) for image, _, _ in batch],
                                    [{k: v.to(context.device) for k, v in target.items()} for _, target, _ in batch])
        counts = found.cpu() if counts is None else counts + found.cpu()
    return counts


@torch.inference_mode()
def pixel_scores(model: torch.nn.Module, dataset: InstanceDataset, context: distributed.Context, batch_size: int,
                 precision: str, limit: int | None = None) -> dict[str, float]:
    """Pixel accuracy and mean IoU of a semantic family (a model with ``confusion``) on ``dataset``; else {}.

    The first ``limit`` images only, when given, each as it is without augmentation. Mean IoU averages the
    classes (background included) that the truth or the prediction shows.
    """
    if not isinstance(model, PixelConfusion):
        return {}
    was_training = model.training
    model.eval()
    count = len(dataset) if limit is None else min(limit, len(dataset))
    share = _confusion_share(model, dataset, list(range(context.rank, count, context.world_size)), context,
                             batch_size, precision)
    model.train(was_training)
    parts = [part for part in distributed.gather(context, share) if part is not None]
    counts = sum(parts[1:], parts[0]).double()
    union = counts.sum(0) + counts.sum(1) - counts.diag()
    shown = union > 0
    return {"pixel_accuracy": (counts.diag().sum() / counts.sum()).item(),
            "mean_iou": (counts.diag()[shown] / union[shown]).mean().item()}


def true_box_attributes(pairs: list[tuple[torch.Tensor, torch.Tensor]]) -> dict[str, float]:
    """The head on the true boxes of instances with attributes: micro F1 and exact sets at probability 0.5.

    From (targets, probabilities) per image, both (N, num_attributes). Empty without such instances.
    """
    truth = torch.cat([t for t, _ in pairs]) if pairs else torch.zeros((0, 0))
    said = torch.cat([p for _, p in pairs]) >= 0.5 if pairs else torch.zeros((0, 0), dtype=torch.bool)
    annotated = truth.sum(1) > 0
    truth, said = truth[annotated].bool(), said[annotated]
    if not len(truth):
        return {}
    hits = (truth & said).sum().item()
    return {"attribute_f1": 2 * hits / (truth.sum().item() + said.sum().item()),
            "attribute_exact": (truth == said).all(1).float().mean().item()}


def improves(score: dict[str, float], best: dict[str, float] | None) -> bool:
    """A higher competition score than the best epoch's, or the same with a higher mask AP.

    Early in training few detections pass the fixed score threshold and the metric is often 0
    for several epochs; mask AP (threshold-free) then tells which of them learned more.
    """
    return best is None or (score[SCORE], score["mask_ap"]) > (best[SCORE], best["mask_ap"])
