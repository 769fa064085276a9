"""Names from data joined to a folder: a plain file name stays in its folder, anything else is refused."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.utils.paths import UnsafePathError, inside, name_problem

FOLDER = Path("/data/cache/images")


@pytest.mark.parametrize("name", ["/srv/photos/v.jpg", "../../victim_rel.jpg", "..", ".", "", "a/b.jpg",
                                  "a\\b.jpg", "x\x00.jpg", "x\n.jpg", "C:\\photos\\v.jpg", "sub/../v.jpg"])
def test_anything_but_a_plain_file_name_is_refused_with_the_name_and_the_folder(name):
    assert name_problem(name) is not None
    with pytest.raises(UnsafePathError, match=r"ImageId of train\.csv, line 7 .* is not a plain file name") as caught:
        inside(FOLDER, name, "ImageId of train.csv, line 7")
    assert str(FOLDER) in str(caught.value)


@pytest.mark.parametrize("name", ["00a8764cff12b2e849c850f4be5608bc.jpg", "photo 1.jpeg", ".hidden.jpg", "..jpg",
                                  "été.png", "a:b.jpg"])
def test_a_plain_file_name_is_the_folders_file(name):
    assert name_problem(name) is None
    assert inside(FOLDER, name) == FOLDER / name


@given(st.text(min_size=1, max_size=40))
def test_whatever_the_name_an_accepted_path_lies_directly_in_its_folder(name):
    try:
        path = inside(FOLDER, name)
    except UnsafePathError:
        assert name_problem(name) is not None
        return
    assert os.path.dirname(os.path.abspath(path)) == str(FOLDER) and path.name == name
