"""Raw predictions on disk: exact round trip, resume after an interruption, restart when the key changes."""

from __future__ import annotations

import errno
import json
from pathlib import Path

import numpy as np
import pytest

from pipeline.inference import store
from pipeline.inference.detections import Detections, ImageRecord
from pipeline.models.contract import MaskFormat
from pipeline.utils.io import DiskFullError
from pipeline.utils.lock import BusyError, exclusive

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
                      rng.integers(0, 256, (n, 92)).astype(np.uint8), "roi", 2)


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


def made(key: dict = KEY, views: tuple[str, ...] = ("x1", "x1-flip"), limit: int | None = None) -> store.Made:
    return store.Made(key, "maskrcnn", list(views), ROI, 92, limit)


def write(folder, predictor, key=KEY, part_size=3):
    return store.write(folder, made(key), RECORDS, predictor, part_size)


def table(predictions: store.Predictions) -> store.pa.Table:
    return store.pq.read_table(predictions.folder / store.DETECTIONS)


def assert_same(a: Detections, b: Detections) -> None:
    for field in ("boxes", "scores", "categories", "views", "masks", "attributes"):
        assert np.array_equal(getattr(a, field), getattr(b, field)), field
        assert getattr(a, field).dtype == getattr(b, field).dtype, field
    assert (a.mask_kind, a.n_views) == (b.mask_kind, b.n_views)


def test_round_trip_keeps_every_detection_and_every_image(tmp_path):
    result = write(tmp_path / "val", Predictor())
    assert result.images == RECORDS and result.views == ["x1", "x1-flip"]
    by_image = store.read(tmp_path / "val").by_image()
    assert list(by_image) == [r.image_id for r in RECORDS], "images without detections are listed too"
    for record in RECORDS:
        assert_same(by_image[record.image_id], fake_detections(record))
    assert not (tmp_path / "val" / store.PARTS).exists()


def test_a_sample_of_images_reads_only_their_detections(tmp_path, monkeypatch):
    """Stage tune reads the sample it scores (1,000 of the real fold's 9,000 images), not the whole table."""
    result = write(tmp_path / "val", Predictor())
    sample = [RECORDS[5].image_id, RECORDS[0].image_id, RECORDS[3].image_id]
    read_rows = []
    real_read = store.pq.read_table
    monkeypatch.setattr(store.pq, "read_table", lambda *a, **k: read_rows.append(real_read(*a, **k).num_rows)
                        or real_read(*a, **k))
    by_image = result.by_image(sample)
    assert list(by_image) == sample
    for image_id in sample:
        assert_same(by_image[image_id], fake_detections(next(r for r in RECORDS if r.image_id == image_id)))
    assert read_rows == [sum(len(fake_detections(r)) for r in RECORDS if r.image_id in sample)]
    with pytest.raises(store.PredictionsError, match="no predictions for 1 image"):
        result.by_image(["not-predicted.jpg"])


def test_rows_of_an_image_apart_in_the_table_are_still_one_image(tmp_path):
    result = write(tmp_path / "val", Predictor())
    path = tmp_path / "val" / store.DETECTIONS
    table = store.pq.read_table(path)
    shuffled = np.random.default_rng(0).permutation(table.num_rows)  # the images' rows interleaved
    store.pq.write_table(table.take(shuffled), path)
    by_image, start = result.by_image(), 0
    for record in RECORDS:
        expected = fake_detections(record)
        end = start + len(expected)
        assert_same(by_image[record.image_id], expected.select(np.array([k - start for k in shuffled
                                                                          if start <= k < end], dtype=int)))
        start = end


def test_a_table_read_in_many_chunks_gives_the_same_detections(tmp_path):
    """The real fold's table has many row groups: each binary column comes back in chunks, each at an offset."""
    result = write(tmp_path / "val", Predictor())
    path = tmp_path / "val" / store.DETECTIONS
    store.pq.write_table(store.pq.read_table(path), path, row_group_size=2)
    assert store.pq.ParquetFile(path).metadata.num_row_groups > 3
    empty = next(r.image_id for r in RECORDS if not len(fake_detections(r)))
    sample = [RECORDS[3].image_id, empty, RECORDS[6].image_id]
    for by_image in (result.by_image(), result.by_image(sample)):
        for image_id in (sample if len(by_image) == 3 else [r.image_id for r in RECORDS]):
            assert_same(by_image[image_id], fake_detections(next(r for r in RECORDS if r.image_id == image_id)))


def test_a_mask_of_the_wrong_size_is_a_damaged_folder(tmp_path):
    result = write(tmp_path / "val", Predictor())
    path = tmp_path / "val" / store.DETECTIONS
    table = store.pq.read_table(path)
    masks = table.column("mask").to_pylist()
    masks[0] = masks[0][:-1]
    store.pq.write_table(table.set_column(table.schema.get_field_index("mask"), "mask",
                                          store.pa.array(masks, store.pa.binary())), path)
    with pytest.raises(store.PredictionsError, match="column mask has values that are not 784 bytes long"):
        result.by_image()


