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

from dataclasses import dataclass

import numpy as np
import torch
from torch.nn import functional as torch_f
from torchvision.ops import box_iou

from pipeline.attributes import choose, groups_of
from pipeline.detections import Detections, Instance
from pipeline.errors import PipelineError
from pipeline.labels import ClassId, LabelSet
from pipeline.predict_params import PostprocessParams


@dataclass(frozen=True)
class Cluster:
    category: int
    score: float  # sum of the best score of each view / number of views
    members: np.ndarray  # indices of the detections averaged into it (at most one per view)


def clusters(detections: Detections, n_views: int, nms_iou: float) -> list[Cluster]:
    """Class-wise NMS by box IoU over all views; a kept detection absorbs the best overlapping one of each view.

    With one view this is plain class-wise NMS. With several, an object seen in only some
    views gets a lower score (missing views count as 0), which is what makes TTA suppress
    unstable detections.
    """
    n = len(detections)
    if n == 0:
        return []
    boxes = torch.tensor(detections.boxes)  # a copy: arrays read from parquet are read-only
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


def paste(mask: np.ndarray, box: np.ndarray, canvas: np.ndarray) -> None:
    """Add the M x M probability map ``mask`` (uint8, x255), stretched over ``box``, onto ``canvas`` (float32).

    As torchvision's ``paste_masks_in_image``, the map is padded by one zero pixel and the box
    grown to match, so the mask fades out at the box's edge. Each canvas pixel samples the map
    at its centre (bilinear, exact box coordinates, no rounding of the box to whole pixels), and
    only pixels near the box are touched: torchvision's version rounds the box and allocates a
    full image per mask, too much at native size.
    """
    m = mask.shape[-1]
    grow = (m + 2) / m
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    half_w, half_h = max((box[2] - box[0]) / 2, 1e-3) * grow, max((box[3] - box[1]) / 2, 1e-3) * grow
    height, width = canvas.shape
    x0, x1 = max(int(np.floor(cx - half_w)), 0), min(int(np.ceil(cx + half_w)), width)
    y0, y1 = max(int(np.floor(cy - half_h)), 0), min(int(np.ceil(cy + half_h)), height)
    if x0 >= x1 or y0 >= y1:
        return
    # grid_sample's coordinates: -1 and 1 are the outer edges of the padded map (align_corners=False).
    gx = (torch.arange(x0, x1, dtype=torch.float32) + 0.5 - cx) / half_w
    gy = (torch.arange(y0, y1, dtype=torch.float32) + 0.5 - cy) / half_h
    grid = torch.stack(torch.meshgrid(gx, gy, indexing="xy"), dim=-1)[None]
    padded = torch.from_numpy(np.pad(mask, 1).astype(np.float32) / 255.0)[None, None]
    sampled = torch_f.grid_sample(padded, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    canvas[y0:y1, x0:x1] += sampled[0, 0].numpy()


def remove_overlaps(instances: list[Instance]) -> list[Instance]:
    """Each pixel stays with the highest-scoring instance of its class; other classes are untouched."""
    claimed: dict[str, np.ndarray] = {}
    result = []
    for instance in sorted(instances, key=lambda i: -i.score):
        taken = claimed.setdefault(instance.class_id, np.zeros_like(instance.mask))
        mask = instance.mask & ~taken
        taken |= mask
        result.append(Instance(instance.class_id, instance.score, mask))
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


def process_image(detections: Detections, n_views: int, height: int, width: int, params: PostprocessParams,
                  labels: LabelSet) -> list[Instance]:
    """The instances to submit for one image of original size ``height`` x ``width``, on ``params``' grid."""
    if not params.tta:
        detections, n_views = detections.select(detections.views == 0), 1
    dropped = [c for c in params.attribute_categories if params.policy(c) == "drop"]
    if dropped:
        detections = detections.select(~np.isin(detections.categories, dropped))
    kept = [c for c in clusters(detections, n_views, params.nms_iou) if c.score >= params.score_thresh]
    grid_h, grid_w = params.grid_size(height, width)
    to_grid = np.array([grid_w / width, grid_h / height] * 2, np.float32)
    instances = []
    for cluster in kept[: params.max_detections]:
        canvas = np.zeros((grid_h, grid_w), np.float32)
        for member in cluster.members:
            paste(detections.masks[member], detections.boxes[member] * to_grid, canvas)
        mask = canvas > params.mask_thresh * len(cluster.members)
        probabilities = detections.attributes[cluster.members].mean(axis=0) / 255.0
        instances.append(Instance(class_id(cluster.category, probabilities, params, labels), cluster.score, mask))
    return [i for i in remove_overlaps(instances) if i.mask.sum() >= max(params.min_area, 1)]
