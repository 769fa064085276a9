"""params.yaml sections: typed, validated, and errors that name the file and the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.params import DataParams, FoldsParams, ParamsError, PrepareParams, SyntheticParams, load_section

REPO = Path(__file__).resolve().parents[1]


def test_the_repository_params_load():
    for name, model in (("data", DataParams), ("synthetic", SyntheticParams), ("prepare", PrepareParams),
                        ("folds", FoldsParams)):
        load_section(REPO / "params.yaml", name, model)


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("folds:\n  n_folds: 5\n  seed: 1\n  shuffle: true\n", "shuffle"),
        ("folds:\n  n_folds: 1\n  seed: 1\n", "n_folds"),
        ("folds:\n  n_folds: five\n  seed: 1\n", "n_folds"),
        ("other: {}\n", "no 'folds' section"),
        ("folds: [\n", "cannot read params"),
    ],
)
def test_bad_params_name_the_file_and_the_problem(tmp_path, text, says):
    path = tmp_path / "params.yaml"
    path.write_text(text)
    with pytest.raises(ParamsError, match=None) as caught:
        load_section(path, "folds", FoldsParams)
    assert str(path) in str(caught.value) and says in str(caught.value)


def test_choices_and_cross_field_rules_are_checked(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("data:\n  source: s3\n")
    with pytest.raises(ParamsError, match="synthetic"):
        load_section(path, "data", DataParams)
    path.write_text("synthetic: {seed: 1, train_images: 2, test_images: 1, min_side: 300, max_side: 200,"
                    " attribute_rate: 0.2, size_defect: false}\n")
    with pytest.raises(ParamsError, match="min_side 300 exceeds max_side 200"):
        load_section(path, "synthetic", SyntheticParams)
