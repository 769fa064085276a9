"""A catalogue folder damaged after stage index wrote it: each file named, with the way to rebuild it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline.shop.catalogue import META_COLUMNS, Catalogue, build_index, load_catalogue, save_catalogue
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
