"""The Python API as a user drives it: README's lines, any photo, lists and folders, names, JSON, similar items."""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
import yaml
from PIL import Image, ImageOps

from pipeline import load
from pipeline.config.params import ParamsError
from pipeline.data import rle
from pipeline.data.labels import load_labels
from pipeline.shop.catalogue import CatalogueError
from pipeline.shop.features import FeaturesError
from pipeline.shop.segment import PhotoError

from model_configs import unet_config
from stage_runs import REPO, TINY_UNET_TRAINING, training_inputs

LABELS = load_labels()


@pytest.fixture(scope="module")
def model(project):
    return load(project / "models" / "maskrcnn")


@pytest.fixture(scope="module")
def photo(small_dataset):
    return sorted((small_dataset / "test").iterdir())[0]


def _readme_api_lines() -> str:
    text = (REPO / "README.md").read_text()
    block = re.search(r"## Python API\n.*?```python\n(.*?)```", text, re.S)
    assert block, "README has a Python API section with a python block"
    return block.group(1)


def test_readmes_api_lines_run_as_shown_in_a_project(project, photo, tmp_path):
    """README's five lines, run in the project folder with the photo it names, offline, write what they say."""
    lines = _readme_api_lines()
    assert len(lines.strip().splitlines()) == 5
    work = tmp_path / "project"
    shutil.copytree(project, work)
    shutil.copy(photo, work / "photo.jpg")
    done = subprocess.run([sys.executable, str(REPO / "tests" / "offline_stage.py"), "-c", lines], cwd=work,
                          capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 0, done.stderr
    written = json.loads((work / "items.json").read_text())
    assert written["items"] and written["model"]["family"] == "maskrcnn"
    assert written["photo"] == "photo.jpg" and "catalogue" not in written["model"]
    for picture in ("overlay.png", "similar.png"):
        with Image.open(work / picture) as image:
            assert image.width > 0 and image.height > 0


def test_a_path_a_pil_image_and_an_array_of_the_same_photo_give_the_same_items(model, photo):
    by_path = model(photo)
    with Image.open(photo) as opened:
        pil = opened.copy()
    by_image, by_array = model(pil), model(np.asarray(pil))
    assert by_path.items
    for other in (by_image, by_array):
        assert [(i.category, i.attribute_ids, i.score, i.box) for i in other.items] == [
            (i.category, i.attribute_ids, i.score, i.box) for i in by_path.items]
        assert all((a.mask == b.mask).all() for a, b in zip(other.items, by_path.items, strict=True))
    assert by_path.to_dict()["photo"] == str(photo) and by_array.to_dict()["photo"] == "photo"
    assert np.asarray(by_array.plot()).shape == np.asarray(by_path.plot()).shape


def test_a_phone_photos_exif_orientation_is_applied_from_its_file_and_from_its_pil_image(model, photo, tmp_path):
    with Image.open(photo) as opened:
        upright = opened.convert("RGB")
    exif = Image.Exif()
    exif[0x0112] = 6  # stored on its side: turn 90 degrees clockwise to show it
    turned = tmp_path / "phone.jpg"
    upright.transpose(Image.Transpose.ROTATE_90).save(turned, quality=95, exif=exif)
    by_path = model(turned)
    with Image.open(turned) as opened:
        by_image = model(opened)
        by_array = model(np.asarray(ImageOps.exif_transpose(opened)))  # an array is taken as it is
    assert (by_path.photo.width, by_path.photo.height) == upright.size
    assert by_path.items and [(i.category, i.box) for i in by_image.items] == [(i.category, i.box)
                                                                               for i in by_path.items]
    assert [(i.category, i.box) for i in by_array.items] == [(i.category, i.box) for i in by_path.items]


def test_a_photo_file_replaced_by_another_format_before_it_is_drawn_is_a_clear_error(model, photo, tmp_path):
    """The overlay decodes the file again: what it finds there is read as a photo is, never by PIL's other readers."""
    copy = tmp_path / "photo.jpg"
    copy.write_bytes(photo.read_bytes())
    result = model(copy)
    Image.new("RGB", (8, 8), "red").save(copy, format="PCX")  # PIL reads it, but it is no photo format
    with pytest.raises(PhotoError, match=r"photo.jpg: no longer the photo that was segmented \(cannot identify"):
        result.plot()


def test_items_carry_names_and_the_json_holds_the_same_items(model, photo):
    result = model(photo)
    found = json.loads(result.to_json())
    assert len(found["items"]) == len(result.items) <= 8, "the tuned file's max_detections"
    for entry, item in zip(found["items"], result.items, strict=True):
        assert item.category == LABELS.category_name(item.category_id) == entry["category"]
        assert list(item.attributes) == [LABELS.attributes[a].name for a in item.attribute_ids] == entry["attributes"]
        assert (rle.decode(entry["kaggle_rle"], *item.mask.shape).astype(bool) == item.mask).all()
        assert entry["box"] == list(item.box) and entry["score"] == item.score
    with Image.open(photo) as opened:
        assert (found["width"], found["height"]) == opened.size
    assert result.plot().width == result.items[0].mask.shape[1]


def test_a_list_a_folder_and_a_pattern_give_a_list_in_order(model, small_dataset, tmp_path):
    photos = sorted((small_dataset / "test").iterdir())[:2]
    for photo in photos:
        shutil.copy(photo, tmp_path / photo.name)
    (tmp_path / "notes.txt").write_text("not a photo")
    by_folder, by_pattern = model(tmp_path), model(str(tmp_path / "*.jpg"))
    by_list = model([str(p) for p in photos])
    assert [r.photo.name for r in by_folder] == [str(tmp_path / p.name) for p in photos]
    assert [r.photo.name for r in by_pattern] == [r.photo.name for r in by_folder]
    assert [r.photo.name for r in by_list] == [str(p) for p in photos]
    assert [len(r.items) for r in by_list] == [len(r.items) for r in by_folder]


def test_similar_items_share_the_items_category_and_draw_a_row_per_item(model, photo):
    similar = model(photo).similar(k=3)
    assert len(similar.matches) == len(similar.result.items) and any(similar.matches)
    held = model.catalogue.items.category.value_counts()
    assert any(held.get(item.category_id, 0) > 3 for item in similar.result.items), "a category with more than k"
    for item, matches in zip(similar.result.items, similar.matches, strict=True):
        assert len(matches) == min(3, held.get(item.category_id, 0)), "k items, or all the catalogue has of it"
        assert all(m["category"] == item.category for m in matches)
        assert [m["similarity"] for m in matches] == sorted((m["similarity"] for m in matches), reverse=True)
    written = similar.to_dict()
    assert [i["similar"] for i in written["items"]] == similar.matches and written["model"]["catalogue"]
    assert "catalogue" not in similar.result.to_dict()["model"], "the result's own JSON stays stage segment's"
    assert len(similar.rows()) == len(similar.matches)
    assert similar.plot().height == len(similar.matches) * similar.rows()[0][0].height


@pytest.mark.parametrize("bad,message", [
    (np.zeros((8, 8, 3), np.float32), "an array photo must be uint8 of shape"),
    (np.zeros((8, 8, 2), np.uint8), "an array photo must be uint8 of shape"),
    (np.zeros((0, 8, 3), np.uint8), "an empty array"),
    (b"\xff\xd8", "a photo is a path, a PIL image or a numpy array, not bytes")])
def test_what_is_not_a_photo_is_a_clear_error(model, bad, message):
    with pytest.raises(PhotoError, match=re.escape(message)):
        model(bad)


def test_a_project_without_tuning_or_catalogue_says_what_it_uses_and_what_is_missing(project, photo, tmp_path,
                                                                                      caplog):
    shutil.copytree(project / "models", tmp_path / "models")
    shutil.copy(project / "params.yaml", tmp_path / "params.yaml")
    with caplog.at_level(logging.WARNING, logger="pipeline"):
        untuned = load(tmp_path / "models" / "maskrcnn")
    assert "stage tune has not run" in caplog.text and "untuned postprocess section" in caplog.text
    assert untuned.segmenter.postprocess.score_thresh != 0.0, "the params' postprocess, not the tuned one"
    with pytest.raises(CatalogueError, match=r"no catalogue .*run stage index"):
        untuned(photo).similar()
    with pytest.raises(ParamsError, match="no params file for the run"):
        load(tmp_path / "models" / "maskrcnn", params=tmp_path / "missing.yaml")


def test_any_familys_run_loads_by_its_own_name_and_one_without_features_says_why_it_finds_nothing_similar(
        small_instances, photo, tmp_path):
    """A UNet's run (its own params.yaml names it; the project's model.family is maskrcnn) segments as one."""
    params, _ = training_inputs(tmp_path, small_instances, **TINY_UNET_TRAINING)
    run = tmp_path / "models" / "unet"
    run.mkdir(parents=True)
    config = unet_config()
    torch.save({"model": config.build(47, 92, initial_weights=False).state_dict(), "num_classes": 47},
               run / "best.pt")
    (run / "params.yaml").write_text(yaml.safe_dump({"model": {"family": "unet", "min_size": 64, "max_size": 96}}))
    unet = load(run)
    result = unet(photo)
    assert unet.family == "unet" and result.to_dict()["model"]["family"] == "unet"
    assert all(item.attribute_ids == () for item in result.items), "a UNet names categories alone"
    with pytest.raises(FeaturesError, match="family unet has no instance features"):
        result.similar()


def test_importing_the_package_loads_no_model_code():
    done = subprocess.run([sys.executable, "-c", "import sys, pipeline; print('torch' in sys.modules); "
                                                 "print(callable(pipeline.load), 'torch' in sys.modules)"],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.stdout.split() == ["False", "True", "True"], done.stderr
