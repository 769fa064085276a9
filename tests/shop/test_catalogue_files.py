"""A catalogue folder damaged after stage index wrote it: each file named, with the way to rebuild it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from pipeline.data.labels import load_labels
from pipeline.shop.catalogue import META_COLUMNS, Catalogue, CatalogueError, build_index, load_catalogue, save_catalogue
from pipeline.shop.segment import Item, Photo
from pipeline.shop.similar import sheet_rows
from pipeline.utils.errors import PipelineError


def catalogue(folder: Path) -> Path:
    """Six items of three categories, as stage index saves them."""
    vectors = np.random.default_rng(0).normal(size=(6, 8)).astype(np.float32)
    items = pd.DataFrame([("a.jpg", 0.0, 0.0, 4.0, 4.0, category, []) for category in (0, 0, 1, 1, 2, 2)],
                         columns=list(META_COLUMNS))
    manifest = {"key": {}, "features": "box_head", "kind": "flat", "image_dir": str(folder), "items": 6,
                "dimensions": 8}
    save_catalogue(folder / "index", Catalogue(build_index(vectors, "flat", 4, 1, 0), items, manifest))
    assert len(load_catalogue(folder / "index").items) == 6
    return folder / "index"


@pytest.mark.parametrize("name", ["items.parquet", "manifest.json"])
def test_a_file_cut_short_is_named_with_the_way_to_rebuild_it(tmp_path, name):
    target = catalogue(tmp_path) / name
    target.write_bytes(target.read_bytes()[: target.stat().st_size // 2])
    with pytest.raises(PipelineError, match=rf"{target}: cannot read .*; rebuild it: dvc repro index"):
        load_catalogue(tmp_path / "index")


def test_items_that_do_not_fit_the_index_are_refused(tmp_path):
    folder = catalogue(tmp_path)
    items = pd.read_parquet(folder / "items.parquet")
    items.iloc[::-1].to_parquet(folder / "items.parquet", index=False)
    with pytest.raises(PipelineError, match="items are not sorted by category"):
        load_catalogue(folder)
    items.iloc[:5].to_parquet(folder / "items.parquet", index=False)
    with pytest.raises(PipelineError, match="the index holds 6 vectors, items.parquet 5 items"):
        load_catalogue(folder)


@pytest.mark.parametrize("replace", [lambda path: path.unlink(),
                                     lambda path: Image.new("RGB", (8, 8)).save(path, format="PCX")])
def test_a_catalogue_image_gone_or_no_longer_a_photo_is_named_with_the_way_to_rebuild(tmp_path, replace):
    """A PCX is read by PIL but is no photo format: a catalogue image is read as a photo is, by photo readers only."""
    Image.new("RGB", (8, 8), "red").save(tmp_path / "a.jpg")
    photo = Photo("shop.jpg", 8, 8, torch.zeros(3, 8, 8, dtype=torch.uint8))
    item = Item(0, (), 0.9, (0.0, 0.0, 4.0, 4.0), np.ones((8, 8), bool))
    found = [[{"image_id": "a.jpg", "box": [0.0, 0.0, 4.0, 4.0], "class_id": "0", "similarity": 0.9}]]
    labels = load_labels()
    assert len(sheet_rows(Image.new("RGB", (8, 8)), photo, [item], found, tmp_path, labels)[0]) == 2
    replace(tmp_path / "a.jpg")
    said = f"{tmp_path / 'a.jpg'}: a catalogue image cannot be read .*dvc repro index"
    with pytest.raises(CatalogueError, match=said):
        sheet_rows(Image.new("RGB", (8, 8)), photo, [item], found, tmp_path, labels)
