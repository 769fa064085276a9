"""Saved raw predictions scored under a set of post-processing params, with the truth on the submission grid.

What tuning (``pipeline.evaluation.search``) and stage evaluate score with: the metric's per-class scores of
each image, summed up in the images' order, over worker processes when asked.
"""

from __future__ import annotations

import multiprocessing as mp
import warnings
from collections.abc import Mapping, Sequence

import pandas as pd
import torch

from pipeline.config.inference import PostprocessParams
from pipeline.config.literals import MatchOn
from pipeline.data import rle
from pipeline.data.labels import LabelSet
from pipeline.evaluation import metric
from pipeline.inference.detections import Detections, ImageRecord
from pipeline.inference.masks import resize_nearest
from pipeline.inference.postprocess import process_image
from pipeline.utils.pool import available_cpus

Truth = dict[str, list[metric.Labelled]]


def truth_on_grid(instances: pd.DataFrame, records: Sequence[ImageRecord], params: PostprocessParams) -> Truth:
    """The true masks of each image, resized (nearest) to the submission grid as COCO RLEs."""
    truth: Truth = {r.image_id: [] for r in records}
    wanted = instances[instances.image_id.isin(truth)]
    for row in wanted.itertuples(index=False):
        mask = rle.decode(row.rle, int(row.height), int(row.width))
        size = params.grid_size(int(row.height), int(row.width))
        truth[row.image_id].append((str(row.class_id), metric.encode(resize_nearest(mask, size))))
    return truth


def attributed(records: Sequence[ImageRecord], truth: Truth) -> list[ImageRecord]:
    """The images whose ground truth has at least one ClassId with attributes."""
    return [r for r in records if any("_" in class_id for class_id, _ in truth[r.image_id])]


def image_classes(detections: Detections, record: ImageRecord, truth: list[metric.Labelled],
                  params: PostprocessParams, labels: LabelSet, match_on: MatchOn) -> dict[str, float]:
    """The metric's per-class scores of one image under ``params``."""
    found = process_image(detections, record.height, record.width, params, labels)
    return metric.image_scores(truth, [(i.class_id, metric.encode(i.mask)) for i in found], match_on)


# What the worker processes of a Scorer share, inherited through fork (set by their initializer).
_SHARED: tuple | None = None


def _start_worker(shared: tuple) -> None:
    global _SHARED
    _SHARED = shared
    torch.set_num_threads(1)  # one process per core already


def _score_chunk(job: tuple[PostprocessParams, MatchOn, list[ImageRecord]]) -> list[tuple[str, dict[str, float]]]:
    detections, truth, labels = _SHARED
    params, match_on, chunk = job
    return [(r.image_id, image_classes(detections[r.image_id], r, truth[r.image_id], params, labels, match_on))
            for r in chunk]


class Scorer:
    """Scores post-processing params on saved predictions; over ``workers`` processes when more than one.

    Images are independent, so they are scored in chunks in parallel and the results summed up in
    the images' order: the score does not depend on the number of workers. The workers inherit
    the predictions by fork (Linux); elsewhere scoring runs in this process.
    """

    def __init__(self, detections: Mapping[str, Detections], truth: Truth, labels: LabelSet, workers: int = 1) -> None:
        self.truth = truth
        self.shared = (detections, truth, labels)  # what the worker processes inherit
        wanted = available_cpus() if workers == 0 else workers
        self.pool = None
        if wanted > 1 and "fork" in mp.get_all_start_methods():
            with warnings.catch_warnings():
                # Python >= 3.12 warns about fork() in a process with threads (torch's pool): the workers
                # only run numpy/torch code that torch's at-fork handlers make safe, as DataLoader's do.
                warnings.filterwarnings("ignore", message=r".*fork\(\) may lead to deadlocks",
                                        category=DeprecationWarning)
                self.pool = mp.get_context("fork").Pool(wanted, _start_worker, (self.shared,))
        self.workers = wanted if self.pool is not None else 1

    def __call__(self, params: PostprocessParams, records: Sequence[ImageRecord], match_on: MatchOn,
                 ) -> metric.Score:
        if self.pool is None:
            detections, truth, labels = self.shared
            return metric.summarize({r.image_id: image_classes(detections[r.image_id], r, truth[r.image_id], params,
                                                               labels, match_on) for r in records})
        size = max(1, -(-len(records) // (4 * self.workers)))
        chunks = [list(records[i : i + size]) for i in range(0, len(records), size)]
        parts = self.pool.map(_score_chunk, [(params, match_on, chunk) for chunk in chunks])
        return metric.summarize(dict(item for part in parts for item in part))

    def close(self) -> None:
        if self.pool is not None:
            self.pool.close()
            self.pool.join()
            self.pool = None

    def __enter__(self) -> Scorer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
