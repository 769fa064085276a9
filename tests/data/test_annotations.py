"""train.csv validation: every problem counted by kind, nothing dropped silently, the table right."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline.data import rle
from pipeline.data.annotations import INSTANCE_COLUMNS, PROBLEM_KINDS, DataError, prepare, read_instances
from pipeline.data.labels import load_labels

from damaged_files import bomb_png

LABELS = load_labels()


def read_rows(raw: Path) -> list[list[str]]:
    with open(raw / "train.csv", newline="") as handle:
        return list(csv.reader(handle))


def write_rows(raw: Path, rows: list[list[str]]) -> None:
    with open(raw / "train.csv", "w", newline="") as handle:
        csv.writer(handle).writerows(rows)


def run(raw: Path, **kwargs):
    return prepare(raw / "train.csv", LABELS, raw / "train", **kwargs)


def assert_every_drop_counted(report: dict) -> None:
    """The rows missing from the table are exactly the rows the problem counts say were dropped."""
    assert sum(p["rows_dropped"] for p in report["problems"].values()) == report["rows"] - report["rows_kept"]


def counts(report: dict) -> dict[str, int]:
    return {kind: p["count"] for kind, p in report["problems"].items() if p["count"]}


def test_clean_synthetic_data_has_only_the_injected_size_defect(small_dataset):
    result = run(small_dataset)
    assert counts(result.report) == {"size_mismatch": 1}
    assert set(result.report["problems"]) == set(PROBLEM_KINDS)
    assert result.report["rows_dropped"] == result.report["problems"]["size_mismatch"]["rows_dropped"] > 0
    example = result.report["problems"]["size_mismatch"]["examples"][0]
    assert "train.csv says Height=" in example["detail"] and example["line"] >= 2


def test_instance_table(small_dataset):
    table = run(small_dataset).instances
    assert tuple(table.columns) == INSTANCE_COLUMNS
    rows = pd.read_csv(small_dataset / "train.csv", dtype=str, keep_default_na=False)
    for row in table.sample(20, random_state=0).itertuples():
        mask = rle.decode(row.rle, row.height, row.width)
        ys, xs = np.nonzero(mask)
        assert row.area == mask.sum()
        assert (row.bbox_x, row.bbox_y) == (xs.min(), ys.min())
        assert (row.bbox_w, row.bbox_h) == (xs.max() - xs.min() + 1, ys.max() - ys.min() + 1)
        source = rows.iloc[row.csv_line - 2]
        assert (source.ImageId, source.EncodedPixels) == (row.image_id, row.rle)
        assert LABELS.parse(source.ClassId) == LABELS.parse(row.class_id)
        assert row.category == LABELS.parse(row.class_id).category
        assert list(row.attributes) == sorted(row.attributes)


ROW_DEFECTS = {
    "missing_image_id": lambda r: r.__setitem__(0, ""),
    "invalid_size": lambda r: r.__setitem__(2, "abc"),
    "empty_mask": lambda r: r.__setitem__(1, ""),
    "rle_non_integer": lambda r: r.__setitem__(1, r[1] + " 7x"),
    "rle_odd_tokens": lambda r: r.__setitem__(1, r[1] + " 7"),
    "rle_nonpositive_length": lambda r: r.__setitem__(1, "1 0"),
    "rle_start_below_one": lambda r: r.__setitem__(1, "0 3"),
    "rle_not_increasing": lambda r: r.__setitem__(1, "10 5 12 1"),
    "rle_past_end": lambda r: r.__setitem__(1, f"{int(r[2]) * int(r[3])} 2"),
    "invalid_class_id": lambda r: r.__setitem__(4, "46"),
}


@pytest.mark.parametrize("kind", sorted(ROW_DEFECTS))
def test_each_row_defect_is_counted_with_its_line_and_the_row_dropped(dataset_copy, kind):
    rows = read_rows(dataset_copy)
    line = 6  # file line 6 is rows[5]
    ROW_DEFECTS[kind](rows[line - 1])
    write_rows(dataset_copy, rows)
    result = run(dataset_copy)
    assert counts(result.report) == {kind: 1, "size_mismatch": 1}
    problem = result.report["problems"][kind]
    assert problem["rows_dropped"] == 1
    assert problem["examples"][0]["line"] == line
    assert line not in set(result.instances.csv_line)
    assert_every_drop_counted(result.report)


def test_duplicate_rows_are_dropped_and_counted(dataset_copy):
    rows = read_rows(dataset_copy)
    write_rows(dataset_copy, rows + [rows[3], rows[3]])
    result = run(dataset_copy)
    assert result.report["problems"]["duplicate_instance"]["count"] == 2
    assert result.report["problems"]["duplicate_instance"]["examples"][0]["line"] == len(rows) + 1


def test_image_level_defects_skip_every_row_of_the_image(dataset_copy):
    rows = read_rows(dataset_copy)
    images = list(dict.fromkeys(r[0] for r in rows[1:]))
    inconsistent, missing, unreadable = images[1], images[2], images[3]
    first = next(i for i, r in enumerate(rows) if r[0] == inconsistent)
    rows[first][2] = str(int(rows[first][2]) + 1)
    rows[first][1] = "1 1"
    write_rows(dataset_copy, rows)
    (dataset_copy / "train" / missing).unlink()
    (dataset_copy / "train" / unreadable).write_bytes(b"not a jpeg")
    shutil.copy(dataset_copy / "test" / next(iter(sorted((dataset_copy / "test").iterdir()))).name,
                dataset_copy / "train" / "ffffffffffffffffffffffffffffffff.jpg")
    result = run(dataset_copy)
    found = counts(result.report)
    assert found == {"inconsistent_size": 1, "missing_image": 1, "unreadable_image": 1, "size_mismatch": 1,
                     "unannotated_image": 1}
    for kind, image in (("inconsistent_size", inconsistent), ("missing_image", missing),
                        ("unreadable_image", unreadable)):
        assert result.report["problems"][kind]["rows_dropped"] == sum(r[0] == image for r in rows[1:])
        assert image not in set(result.instances.image_id)
    assert result.report["problems"]["unannotated_image"]["rows_dropped"] == 0
    assert_every_drop_counted(result.report)


def test_size_mismatch_can_fail_the_stage(small_dataset):
    with pytest.raises(DataError, match=r"size differs from train.csv .*Height=\d+, Width=\d+"):
        run(small_dataset, on_size_mismatch="fail")


def test_examples_are_capped(dataset_copy):
    rows = read_rows(dataset_copy)
    for row in rows[1:10]:
        row[4] = "99"
    write_rows(dataset_copy, rows)
    problem = run(dataset_copy, max_examples=3).report["problems"]["invalid_class_id"]
    assert problem["count"] == 9 and len(problem["examples"]) == 3


@pytest.mark.parametrize(
    "header",
    [
        ["ImageId", "EncodedPixels", "Height", "Width"],
        ["ImageId", "Height", "EncodedPixels", "Width", "ClassId"],
        ["ImageId", "EncodedPixels", "Height", "Width", "CategoryId"],
    ],
)
def test_wrong_columns_name_the_file(dataset_copy, header):
    rows = read_rows(dataset_copy)
    write_rows(dataset_copy, [header] + [r[: len(header)] for r in rows[1:]])
    with pytest.raises(DataError, match=r"train\.csv: columns are .* expected \['ImageId', 'EncodedPixels'"):
        run(dataset_copy)


def test_without_an_image_folder_only_the_csv_is_checked(small_dataset):
    result = prepare(small_dataset / "train.csv", LABELS, None)
    assert counts(result.report) == {}


@pytest.mark.parametrize("column,value", [(2, "99999999999999999999"), (3, "99999999999999999999"), (2, "65536"),
                                          (3, "1e30"), (2, "-3"), (3, "2.5")])
def test_an_impossible_size_is_a_counted_invalid_size_with_its_line(dataset_copy, column, value):
    rows = read_rows(dataset_copy)
    rows[5][column] = value
    write_rows(dataset_copy, rows)
    result = run(dataset_copy)
    problem = result.report["problems"]["invalid_size"]
    assert problem["count"] == 1 and problem["examples"][0]["line"] == 6 and value in problem["examples"][0]["detail"]
    assert_every_drop_counted(result.report)


@pytest.mark.parametrize("line", [2, 4])
def test_a_stray_field_is_an_error_naming_its_line_wherever_it_is(dataset_copy, line):
    """pandas alone would read a first row with an extra field as an index column and shift every field."""
    rows = read_rows(dataset_copy)
    rows[line - 1].append("")
    write_rows(dataset_copy, rows)
    with pytest.raises(DataError, match=rf"train\.csv: not a valid CSV: .*Expected 5 fields in line {line}, saw 6"):
        run(dataset_copy)


def test_blank_lines_are_counted_and_every_line_number_stays_the_files(dataset_copy):
    rows = read_rows(dataset_copy)
    for index in (1, 1, 8):
        rows.insert(index, [])
    rows[10] = ["", "", "", "", ""]  # a row of commas only
    write_rows(dataset_copy, [*rows, []])
    lines = (dataset_copy / "train.csv").read_text().splitlines()
    blank = [number for number, text in enumerate(lines, 1) if not text.strip(",")]
    assert len(blank) == 5
    result = run(dataset_copy)
    problem = result.report["problems"]["blank_line"]
    assert problem["count"] == 5 and [e["line"] for e in problem["examples"]] == blank
    for row in result.instances.itertuples():
        image_id, encoded = lines[row.csv_line - 1].split(",")[:2]
        assert (image_id, encoded) == (row.image_id, row.rle), "csv_line is the row's line in the file"
    example = result.report["problems"]["size_mismatch"]["examples"][0]
    assert lines[example["line"] - 1].startswith(example["image_id"])
    assert_every_drop_counted(result.report)


def test_a_table_without_usable_rows_stops_prepare(dataset_copy):
    rows = read_rows(dataset_copy)
    write_rows(dataset_copy, rows[:1])
    with pytest.raises(DataError, match=r"train\.csv: no usable rows \(kept 0/0 rows"):
        run(dataset_copy).require(5, dataset_copy / "train.csv")
    for row in rows[1:]:
        row[4] = "99"
    write_rows(dataset_copy, rows)
    with pytest.raises(DataError, match=r"no usable rows \(kept 0/\d+ rows .*'invalid_class_id'"):
        run(dataset_copy).require(5, dataset_copy / "train.csv")


def test_fewer_images_than_folds_stops_prepare(dataset_copy):
    rows = read_rows(dataset_copy)
    images = list(dict.fromkeys(r[0] for r in rows[1:]))[:3]
    write_rows(dataset_copy, [rows[0], *(r for r in rows[1:] if r[0] in images)])
    result = run(dataset_copy)
    kept = result.report["images_kept"]
    result.require(kept, dataset_copy / "train.csv")
    with pytest.raises(DataError, match=rf"{kept} usable image\(s\), fewer than the {kept + 1} folds"):
        result.require(kept + 1, dataset_copy / "train.csv")


@pytest.mark.parametrize("image_id", ["/srv/photos/v.jpg", "../../victim_rel.jpg", "../../../etc/passwd",
                                      "sub\\v.jpg", "a\x00.jpg", ".."])
def test_an_image_id_that_is_not_a_plain_file_name_is_counted_with_its_line(dataset_copy, tmp_path, image_id):
    """Even when a JPEG exists at that path (an absolute one outside the project here): the cache would overwrite it."""
    rows = read_rows(dataset_copy)
    if image_id.startswith("/srv"):
        image_id = str(tmp_path / "v.jpg")
        (tmp_path / "v.jpg").write_bytes((dataset_copy / "train" / rows[5][0]).read_bytes())
    rows[5][0] = image_id  # line 6
    write_rows(dataset_copy, rows)
    result = run(dataset_copy)
    assert counts(result.report) == {"invalid_image_id": 1, "size_mismatch": 1}
    example = result.report["problems"]["invalid_image_id"]["examples"][0]
    assert example["line"] == 6 and example["image_id"] == image_id and "not a plain file name" in example["detail"]
    assert image_id not in set(result.instances.image_id)
    assert_every_drop_counted(result.report)


def test_a_quoted_line_break_moves_every_later_line_number(dataset_copy):
    """A field spanning two lines used to shift the lines of every later row by one."""
    rows = read_rows(dataset_copy)
    rows[3][4] = rows[3][4] + "\n"  # line 4's ClassId holds a line break: the row spans lines 4 and 5
    rows[9][1] = "0 3"  # line 10 of the list, line 11 of the file
    write_rows(dataset_copy, rows)
    result = run(dataset_copy)
    assert [e["line"] for e in result.report["problems"]["invalid_class_id"]["examples"]] == [4]
    assert [e["line"] for e in result.report["problems"]["rle_start_below_one"]["examples"]] == [11]
    lines = (dataset_copy / "train.csv").read_text().splitlines()
    for row in result.instances.itertuples():
        assert lines[row.csv_line - 1].startswith(f"{row.image_id},{row.rle},"), "csv_line is the row's own line"


def test_a_decompression_bomb_is_an_unreadable_image(dataset_copy):
    """Its header claims 400 megapixels: PIL refuses to open it, and prepare counts it instead of failing."""
    rows = read_rows(dataset_copy)
    bomb_png(dataset_copy / "train" / rows[1][0])
    result = run(dataset_copy)
    assert result.report["problems"]["unreadable_image"]["count"] == 1
    assert "decompression bomb" in result.report["problems"]["unreadable_image"]["examples"][0]["detail"]
    assert_every_drop_counted(result.report)


def test_a_train_csv_saved_with_a_byte_order_mark_is_read_as_it_is_without(small_dataset, dataset_copy):
    """Spreadsheet programs write one; it used to make the header read '\\ufeffImageId' and stop prepare."""
    path = dataset_copy / "train.csv"
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    pd.testing.assert_frame_equal(run(dataset_copy).instances, run(small_dataset).instances)


def test_an_instance_table_holding_a_path_image_id_is_refused_naming_the_file(small_instances, tmp_path):
    """Prepare writes none; a table changed since is refused when read, before any worker joins it to a folder."""
    small_instances.assign(image_id="../../x.jpg").to_parquet(tmp_path / "t.parquet")
    with pytest.raises(DataError, match=rf"{tmp_path / 't.parquet'}: image_id '../../x.jpg' is not a plain file name"):
        read_instances(tmp_path / "t.parquet")
    small_instances.to_parquet(tmp_path / "t.parquet")
    pd.testing.assert_frame_equal(read_instances(tmp_path / "t.parquet"), small_instances[list(INSTANCE_COLUMNS)])
