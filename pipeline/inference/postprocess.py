"""From the raw detections of one image to the masks it submits.

Steps, each set by ``PostprocessParams``: keep the plain view or all TTA views; drop the
attribute-carrying categories whose policy is ``drop``; merge detections of the same category
whose boxes overlap (class-wise NMS; across views the kept detection averages the best match
of each view); score threshold; at most ``max_detections``; paste each mask onto the
submission grid and binarise it; name the ClassId (the category, plus under policy ``full``
the attributes chosen from the averaged probabilities); give each pixel to the highest-scoring
instance of its class; drop instances smaller than ``min_area``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torchvision.ops import box_iou

from pipeline.config.inference import PostprocessParams
from pipeline.data.attributes import choose, groups_of
from pipeline.data.labels import ClassId, LabelSet
from pipeline.inference.detections import Detections, ImageRecord, Instance
from pipeline.inference.masks import paste, remove_overlaps
from pipeline.models.contract import mask_padding
from pipeline.utils.errors import PipelineError


@dataclass(frozen=True)
class Cluster:
    category: int
    score: float  # sum of the best score of each view / number of views
    members: np.ndarray  # indices of the detections averaged into it (at most one per view)


def clusters(detections: Detections, nms_iou: float) -> list[Cluster]:
    """Class-wise NMS by box IoU over all views; a kept detection absorbs the best overlapping one of each view.

    With one view this is plain class-wise NMS. With several, an object seen in only some
    views gets a lower score (missing views count as 0), which is what makes TTA suppress
    unstable detections.
    """
    n, n_views = len(detections), detections.n_views
    if n == 0:
        return []
    boxes = torch.tensor(detections.boxes)  # a copy: arrays read from parquet may be read-only
    overlap = box_iou(boxes, boxes).numpy() > nms_iou
    overlap &= detections.categories[:, None] == detections.categories[None, :]
    free = np.ones(n, bool)
    result = []
    for seed in np.argsort(-detections.scores, kind="stable"):
        if not free[seed]:
            continue
        group = np.flatnonzero(free & overlap[seed])
        free[group] = False
        members = [seed]
        for view in range(n_views):
            candidates = group[(detections.views[group] == view) & (group != seed)]
            if len(candidates) and view != detections.views[seed]:
                members.append(candidates[np.argmax(detections.scores[candidates])])
        score = float(detections.scores[members].sum()) / n_views
        result.append(Cluster(int(detections.categories[seed]), score, np.asarray(members)))
    result.sort(key=lambda c: -c.score)
    return result


def check_attribute_settings(params: PostprocessParams, labels: LabelSet) -> None:
    """Raise unless every group ``params`` names is an attribute group of ``labels``."""
    known = groups_of(labels).names
    if unknown := sorted({*params.group_thresh, *params.exclusive_groups} - set(known)):
        raise PipelineError(f"postprocess names attribute groups {unknown} that the label set does not have; "
                            f"its groups are {list(known)}")


def class_id(category: int, probabilities: np.ndarray, params: PostprocessParams, labels: LabelSet) -> str:
    """The ClassId string of a detection: validated by the label set, attributes sorted.

    Under policy ``full`` the attributes are chosen from ``probabilities`` (one per attribute,
    in [0, 1]); a model without an attribute head (no probabilities) predicts the category alone.
    """
    attributes: tuple[int, ...] = ()
    if len(probabilities) and len(probabilities) != len(labels.attributes):
        raise PipelineError(f"detections carry {len(probabilities)} attribute probabilities, the label set has "
                            f"{len(labels.attributes)}: predict again with this label set")
    if params.policy(category) == "full" and len(probabilities):
        attributes = choose(probabilities, groups_of(labels), params.group_thresh, params.attribute_thresh,
                            params.exclusive_groups)
    return labels.format(ClassId(category, attributes))


def process_image(detections: Detections, height: int, width: int, params: PostprocessParams,
                  labels: LabelSet, grid: tuple[int, int] | None = None) -> list[Instance]:
    """The instances to submit for one image of original size ``height`` x ``width``, on ``params``' grid (or on
    ``grid``, (height, width), when given: a photo's own)."""
    if not params.tta:
        detections = detections.plain_view()
    dropped = [c for c in params.attribute_categories if params.policy(c) == "drop"]
    if dropped:
        detections = detections.select(~np.isin(detections.categories, dropped))
    kept = [c for c in clusters(detections, params.nms_iou) if c.score >= params.score_thresh]
    grid_h, grid_w = grid or params.grid_size(height, width)
    to_grid = np.array([grid_w / width, grid_h / height] * 2, np.float32)
    instances, padding = [], mask_padding(detections.mask_kind)
    for cluster in kept[: params.max_detections]:
        canvas = np.zeros((grid_h, grid_w), np.float32)
        for member in cluster.members:
            paste(detections.masks[member], detections.boxes[member] * to_grid, canvas, padding)
        mask = canvas > params.mask_thresh * len(cluster.members)
        probabilities = detections.attributes[cluster.members].mean(axis=0) / 255.0
        instances.append(Instance(class_id(cluster.category, probabilities, params, labels), cluster.score, mask))
    return [i for i in remove_overlaps(instances) if i.mask.sum() >= max(params.min_area, 1)]


def predict_instances(detections: Mapping[str, Detections], records: Sequence[ImageRecord],
                      params: PostprocessParams, labels: LabelSet) -> dict[str, list[Instance]]:
    return {r.image_id: process_image(detections[r.image_id], r.height, r.width, params, labels)
            for r in records}
