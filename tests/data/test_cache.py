"""The resized image cache: sizes, masks at the new size, resume after an interruption, invalidation."""

from __future__ import annotations

import dataclasses
import tracemalloc
from pathlib import Path

import pandas as pd
import pytest
import torch
from PIL import Image

from pipeline.data import image_cache, rle
from pipeline.data.annotations import DataError
from pipeline.data.dataset import InstanceDataset, decode_masks
from pipeline.data.image_cache import CacheSettings, build_cache
from pipeline.data.transforms import resize, scaled_size
from pipeline.utils.lock import BusyError, exclusive
from pipeline.utils.paths import UnsafePathError

SETTINGS = CacheSettings(min_size=64, max_size=96, scale_high=1.25, jpeg_quality=95)


def test_images_are_downscaled_to_the_largest_training_size_and_masks_follow(small_instances, small_dataset,
                                                                              tmp_path):
    report = build_cache(small_instances, small_dataset / "train", tmp_path / "cache", SETTINGS)
    table = pd.read_parquet(tmp_path / "cache" / "instances.parquet")
    assert report.images == small_instances.image_id.nunique() == table.image_id.nunique()
    assert report.instances + report.instances_vanished == len(small_instances)
    assert report.images_resized == report.images, "every small-dataset image is larger than 80x120"
    assert list(table.columns) == list(small_instances.columns)
    for image_id, rows in list(table.groupby("image_id"))[:5]:
        source = small_instances[small_instances.image_id == image_id]
        height, width = int(source.height.iloc[0]), int(source.width.iloc[0])
        size = scaled_size(height, width, SETTINGS.scale(height, width))
        assert min(size) == round(64 * 1.25) or max(size) == round(96 * 1.25)
        with Image.open(tmp_path / "cache" / "images" / image_id) as image:
            assert image.size == (size[1], size[0])
        assert (rows.height == size[0]).all() and (rows.width == size[1]).all()
        expected = resize(torch.zeros(3, height, width, dtype=torch.uint8),
                          decode_masks(source.rle.tolist(), height, width), size)[1]
        kept = expected.flatten(1).any(1).bool()
        assert torch.equal(decode_masks(rows.rle.tolist(), *size), expected[kept])
        assert rows.area.tolist() == expected[kept].flatten(1).sum(1).tolist()
        assert rows.class_id.tolist() == source.class_id[kept.numpy()].tolist()


def test_training_reads_the_cache_like_the_originals(small_instances, small_dataset, tmp_path):
    """Through the cache masks are resized twice, without it once: edges may move by a pixel, but nothing
    may shift. Measured here: mean centroid offset (0.00, 0.05) px, mean IoU 0.87, mean pixel difference
    0.009; the same images shifted by one pixel give (0.00, 1.05) px, 0.67 and 0.026."""
    build_cache(small_instances, small_dataset / "train", tmp_path / "cache", SETTINGS)
    table = pd.read_parquet(tmp_path / "cache" / "instances.parquet")
    cached = InstanceDataset(table, tmp_path / "cache" / "images", 64, 96, 92)
    original = InstanceDataset(small_instances, small_dataset / "train", 64, 96, 92)
    offsets, ious, differences = [], [], []
    for index in range(len(original)):
        image_a, target_a, _ = cached[index]
        image_b, target_b, _ = original[index]
        assert all(abs(a - b) <= 1 for a, b in zip(image_a.shape, image_b.shape, strict=True)), "sizes round apart"
        height, width = min(image_a.shape[1], image_b.shape[1]), min(image_a.shape[2], image_b.shape[2])
        differences.append(float((image_a[:, :height, :width] - image_b[:, :height, :width]).abs().mean()))
        # per category, so that an instance one path drops at this size does not spoil the comparison
        for category in set(target_a["labels"].tolist()) & set(target_b["labels"].tolist()):
            a, b = (t["masks"][t["labels"] == category].any(0)[:height, :width] for t in (target_a, target_b))
            if a.sum() >= 20 and b.sum() >= 20:
                ious.append(float((a & b).sum() / (a | b).sum()))
                offsets.append((torch.nonzero(a).float().mean(0) - torch.nonzero(b).float().mean(0)).tolist())
    assert len(ious) > 100
    assert all(abs(mean) < 0.15 for mean in torch.tensor(offsets).mean(0).tolist()), "masks shifted"
    assert sum(ious) / len(ious) > 0.84 and sum(differences) / len(differences) < 0.015


