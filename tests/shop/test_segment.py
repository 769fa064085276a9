"""Segmenting any photo: readable formats and sizes, clear errors for the rest, and JSON that matches the overlay."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from pycocotools import mask as coco_mask

from pipeline.config.inference import PostprocessParams
from pipeline.data import rle
from pipeline.data.labels import load_labels
from pipeline.inference.predict import Inference, make_views
from pipeline.shop.render import items_json, overlay
from pipeline.shop.segment import PhotoError, Segmenter, photo_on_grid, read_photo
from pipeline.utils.drawing import font_size

from model_configs import maskrcnn_config

LABELS = load_labels()
ACCEPT_ALL = PostprocessParams(tta=True, score_thresh=0.0, nms_iou=0.5, mask_thresh=0.5, min_area=1,
                               max_detections=5, attribute_policy="full", grid="native")


@pytest.fixture(scope="module")
def segmenter() -> Segmenter:
    """An untrained Mask R-CNN without a score threshold: it always finds items, which is all these tests need."""
    config = maskrcnn_config(min_size=64, max_size=96, anchor_sizes=(8, 16, 32, 64, 128), rpn_pre_nms_top_n_test=50,
                             rpn_post_nms_top_n_test=50, box_score_thresh=0.0, box_detections_per_img=10)
    torch.manual_seed(0)
    model = config.build(47, 92).eval()
    inference = Inference(model, make_views((1.0, 1.25), True), config.model, torch.device("cpu"))
    return Segmenter(inference, ACCEPT_ALL, LABELS, max_side=512)


def _photo(path, size, mode="RGB"):
    rng = np.random.default_rng(0)
    small = rng.integers(0, 256, (size[1] // 16 + 1, size[0] // 16 + 1, 3), dtype=np.uint8)
    Image.fromarray(small).resize(size, Image.Resampling.BICUBIC).convert(mode).save(path)
    return path


@pytest.mark.parametrize("name,size,mode", [("photo.png", (150, 200), "RGB"), ("gray.jpg", (120, 90), "L"),
                                            ("alpha.png", (100, 100), "RGBA"), ("huge.jpg", (4000, 3000), "RGB")])
def test_any_photo_gives_items_whose_json_masks_are_the_overlays(segmenter, tmp_path, name, size, mode, offline):
    photo, items = segmenter(_photo(tmp_path / name, size, mode))
    assert (photo.width, photo.height) == size and items
    grid = photo.grid(segmenter.max_side)
    assert max(grid) == min(max(size), segmenter.max_side), "masks on the photo's grid, at most max_side long"
    found = items_json(photo, items, LABELS, {"family": "maskrcnn"})
    decoded = []
    for entry, item in zip(found["items"], items, strict=True):
        kaggle = rle.decode(entry["kaggle_rle"], *grid).astype(bool)
        coco = coco_mask.decode({"size": entry["coco_rle"]["size"],
                                 "counts": entry["coco_rle"]["counts"].encode()}).astype(bool)
        assert (kaggle == item.mask).all() and (coco == item.mask).all()
        assert entry["category"] == LABELS.category_name(entry["category_id"])
        x0, y0, x1, y1 = entry["box"]
        assert 0 <= x0 < x1 <= photo.width and 0 <= y0 < y1 <= photo.height
        rows, cols = np.flatnonzero(kaggle.any(1)), np.flatnonzero(kaggle.any(0))
        across, down = photo.width / grid[1], photo.height / grid[0]
        assert entry["box"] == pytest.approx([cols[0] * across, rows[0] * down, (cols[-1] + 1) * across,
                                              (rows[-1] + 1) * down], abs=0.051), "the mask's box, in photo pixels"
        decoded.append(type(item)(item.category, item.attributes, item.score, item.box, kaggle))
    picture = photo_on_grid(photo, segmenter.max_side)
    drawn = np.asarray(overlay(picture, items, LABELS))
    line = font_size(grid[1]) + 6  # a title line above the photo on its grid, a legend line per item beneath
    assert drawn.shape == (line + grid[0] + line * len(items) + 4, grid[1], 3)
    assert (np.asarray(overlay(picture, decoded, LABELS)) == drawn).all(), "the JSON's masks draw the same overlay"
    inside = items[-1].mask & ~np.logical_or.reduce([i.mask for i in items[:-1]] + [np.zeros(grid, bool)])
    shown = drawn[line:line + grid[0]]
    assert (shown[inside] != np.asarray(picture.convert("RGB"))[inside]).any(), "an item's pixels are tinted"


@pytest.mark.parametrize("content,message", [(b"", "the file is empty"), (b"not an image", r"not an image \(JPEG, "),
                                             (b"\xff\xd8\xff\xe0broken", "not an image PIL can read")])
def test_a_file_that_is_not_an_image_is_a_clear_error(segmenter, tmp_path, content, message):
    path = tmp_path / "photo.jpg"
    path.write_bytes(content)
    with pytest.raises(PhotoError, match=f"photo.jpg: {message}"):
        read_photo(path, segmenter.inference.model_params, 1.25)
    with pytest.raises(PhotoError, match="no such file"):
        read_photo(tmp_path / "missing.png", segmenter.inference.model_params, 1.25)


def test_an_exif_rotated_photo_is_segmented_upright(segmenter, tmp_path):
    path = tmp_path / "rotated.jpg"
    image = Image.new("RGB", (200, 100), "white")
    exif = image.getexif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees on display
    image.save(path, exif=exif)
    photo = read_photo(path, segmenter.inference.model_params, 1.0)
    assert (photo.width, photo.height) == (100, 200)
