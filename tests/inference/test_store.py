"""Raw predictions on disk: exact round trip, resume after an interruption, restart when the key changes."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.inference import store
from pipeline.inference.detections import Detections, ImageRecord
from pipeline.models.contract import MaskFormat

ROI = MaskFormat("roi", 28)
RECORDS = [ImageRecord(f"{k:02d}.jpg", 100 + k, 80 + k) for k in range(7)]
# Shaped as inference.prediction_key builds it: ModelSpec's fields are tuples, which JSON stores as lists.
KEY = {"checkpoint": "abc", "model": {"anchor_sizes": (32, 64, 128, 256, 512), "aspect_ratios": (0.5, 1.0, 2.0)},
       "predict": {"scales": (1.0,)}}


def fake_detections(record: ImageRecord) -> Detections:
    """A reproducible number (0 to 3) of detections per image, some images with none."""
    rng = np.random.default_rng(int(record.image_id[:2]))
    n = int(record.image_id[:2]) % 4
    boxes = np.sort(rng.uniform(0, 80, (n, 4)).astype(np.float32).reshape(n, 2, 2), axis=1).reshape(n, 4)
    return Detections(boxes, rng.uniform(0, 1, n).astype(np.float32), rng.integers(0, 46, n).astype(np.int16),
                      rng.integers(0, 2, n).astype(np.int8), rng.integers(0, 256, (n, 28, 28)).astype(np.uint8),
                      rng.integers(0, 256, (n, 92)).astype(np.uint8), "roi")


class Predictor:
    """Predicts two images per batch; counts the images it was asked for; can fail after some."""

    def __init__(self, fail_after: int | None = None) -> None:
        self.asked: list[str] = []
        self.fail_after = fail_after

    def __call__(self, todo):
        for start in range(0, len(todo), 2):
            batch = todo[start : start + 2]
            if self.fail_after is not None and len(self.asked) >= self.fail_after:
                raise KeyboardInterrupt
            self.asked += [r.image_id for r in batch]
            yield batch, [fake_detections(r) for r in batch]


def write(folder, predictor, key=KEY, part_size=3):
    return store.write(folder, key, RECORDS, ROI, 92, ["x1", "x1-flip"], predictor, part_size)


def assert_same(a: Detections, b: Detections) -> None:
    for field in ("boxes", "scores", "categories", "views", "masks", "attributes"):
        assert np.array_equal(getattr(a, field), getattr(b, field)), field


def test_round_trip_keeps_every_detection_and_every_image(tmp_path):
    result = write(tmp_path / "val", Predictor())
    assert result.images == RECORDS and result.views == ["x1", "x1-flip"]
    by_image = store.read(tmp_path / "val").by_image()
    assert list(by_image) == [r.image_id for r in RECORDS], "images without detections are listed too"
    for record in RECORDS:
        assert_same(by_image[record.image_id], fake_detections(record))
    assert not (tmp_path / "val" / store.PARTS).exists()


def test_an_interrupted_run_resumes_with_the_finished_parts(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        write(tmp_path / "val", Predictor(fail_after=4))
    again = Predictor()
    result = write(tmp_path / "val", again)
    assert again.asked == [r.image_id for r in RECORDS[3:]], "the first part (3 images) is not predicted again"
    for record in RECORDS:
        assert_same(result.by_image()[record.image_id], fake_detections(record))
    finished = Predictor()
    write(tmp_path / "val", finished)
    assert finished.asked == [], "a finished folder is reused as it is"


def test_other_settings_start_over(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        write(tmp_path / "val", Predictor(fail_after=4))
    again = Predictor()
    write(tmp_path / "val", again, key={**KEY, "checkpoint": "def"})
    assert again.asked == [r.image_id for r in RECORDS]
    rerun = Predictor()
    write(tmp_path / "val", rerun, key={**KEY, "checkpoint": "xyz"})
    assert rerun.asked == [r.image_id for r in RECORDS], "a finished folder made otherwise is redone"


def test_reading_an_unfinished_folder_is_a_clear_error(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        write(tmp_path / "val", Predictor(fail_after=4))
    with pytest.raises(store.PredictionsError, match="not a finished prediction folder"):
        store.read(tmp_path / "val")


def test_no_images_make_an_empty_but_finished_folder(tmp_path):
    result = store.write(tmp_path / "test", KEY, [], ROI, 92, ["x1"], Predictor(), 3)
    assert result.images == [] and len(result.detections) == 0 and result.by_image() == {}
