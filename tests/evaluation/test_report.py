"""The validation report streams its images: memory does not grow with the fold (the real one has 9,000 images)."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pandas as pd

from pipeline.config.inference import PostprocessParams
from pipeline.data import rle
from pipeline.data.labels import load_labels
from pipeline.evaluation import report, scoring
from pipeline.inference.detections import Detections, ImageRecord

LABELS = load_labels()
PARAMS = PostprocessParams(tta=False, score_thresh=0.5, nms_iou=0.5, mask_thresh=0.5, min_area=0, max_detections=100,
                           attribute_policy="full", grid="512x512")
SIDE, PER_IMAGE = 1024, 20  # each image: 20 dresses, every one a 512 x 512 mask on the submission grid


def fold(n_images: int) -> tuple[list[ImageRecord], dict[str, Detections], pd.DataFrame]:
    """Images with 20 separate dresses each, found at 0.9 with two attributes; one true dress with them."""
    records = [ImageRecord(f"{k:03d}.jpg", SIDE, SIDE) for k in range(n_images)]
    corners = [(100 * (k % 10), 200 * (k // 10)) for k in range(PER_IMAGE)]
    boxes = np.array([[x, y, x + 90, y + 190] for x, y in corners], np.float32)
    attributes = np.zeros((PER_IMAGE, len(LABELS.attributes)), np.uint8)
    attributes[:, [5, 20]] = 230
    detections = {r.image_id: Detections(boxes, np.full(PER_IMAGE, 0.9, np.float32), np.full(PER_IMAGE, 10, np.int16),
                                         np.zeros(PER_IMAGE, np.int8), np.full((PER_IMAGE, 28, 28), 255, np.uint8),
                                         attributes, "roi", 1) for r in records}
    truth_mask = np.zeros((SIDE, SIDE), bool)
    truth_mask[0:190, 0:90] = True
    rows = [{"image_id": r.image_id, "height": SIDE, "width": SIDE, "class_id": "10_5_20", "category": 10,
             "rle": rle.encode(truth_mask)} for r in records]
    return records, detections, pd.DataFrame(rows)


def peak_bytes(work) -> int:
    tracemalloc.start()
    try:
        work()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_the_attribute_quality_and_the_val_submission_hold_one_image_at_a_time(tmp_path):
    """Each image's 20 masks take 5 MB on the grid: holding the fold's would take 12 times that here."""
    peaks = {}
    for n in (2, 12):
        records, detections, table = fold(n)
        truth = scoring.truth_on_grid(table, records, PARAMS)

        def work(records=records, detections=detections, truth=truth, n=n) -> None:
            quality = report.attribute_quality(detections, records, PARAMS, truth, LABELS)
            assert quality["found"] == n and quality["exact_set"] == 1.0
            frame = report.write_val_submission(detections, records, PARAMS, LABELS, tmp_path / f"{n}.csv", 1)
            assert len(frame) == n * PER_IMAGE

        peaks[n] = peak_bytes(work)
    one_image = PER_IMAGE * 512 * 512
    assert peaks[2] > one_image, "the work was measured"
    assert peaks[12] < peaks[2] + 2 * one_image, f"peak {peaks[12] / 2**20:.0f} MiB for 12 images, " \
                                                  f"{peaks[2] / 2**20:.0f} MiB for 2"
