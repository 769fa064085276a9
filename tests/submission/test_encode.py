"""Post-processing and encoding in worker processes give the rows the in-process path gives."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.config.inference import PostprocessParams
from pipeline.data.labels import load_labels
from pipeline.inference.detections import Detections, ImageRecord
from pipeline.inference.postprocess import predict_instances
from pipeline.submission import rows
from pipeline.submission.encode import encoded_rows

PARAMS = PostprocessParams(tta=True, score_thresh=0.0, nms_iou=0.5, mask_thresh=0.5, min_area=0,
                           max_detections=100, attribute_policy="category", grid="native")
LABELS = load_labels()


def random_detections(seed: int, count: int) -> Detections:
    """``count`` detections of two views with random boxes, categories and masks on a 120 x 160 image."""
    rng = np.random.default_rng(seed)
    corners = rng.uniform(0, 100, (count, 2))
    boxes = np.concatenate([corners, corners + rng.uniform(5, 60, (count, 2))], 1).astype(np.float32)
    return Detections(boxes, rng.uniform(0.05, 1, count).astype(np.float32),
                      rng.integers(13, 20, count).astype(np.int16), rng.integers(0, 2, count).astype(np.int8),
                      rng.integers(0, 256, (count, 28, 28)).astype(np.uint8), np.zeros((count, 92), np.uint8), "roi")


@pytest.mark.parametrize("workers", [1, 2])
def test_worker_processes_write_the_rows_of_the_in_process_path(workers):
    records = [ImageRecord(f"{k}.jpg", 120, 160) for k in range(7)]
    found = {r.image_id: random_detections(k, count=3 * k) for k, r in enumerate(records)}  # the first has none
    expected = rows.frame(predict_instances(found, records, 2, PARAMS, LABELS), records)
    got = encoded_rows(found, records, 2, PARAMS, LABELS, workers=workers)
    assert got.equals(expected)
    assert got.iloc[0].tolist() == ["0.jpg", "", rows.EMPTY_CLASS_ID]
    assert list(got.ImageId.drop_duplicates()) == [r.image_id for r in records], "images keep their order"
