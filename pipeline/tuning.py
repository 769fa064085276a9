"""Scoring saved raw predictions under a set of post-processing params, and searching the best set.

The search is coordinate ascent: each setting in turn takes the candidate value that scores
best with the others held, for a few rounds. Every evaluation re-runs post-processing only
(no model), so it costs milliseconds per image. Because thresholds tuned on a fold flatter
that same fold, :func:`held_out_score` also tunes on one half of the images and scores the
other half, both ways: the number to expect on unseen images.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch.nn import functional as torch_f

from pipeline import metric, rle
from pipeline.detections import Detections, ImageRecord
from pipeline.postprocess import Instance, process_image
from pipeline.predict_params import MatchOn, PostprocessParams, TuneParams

Truth = dict[str, list[metric.Labelled]]


def resize_nearest(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    if mask.shape == size:
        return mask
    pixels = torch.from_numpy(np.ascontiguousarray(mask, dtype=np.uint8))[None, None]
    return torch_f.interpolate(pixels, size=size, mode="nearest-exact")[0, 0].numpy().astype(bool)


def truth_on_grid(instances: pd.DataFrame, records: Sequence[ImageRecord], params: PostprocessParams) -> Truth:
    """The true masks of each image, resized (nearest) to the submission grid as COCO RLEs."""
    truth: Truth = {r.image_id: [] for r in records}
    wanted = instances[instances.image_id.isin(truth)]
    for row in wanted.itertuples(index=False):
        mask = rle.decode(row.rle, int(row.height), int(row.width))
        size = params.grid_size(int(row.height), int(row.width))
        truth[row.image_id].append((str(row.class_id), metric.encode(resize_nearest(mask, size))))
    return truth


def predict_instances(detections: Mapping[str, Detections], records: Sequence[ImageRecord], n_views: int,
                      params: PostprocessParams) -> dict[str, list[Instance]]:
    return {r.image_id: process_image(detections[r.image_id], n_views, r.height, r.width, params) for r in records}


def score(detections: Mapping[str, Detections], records: Sequence[ImageRecord], n_views: int, truth: Truth,
          params: PostprocessParams, match_on: MatchOn) -> metric.Score:
    """The competition metric of the post-processed predictions over ``records``."""
    instances = predict_instances(detections, records, n_views, params)
    predicted = {image_id: [(i.class_id, metric.encode(i.mask)) for i in found]
                 for image_id, found in instances.items()}
    return metric.evaluate({r.image_id: truth[r.image_id] for r in records}, predicted, match_on)


@dataclass(frozen=True)
class SearchResult:
    params: PostprocessParams
    score: float
    start_score: float
    evaluations: int


def search(detections: Mapping[str, Detections], records: Sequence[ImageRecord], n_views: int, truth: Truth,
           start: PostprocessParams, tune: TuneParams) -> SearchResult:
    """Coordinate ascent from ``start`` over ``tune``'s candidate values; ties keep the current value."""
    seen: dict[PostprocessParams, float] = {}

    def value(params: PostprocessParams) -> float:
        if params not in seen:
            seen[params] = score(detections, records, n_views, truth, params, tune.match_on).score
        return seen[params]

    best, start_score = start, value(start)
    best_score = start_score
    for _ in range(tune.rounds):
        before = best
        for name in tune.searched():
            for candidate in getattr(tune, name):
                trial = best.model_copy(update={name: candidate})
                if value(trial) > best_score:
                    best, best_score = trial, value(trial)
        if best == before:
            break
    return SearchResult(best, best_score, start_score, len(seen))


def sample(records: Sequence[ImageRecord], limit: int, seed: int) -> list[ImageRecord]:
    """At most ``limit`` records, a seeded sample in the original order."""
    if len(records) <= limit:
        return list(records)
    keep = np.sort(np.random.default_rng(seed).choice(len(records), size=limit, replace=False))
    return [records[i] for i in keep]


def held_out_score(detections: Mapping[str, Detections], records: Sequence[ImageRecord], n_views: int,
                   truth: Truth, start: PostprocessParams, tune: TuneParams) -> float:
    """Tune on a random half, score the other half, and the reverse; the mean over all images."""
    order = np.random.default_rng(tune.seed).permutation(len(records))
    halves = [[records[i] for i in sorted(part)] for part in np.array_split(order, 2)]
    per_image: list[float] = []
    for tune_on, score_on in ((halves[0], halves[1]), (halves[1], halves[0])):
        if not tune_on or not score_on:
            continue
        tuned = search(detections, tune_on, n_views, truth, start, tune).params
        per_image += score(detections, score_on, n_views, truth, tuned, tune.match_on).per_image.values()
    return float(np.mean(per_image)) if per_image else float("nan")