def test_an_interrupted_cache_resumes_and_other_settings_rebuild_it(small_instances, small_dataset, tmp_path,
                                                                     monkeypatch):
    monkeypatch.setattr(image_cache, "PART_IMAGES", 5)
    out = tmp_path / "cache"
    first = build_cache(small_instances, small_dataset / "train", out, SETTINGS)
    parts = sorted((out / "parts").glob("*.parquet"))
    assert len(parts) == -(-first.images // 5) and first.parts_reused == 0
    parts[-1].with_suffix(".json").unlink()  # the last part's record, written last: as if killed before it
    (out / "instances.parquet").unlink()
    resumed = build_cache(small_instances, small_dataset / "train", out, SETTINGS)
    assert resumed.parts_reused == len(parts) - 1
    assert resumed == dataclasses.replace(first, parts_reused=len(parts) - 1)
    again = build_cache(small_instances, small_dataset / "train", out, SETTINGS)
    assert again.up_to_date and again.parts_reused == 0, "a finished cache is not 'kept from an interrupted run'"
    assert again.metrics() == first.metrics()
    other = build_cache(small_instances, small_dataset / "train", out,
                        CacheSettings(min_size=32, max_size=48, scale_high=1.0, jpeg_quality=90))
    assert other.parts_reused == 0
    with Image.open(next((out / "images").iterdir())) as image:
        assert min(image.size) <= 32


def test_masks_too_small_for_the_cached_size_are_counted(small_instances, small_dataset, tmp_path):
    rows = small_instances[small_instances.image_id == small_instances.image_id.iloc[0]]
    height, width = int(rows.height.iloc[0]), int(rows.width.iloc[0])
    speck = torch.zeros(height, width, dtype=torch.uint8)
    speck[3, 3] = 1
    table = pd.concat([rows, rows.iloc[[0]].assign(rle=rle.encode(speck.numpy()))], ignore_index=True)
    report = build_cache(table, small_dataset / "train", tmp_path / "cache",
                         CacheSettings(min_size=16, max_size=24, scale_high=1.0, jpeg_quality=90))
    assert report.instances_vanished >= 1
    assert report.instances + report.instances_vanished == len(table)


def test_a_missing_image_names_the_file(small_instances, dataset_copy, tmp_path):
    victim = sorted(small_instances.image_id.unique())[2]
    (dataset_copy / "train" / victim).unlink()
    with pytest.raises(DataError, match=f"{victim}: image not found"):
        build_cache(small_instances, dataset_copy / "train", tmp_path / "cache", SETTINGS)


def test_a_process_pool_writes_the_same_cache(small_instances, small_dataset, tmp_path):
    serial = build_cache(small_instances, small_dataset / "train", tmp_path / "serial", SETTINGS, workers=1)
    pooled = build_cache(small_instances, small_dataset / "train", tmp_path / "pooled", SETTINGS, workers=2)
    assert serial == pooled
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "serial" / "instances.parquet"),
                                  pd.read_parquet(tmp_path / "pooled" / "instances.parquet"))


def _second_part_image(out: Path) -> Path:
    return out / "images" / sorted(pd.read_parquet(out / "parts" / "part-00001.parquet").image_id.unique())[0]


@pytest.mark.parametrize("damage", [lambda image: image.unlink(),
                                    lambda image: image.write_bytes(image.read_bytes()[:100])],
                         ids=["deleted", "cut short"])
def test_a_damaged_cached_image_is_made_again_with_its_part(small_instances, small_dataset, tmp_path, monkeypatch,
                                                            damage):
    """The cache used to say 'up to date: nothing redone', and stage index failed on the image later."""
    monkeypatch.setattr(image_cache, "PART_IMAGES", 5)
    out = tmp_path / "cache"
    first = build_cache(small_instances, small_dataset / "train", out, SETTINGS)
    image = _second_part_image(out)
    written = image.read_bytes()
    damage(image)
    repaired = build_cache(small_instances, small_dataset / "train", out, SETTINGS)
    assert repaired.parts_redone == 1 and not repaired.up_to_date
    assert str(image) in repaired.redone_because
    assert image.read_bytes() == written and repaired.metrics() == first.metrics()
    again = build_cache(small_instances, small_dataset / "train", out, SETTINGS)
    assert again.up_to_date and again.parts_redone == 0


