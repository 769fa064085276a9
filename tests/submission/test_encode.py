"""Post-processing and encoding in worker processes give the rows the in-process path gives."""

from __future__ import annotations

import sys
import threading
from multiprocessing.pool import ThreadPool
from types import SimpleNamespace

import numpy as np
import pytest
import yaml

import stages.submission
from pipeline.config.inference import PostprocessParams
from pipeline.data.labels import load_labels
from pipeline.inference import store
from pipeline.inference.detections import Detections, ImageRecord
from pipeline.inference.postprocess import predict_instances
from pipeline.models.contract import MaskFormat
from pipeline.submission import encode, rows
from pipeline.submission.encode import encoded_rows
from pipeline.utils import pool as pool_module

from stage_runs import REPO, params_file

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
                      rng.integers(0, 256, (count, 28, 28)).astype(np.uint8), np.zeros((count, 92), np.uint8),
                      "roi", 2)


@pytest.mark.parametrize("workers", [1, 2])
def test_worker_processes_write_the_rows_of_the_in_process_path(workers):
    records = [ImageRecord(f"{k}.jpg", 120, 160) for k in range(7)]
    found = {r.image_id: random_detections(k, count=3 * k) for k, r in enumerate(records)}  # the first has none
    expected = rows.frame(predict_instances(found, records, PARAMS, LABELS), records)
    got = encoded_rows(found, records, PARAMS, LABELS, workers=workers)
    assert got.equals(expected)
    assert got.iloc[0].tolist() == ["0.jpg", "", rows.EMPTY_CLASS_ID]
    assert list(got.ImageId.drop_duplicates()) == [r.image_id for r in records], "images keep their order"


def _threads_for_processes(monkeypatch) -> list[int]:
    """``encoded_rows``'s process pool made a pool of threads, which see this process's patches; returns the sizes
    of the pools asked for."""
    sizes: list[int] = []

    def pool(processes: int, initializer=None, initargs=()) -> ThreadPool:  # no initializer: it sets torch's threads
        sizes.append(processes)
        return ThreadPool(processes)

    context = SimpleNamespace(Pool=pool)
    monkeypatch.setattr(pool_module, "multiprocessing", SimpleNamespace(get_context=lambda method: context))
    return sizes


def test_rows_keep_the_images_order_when_a_later_chunk_of_images_finishes_first(monkeypatch):
    """Two chunks of 8 images on two workers; the first image waits until the last one is done."""
    sizes = _threads_for_processes(monkeypatch)
    records = [ImageRecord(f"{k}.jpg", 120, 160) for k in range(16)]
    found = {r.image_id: random_detections(k, count=2) for k, r in enumerate(records)}
    last_done, one_image = threading.Event(), encode._one_image

    def in_reverse(task, *args, **kwargs):
        if task[1] is records[0]:
            assert last_done.wait(timeout=60), "the second chunk never ran"
        done = one_image(task, *args, **kwargs)
        if task[1] is records[-1]:
            last_done.set()
        return done

    monkeypatch.setattr(encode, "_one_image", in_reverse)
    got = encoded_rows(found, records, PARAMS, LABELS, workers=2)
    assert sizes == [2]
    assert list(got.ImageId.drop_duplicates()) == [r.image_id for r in records], "images keep their order"
    assert got.equals(rows.frame(predict_instances(found, records, PARAMS, LABELS), records))


def test_the_submission_stage_encodes_with_the_workers_of_its_params(small_dataset, tmp_path, monkeypatch):
    """submission.workers: 2 reaches the pool (5 test images: the default would encode them in-process)."""
    sizes = _threads_for_processes(monkeypatch)
    records = rows.test_records(small_dataset / "sample_submission.csv", small_dataset / "test")
    store.write(tmp_path / "test", store.Made({}, "maskrcnn", ["x1"], MaskFormat("roi", 28), 92), records,
                lambda todo: iter([(todo, [Detections.empty(28, 92, "roi", 1) for _ in todo])]), 8)
    tuned = tmp_path / "tuned.yaml"
    tuned.write_text(yaml.safe_dump({"family": "maskrcnn",
                                     "postprocess": yaml.safe_load((REPO / "params.yaml").read_text())["postprocess"]}))
    params = params_file(tmp_path, submission={"workers": 2})
    monkeypatch.setattr(sys, "argv", [
        "submission", "--params", str(params), "--predictions", str(tmp_path / "test"),
        "--sample-submission", str(small_dataset / "sample_submission.csv"),
        "--test-images", str(small_dataset / "test"), "--labels", str(small_dataset / "label_descriptions.json"),
        "--tuned", str(tuned), "--out", str(tmp_path / "submission.csv")])
    stages.submission.main()
    assert sizes == [2], "the pool has submission.workers processes"
    assert (tmp_path / "submission.csv").is_file()