def test_a_view_number_the_manifest_does_not_have_is_a_damaged_folder(tmp_path):
    """Post-processing scores a detection missing from a view as 0 there: the views must be the manifest's."""
    result = write(tmp_path / "val", Predictor())
    assert result.n_views == 2
    path = tmp_path / "val" / store.DETECTIONS
    table = store.pq.read_table(path)
    views = table.column("view").to_numpy().copy()
    views[0] = 2
    store.pq.write_table(table.set_column(table.schema.get_field_index("view"), "view",
                                          store.pa.array(views, store.pa.int8())), path)
    with pytest.raises(store.PredictionsError, match="view numbers outside the 2 views of manifest.json"):
        result.by_image()


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
    result = store.write(tmp_path / "test", made(views=("x1",)), [], Predictor(), 3)
    assert result.images == [] and result.detection_count == 0 and result.by_image() == {}


def interrupted(folder: Path) -> None:
    """A run stopped after two finished parts (images 0-5 of 7)."""
    with pytest.raises(KeyboardInterrupt):
        write(folder, Predictor(fail_after=6))
    assert sorted(p.name for p in (folder / store.PARTS).glob("part-*.json")) == ["part-00000.json", "part-00001.json"]


def cut_short(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


@pytest.mark.parametrize(("damage", "part"), [
    (lambda parts: cut_short(parts / "part-00001.parquet"), 1),
    (lambda parts: (parts / "part-00000.parquet").unlink(), 0),
    (lambda parts: (parts / "part-00000.parquet").write_bytes(b"PAR1 not a table PAR1"), 0),
    (lambda parts: (parts / "part-00001.json").write_text('["04.jpg", "05'), 1),
])
def test_a_damaged_part_is_predicted_again_and_the_others_kept(tmp_path, caplog, damage, part):
    clean = write(tmp_path / "clean", Predictor())
    folder = tmp_path / "val"
    interrupted(folder)
    damage(folder / store.PARTS)
    again = Predictor()
    with caplog.at_level("WARNING"):
        result = write(folder, again)
    damaged = [r.image_id for r in RECORDS[3 * part : 3 * part + 3]]
    assert again.asked == damaged + [r.image_id for r in RECORDS[6:]], "the damaged part and the rest, no more"
    assert f"part-0000{part}" in caplog.text and "its images are predicted again" in caplog.text
    assert table(result).equals(table(clean))


def test_a_finished_folder_with_a_damaged_file_is_refused_then_predicted_again(tmp_path, caplog):
    folder = tmp_path / "val"
    write(folder, Predictor())
    cut_short(folder / store.DETECTIONS)
    with pytest.raises(store.PredictionsError, match=rf"{folder}: damaged, detections.parquet has [\d,]+ bytes, "
                                                     r"[\d,]+ were written; run stage predict"):
        store.read(folder)
    again = Predictor()
    with caplog.at_level("WARNING"):
        write(folder, again)
    assert again.asked == [r.image_id for r in RECORDS] and "predicting it again" in caplog.text
    assert len(store.read(folder).images) == len(RECORDS)


@pytest.mark.parametrize("views", [[], "x1", [1]])
def test_a_manifest_without_view_names_is_a_damaged_folder(tmp_path, views):
    folder = tmp_path / "val"
    write(folder, Predictor())
    manifest = json.loads((folder / store.MANIFEST).read_text())
    (folder / store.MANIFEST).write_text(json.dumps({**manifest, "views": views}))
    with pytest.raises(store.PredictionsError, match=f"{folder}: damaged, manifest.json: views is not a list"):
        store.read(folder)


def test_a_folder_missing_an_image_it_was_made_for_is_refused(tmp_path):
    """One row taken out of images.csv: evaluate used to score the 6 images left as if they were the fold."""
    folder = tmp_path / "val"
    write(folder, Predictor())
    lines = (folder / store.IMAGES).read_text().splitlines()
    (folder / store.IMAGES).write_text("\n".join(lines[:-1]) + "\n")
    with pytest.raises(store.PredictionsError, match=f"{folder}: damaged, images.csv"):
        store.read(folder)


def test_a_smoke_run_is_refused_by_every_reader(tmp_path):
    made_limited = store.Made(KEY, "maskrcnn", ["x1"], ROI, 92, limit=3)
    result = store.write(tmp_path / "val", made_limited, RECORDS[:3], Predictor(), 3)
    assert len(result.images) == 3, "stage predict itself reports what it predicted"
    with pytest.raises(store.PredictionsError, match="made with --limit 3, a smoke run .* without --limit"):
        store.read(tmp_path / "val")


@pytest.mark.parametrize("failing", ["part-00000", "part-00002"], ids=["first part", "last part"])
def test_an_error_of_the_thread_writing_parts_ends_the_run_with_it(tmp_path, monkeypatch, failing):
    """The first part's error surfaces when the next part is handed over, the last one's when the run ends."""
    write_table = store.pq.write_table

    def full_disk(table, where, **kwargs):
        if failing in str(where):
            raise OSError(errno.ENOSPC, "No space left on device")
        return write_table(table, where, **kwargs)

    monkeypatch.setattr(store.pq, "write_table", full_disk)
    with pytest.raises(DiskFullError, match=rf"no space left on device while writing .*{failing}.parquet"):
        write(tmp_path / "val", Predictor())
    folder = tmp_path / "val"
    assert not (folder / store.MANIFEST).exists() and not (folder / store.PARTS / f"{failing}.json").exists()


def test_a_folder_another_run_writes_is_refused(tmp_path):
    with exclusive(tmp_path / "val", "stage predict val"), \
            pytest.raises(BusyError, match=rf"{tmp_path / 'val'} is busy: stage predict val \(process"):
        write(tmp_path / "val", Predictor())