def test_a_damaged_part_is_made_again(small_instances, small_dataset, tmp_path, monkeypatch):
    monkeypatch.setattr(image_cache, "PART_IMAGES", 5)
    out = tmp_path / "cache"
    first = build_cache(small_instances, small_dataset / "train", out, SETTINGS)
    table = pd.read_parquet(out / "instances.parquet")
    part = out / "parts" / "part-00002.parquet"
    part.write_bytes(part.read_bytes()[:50])
    (out / "instances.parquet").write_bytes(b"PAR1")
    repaired = build_cache(small_instances, small_dataset / "train", out, SETTINGS)
    assert repaired.parts_redone == 1 and "part-00002.parquet has 50 bytes" in repaired.redone_because
    assert repaired.metrics() == first.metrics()
    pd.testing.assert_frame_equal(pd.read_parquet(out / "instances.parquet"), table)


@pytest.mark.parametrize("relative", [False, True], ids=["absolute", "relative"])
def test_an_image_id_that_is_a_path_is_never_read_or_written(small_instances, small_dataset, tmp_path, relative):
    """Defence in depth behind prepare's check: the cache used to re-encode a path ImageId's JPEG in place (an
    absolute one, or one relative to the image folder), and to sweep stale temporaries in that foreign folder."""
    original = (small_dataset / "train" / small_instances.image_id.iloc[0]).read_bytes()
    foreign = tmp_path / "srv" / "photos"
    foreign.mkdir(parents=True)
    (foreign / "victim.jpg").write_bytes(original)
    stale = foreign / ".victim.jpg.tmp-999999"
    stale.write_bytes(b"someone else's file")
    images = tmp_path / "data" / "raw" / "train"  # ../../../srv/photos is the foreign folder from here and the cache's
    images.mkdir(parents=True)
    image_id = "../../../srv/photos/victim.jpg" if relative else str(foreign / "victim.jpg")
    rows = small_instances[small_instances.image_id == small_instances.image_id.iloc[0]].assign(image_id=image_id)
    with pytest.raises(UnsafePathError, match=f"{image_id!r} is not a plain file name"):
        build_cache(rows, images, tmp_path / "data" / "cache", SETTINGS)
    assert (foreign / "victim.jpg").read_bytes() == original and stale.is_file()


def test_a_cache_another_run_builds_is_refused(small_instances, small_dataset, tmp_path):
    with exclusive(tmp_path / "cache", "stage cache"), \
            pytest.raises(BusyError, match=rf"{tmp_path / 'cache'} is busy: stage cache \(process"):
        build_cache(small_instances, small_dataset / "train", tmp_path / "cache", SETTINGS)
    assert not (tmp_path / "cache").exists(), "nothing was touched"


def test_a_large_photo_with_many_instances_is_cached_one_mask_at_a_time(tmp_path):
    """A 2,400 x 1,600 photo with 40 instances: its masks at full size together would take 154 MB.

    tracemalloc sees numpy's allocations (the masks are decoded with numpy), not torch's."""
    height, width, count = 2400, 1600, 40
    (tmp_path / "raw").mkdir()
    Image.new("RGB", (width, height), (120, 60, 30)).save(tmp_path / "raw" / "big.jpg")
    bands = [rle.encode((torch.arange(height)[:, None] // 60 == k).expand(height, width).numpy()) for k in range(count)]
    rows = pd.DataFrame({"image_id": "big.jpg", "height": height, "width": width, "rle": bands})
    (tmp_path / "images").mkdir()
    tracemalloc.start()
    cached = image_cache._cache_one((rows, tmp_path / "raw", tmp_path / "images", SETTINGS))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert len(cached) == count and cached.area.gt(0).all()
    assert peak < 4 * height * width, f"{peak / 2**20:.0f} MiB at the peak: the masks were decoded together"
