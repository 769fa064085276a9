"""The photos a user gives stage segment: deep PNGs read as they look, a folder or missing file named as such,
and every photo its own output files whatever the names."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from pipeline.config.model import ModelParams
from pipeline.shop.photos import PHOTO_FORMATS, PHOTO_SUFFIXES, photo_paths
from pipeline.shop.segment import PhotoError, read_photo
from stages._photos import output_names

SPEC = ModelParams(min_size=64, max_size=96)


def test_a_16_bit_png_is_read_as_its_8_bit_twin_not_white(tmp_path):
    picture = np.tile(np.linspace(0, 255, 80).astype(np.uint8), (60, 1))
    Image.fromarray(picture.astype(np.uint16) * 257).save(tmp_path / "deep.png")
    Image.fromarray(picture).save(tmp_path / "plain.png")
    deep, plain = read_photo(tmp_path / "deep.png", SPEC, 1.0), read_photo(tmp_path / "plain.png", SPEC, 1.0)
    assert deep.pixels.float().mean() < 200, "a clipped 16-bit image is nearly all white"
    assert (deep.pixels.int() - plain.pixels.int()).abs().max() <= 1


@pytest.mark.parametrize(("make", "says"), [(lambda p: p.mkdir(), "a folder, not a photo"),
                                            (lambda p: None, "no such file"),
                                            (lambda p: p.write_bytes(b""), "the file is empty")])
def test_what_is_not_a_photo_is_named(tmp_path, make, says):
    make(tmp_path / "photos")
    with pytest.raises(PhotoError, match=f"{tmp_path / 'photos'}: {says}"):
        read_photo(tmp_path / "photos", SPEC, 1.0)


@pytest.mark.parametrize(("name", "save"), [
    ("scan.pcx", lambda image, path: image.save(path, format="PCX")),  # PIL reads it, but it is no photo format
    ("figure.eps", lambda image, path: path.write_bytes(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 8 8\n"))])
def test_only_photo_formats_are_opened_so_postscript_never_reaches_ghostscript(tmp_path, name, save):
    save(Image.new("RGB", (8, 8), "red"), tmp_path / name)
    with pytest.raises(PhotoError, match=r"not an image \(JPEG, PNG, WEBP, BMP, GIF, TIFF\)"):
        read_photo(tmp_path / name, SPEC, 1.0)


def test_a_folder_is_read_for_exactly_the_suffixes_of_the_formats_opened():
    """A folder's GIFs, TIFFs and .jfif JPEGs are photos too; a suffix of another format is not."""
    assert set(PHOTO_SUFFIXES) == {e for e, f in Image.registered_extensions().items() if f in PHOTO_FORMATS}


def test_every_photo_format_is_found_in_a_folder(tmp_path):
    for suffix in (".jpg", ".JFIF", ".PNG", ".webp", ".bmp", ".gif", ".tiff", ".tif"):
        Image.new("RGB", (8, 8), "red").save(tmp_path / f"photo{suffix}",
                                             format=Image.registered_extensions()[suffix.lower()])
    (tmp_path / "notes.txt").write_text("not a photo")
    Image.new("RGB", (8, 8), "red").save(tmp_path / "scan.pcx")  # PIL reads it, but it is no photo format
    found = photo_paths([str(tmp_path)])
    assert [p.name for p in found] == sorted(p.name for p in tmp_path.iterdir() if p.suffix not in (".txt", ".pcx"))
    for path in found:  # red, within what the lossy formats change
        assert (read_photo(path, SPEC, 1.0).pixels[:, 4, 4].int() - torch.tensor([255, 0, 0])).abs().max() <= 8, path


def test_photos_of_one_name_in_other_folders_or_formats_get_their_own_outputs():
    """photo.jpg, photo.tiff and sub/photo-2.jpg: the TIFF's outputs were overwritten by sub/photo-2.jpg's."""
    names = output_names([Path("photo.jpg"), Path("photo.tiff"), Path("sub/photo-2.jpg"), Path("b/Photo.png")])
    assert names == ["photo", "photo-2", "photo-2-2", "Photo-3"]


@given(st.lists(st.tuples(st.sampled_from(["", "a/", "b/c/"]), st.sampled_from(["x", "X", "x-2", "x-2-2", "y"]),
                          st.sampled_from([".jpg", ".png", ".JPG"])), max_size=12))
def test_output_names_are_distinct_for_any_photos(parts):
    names = output_names([Path(f"{folder}{stem}{suffix}") for folder, stem, suffix in parts])
    assert len({name.casefold() for name in names}) == len(names), "two photos would share their output files"
    assert all(name == Path(f"{f}{s}{x}").stem or name.startswith(Path(f"{f}{s}{x}").stem + "-")
               for name, (f, s, x) in zip(names, parts, strict=True))
