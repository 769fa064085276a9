"""The Fashionpedia evaluation: mask AP at IoU 0.50:0.95 and AP with attributes (IoU + F1), by the official
evaluator (the ``fashionpedia`` package's ``FPEval``), so that a run can be placed against the Fashionpedia papers.

Fashionpedia (Jia et al., ECCV 2020) is this competition's successor dataset, on the same 46 categories. Its
protocol is COCO's, with a second condition for a match on the categories that carry attributes: the F1 of
the predicted attribute set against the true one must pass a threshold too (0.50:0.95, like IoU). This module
adapts the pipeline's ground truth and post-processed predictions to the evaluator's input: category ids as
the label set's (0-45), attribute ids as its (0-91), masks as COCO RLEs on the submission grid.

Mask AP is computed on every image of the fold; AP with attributes on the images whose annotations carry
attributes. In this competition's data attributes were annotated on a fifth of the images: a garment without
them is unannotated, not plain, and the evaluator would refuse every detection that names one (its F1 over the
92 attributes, absent ones included, is then about 0.5, under every threshold). A family that predicts no
attributes has no AP with attributes.

Two things of the evaluator are worked around, not changed: it uses ``np.float``, which numpy 1.24 removed
(the alias is restored for the duration of the call), and it prints its progress (captured and logged).
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from collections.abc import Iterator, Mapping, Sequence

import numpy as np
import pycocotools.mask as coco_mask

from pipeline.config.inference import PostprocessParams
from pipeline.data.labels import LabelSet
from pipeline.evaluation.scoring import Truth, attributed
from pipeline.inference.detections import Detections, ImageRecord
from pipeline.inference.postprocess import process_image

log = logging.getLogger(__name__)

#: What the report keeps of the evaluator's summaries: AP with IoU alone and with IoU and F1 (the papers' pair).
SUMMARY = {"mask_ap": ("iou", "AP"), "mask_ap50": ("iou", "AP_IOU50"), "mask_ap75": ("iou", "AP_IOU75"),
           "ap_iou_f1": ("iou_f1", "AP"), "ap_iou50_f1": ("iou_f1", "AP_IOU50"),
           "ap_iou75_f1": ("iou_f1", "AP_IOU75")}
MAX_DETECTIONS = 100  # per image, as COCO's AP ranks them


def ranked(params: PostprocessParams) -> PostprocessParams:
    """The post-processing whose detections AP ranks: as tuned (merging, mask and attribute thresholds), every
    garment with its predicted attributes, no score threshold or minimum area, up to 100 detections an image."""
    return params.model_copy(update={"attribute_policy": "full", "category_policy": {}, "score_thresh": 0.0,
                                     "min_area": 0, "max_detections": MAX_DETECTIONS})


def annotations(truth: Truth, detections: Mapping[str, Detections], records: Sequence[ImageRecord],
                params: PostprocessParams, labels: LabelSet) -> tuple[dict, list[dict]]:
    """The evaluator's ground-truth dataset and detections for ``records``: ``truth`` on the submission grid,
    ``detections`` post-processed by ``ranked(params)`` onto the same grid."""
    every = ranked(params)
    images, truths, found = [], [], []
    for number, record in enumerate(records, start=1):
        height, width = params.grid_size(record.height, record.width)
        images.append({"id": number, "height": height, "width": width})
        for class_id, rle in truth[record.image_id]:
            truths.append(_annotation(number, labels.parse(class_id), rle, id=len(truths) + 1, iscrowd=0,
                                      area=float(coco_mask.area(rle)), bbox=coco_mask.toBbox(rle).tolist()))
        for instance in process_image(detections[record.image_id], record.height, record.width, every, labels):
            rle = _encoded(instance.mask)
            found.append(_annotation(number, labels.parse(instance.class_id), rle, score=float(instance.score)))
    dataset = {"images": images, "annotations": truths,
               "categories": [{"id": c.id, "name": c.name} for c in labels.categories],
               "attributes": [{"id": a.id, "name": a.name} for a in labels.attributes]}
    return dataset, found


def _annotation(image: int, class_id, rle: dict, **fields) -> dict:
    return {"image_id": image, "category_id": class_id.category, "attribute_ids": list(class_id.attributes),
            "segmentation": rle, **fields}


def _encoded(mask: np.ndarray) -> dict:
    rle = coco_mask.encode(np.asfortranarray(mask.astype(np.uint8)))
    rle["counts"] = rle["counts"].decode("ascii")
    return rle


def evaluate(dataset: dict, detected: list[dict]) -> dict[str, float | None]:
    """The evaluator's summary (``SUMMARY``'s keys) of ``detected`` against ``dataset``; None where it has no
    value (no ground truth at all)."""
    from fashionpedia.fp import Fashionpedia
    from fashionpedia.fp_eval import FPEval
    from sklearn.exceptions import UndefinedMetricWarning

    output = io.StringIO()
    with contextlib.redirect_stdout(output), _numpy_float_alias(), warnings.catch_warnings():
        # scikit-learn warns where a class's F1 is undefined (an attribute on neither side, or on one side only)
        # and counts that class's F1 as 0, which the evaluator's macro average expects
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        truth = Fashionpedia()
        truth.dataset = dataset
        truth.createIndex()
        results = Fashionpedia()
        results.dataset = {**{key: dataset[key] for key in ("images", "categories", "attributes")},
                           "annotations": [{**d, "id": k + 1, "iscrowd": 0, "area": float(coco_mask.area(
                               d["segmentation"])), "bbox": coco_mask.toBbox(d["segmentation"]).tolist()}
                                           for k, d in enumerate(detected)]}
        results.createIndex()
        evaluation = FPEval(truth, results, iouType="segm")
        evaluation.run()
    log.debug("FPEval: %s", output.getvalue())
    summaries = {"iou": evaluation.resultDet, "iou_f1": evaluation.results}
    return {key: _value(summaries[kind][name]) for key, (kind, name) in SUMMARY.items()}


def _value(number: float) -> float | None:
    return None if number < 0 else round(float(number), 5)  # the evaluator's -1: nothing to score


@contextlib.contextmanager
def _numpy_float_alias() -> Iterator[None]:
    """``np.float`` (the builtin ``float``, as numpy < 1.24 had it) while the evaluator runs."""
    had = "float" in np.__dict__
    if not had:
        np.float = float  # type: ignore[attr-defined]
    try:
        yield
    finally:
        if not had:
            del np.float  # type: ignore[attr-defined]


def fashionpedia_scores(truth: Truth, detections: Mapping[str, Detections], records: Sequence[ImageRecord],
                        params: PostprocessParams, labels: LabelSet, with_attributes: bool) -> dict[str, float | None]:
    """Mask AP of a validation fold's predictions (``ranked(params)``, on its grid) and, for a family that
    predicts attributes (``with_attributes``), AP with attributes on the fold's images with annotated attributes;
    with the number of images each was computed on."""
    found = {key: value for key, value in evaluate(*annotations(truth, detections, records, params, labels)).items()
             if SUMMARY[key][0] == "iou"}
    annotated = attributed(records, truth) if with_attributes else []
    if annotated:
        scores = evaluate(*annotations(truth, detections, annotated, params, labels))
        found.update({key: value for key, value in scores.items() if SUMMARY[key][0] == "iou_f1"})
    else:
        found.update({key: None for key, (kind, _) in SUMMARY.items() if kind == "iou_f1"})
    return {**found, "images": len(records), "attributed_images": len(annotated)}
