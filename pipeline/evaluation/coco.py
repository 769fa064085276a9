"""Mask AP (COCO's AP@[.5:.95] and AP@.5) with pycocotools, the validation score until the competition metric lands."""

from __future__ import annotations

import contextlib
import io

import pycocotools.mask as coco_mask
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from pipeline.evaluation.metric import encode_many


def encode_masks(masks: torch.Tensor) -> list[dict]:
    """COCO RLEs (counts as str, JSON-safe) of binary (N, H, W) masks."""
    encoded = encode_many(masks.cpu().numpy())
    for item in encoded:
        item["counts"] = item["counts"].decode("ascii")
    return encoded


def image_annotations(image_id: int, target: dict, output: dict, mask_threshold: float = 0.5,
                      ) -> tuple[list[dict], list[dict]]:
    """Ground truth and detections of one image in COCO's format (category ids as the model's labels)."""
    truth = [{"image_id": image_id, "category_id": int(label), "segmentation": rle, "iscrowd": 0,
              "area": float(coco_mask.area(rle))}
             for label, rle in zip(target["labels"].tolist(), encode_masks(target["masks"]), strict=True)]
    detected = [{"image_id": image_id, "category_id": int(label), "segmentation": rle, "score": float(score)}
                for label, score, rle in zip(output["labels"].tolist(), output["scores"].tolist(),
                                             encode_masks(output["masks"][:, 0] > mask_threshold), strict=True)]
    return truth, detected


def mask_ap(images: list[tuple[int, int, int]], truth: list[dict], detected: list[dict], num_classes: int,
            ) -> dict[str, float]:
    """``mask_ap`` (AP@[.5:.95]) and ``mask_ap50`` over ``images`` given as (id, height, width)."""
    if not detected:
        return {"mask_ap": 0.0, "mask_ap50": 0.0}
    ground = COCO()
    ground.dataset = {
        "images": [{"id": i, "height": h, "width": w} for i, h, w in images],
        "annotations": [{**ann, "id": k + 1} for k, ann in enumerate(truth)],
        "categories": [{"id": c} for c in range(1, num_classes)],
    }
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress and tables
        ground.createIndex()
        evaluation = COCOeval(ground, ground.loadRes(detected), iouType="segm")
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    ap, ap50 = (max(0.0, float(v)) for v in evaluation.stats[:2])  # -1 means no ground truth at all
    return {"mask_ap": ap, "mask_ap50": ap50}
