"""Validate ``train.csv`` and turn it into one table with a row per instance.

Every row is checked (RLE well-formed and inside Height x Width, ClassId in the label
set, sizes consistent per image and equal to the JPEG's real size, read from its header
only). A bad row or image is either a clear :class:`DataError` or a counted, reported
skip; nothing is dropped without being counted in the report.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from PIL import Image, UnidentifiedImageError
from tqdm import tqdm

from pipeline.data import rle
from pipeline.data.csv_strings import line_numbers, read_strings
from pipeline.data.labels import LabelError, LabelSet
from pipeline.utils.errors import PipelineError
from pipeline.utils.paths import inside, name_problem
from pipeline.utils.tables import read_parquet

TRAIN_COLUMNS = ("ImageId", "EncodedPixels", "Height", "Width", "ClassId")
#: The header of a submission (and of sample_submission.csv).
SUBMISSION_COLUMNS = ("ImageId", "EncodedPixels", "ClassId")
#: The largest side a JPEG can have: a larger Height or Width cannot describe a train image.
MAX_SIDE = 65535

#: Every kind of problem the report counts, with what is dropped for it.
PROBLEM_KINDS = {
    "blank_line": "row dropped: the line is empty or holds only commas",
    "missing_image_id": "row dropped: ImageId is empty",
    "invalid_image_id": "row dropped: ImageId is not a plain file name (a folder, '..', an absolute path, a NUL)",
    "invalid_size": f"row dropped: Height or Width is not an integer from 1 to {MAX_SIDE} (the largest JPEG side)",
    "empty_mask": "row dropped: EncodedPixels is empty",
    **{f"rle_{kind}": f"row dropped: EncodedPixels {what}" for kind, what in (
        ("non_integer", "has a token that is not an integer"),
        ("odd_tokens", "has an odd number of tokens"),
        ("nonpositive_length", "has a run of length 0 or less"),
        ("start_below_one", "has a start below 1"),
        ("not_increasing", "has runs out of order or overlapping"),
        ("past_end", "has a run past Height x Width"),
    )},
    "invalid_class_id": "row dropped: ClassId is not in label_descriptions.json",
    "duplicate_instance": "row dropped: same ImageId, EncodedPixels and ClassId as an earlier row",
    "inconsistent_size": "image skipped: its rows disagree on Height/Width",
    "missing_image": "image skipped: no JPEG for this ImageId",
    "unreadable_image": "image skipped: the JPEG header cannot be read",
    "size_mismatch": "image skipped (or the stage fails, by parameter): Height/Width differ from the JPEG",
    "unannotated_image": "nothing dropped: a JPEG in the image folder has no row in train.csv",
}

SizeMismatchPolicy = Literal["skip", "fail"]


class DataError(PipelineError, ValueError):
    """Input that cannot be used; the message names the file, the row and what is wrong."""


@dataclass
class Report:
    """Problem counts by kind, rows dropped for each, and a few examples."""

    max_examples: int
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(PROBLEM_KINDS, 0))
    dropped: dict[str, int] = field(default_factory=lambda: dict.fromkeys(PROBLEM_KINDS, 0))
    examples: dict[str, list[dict]] = field(default_factory=lambda: {k: [] for k in PROBLEM_KINDS})

    def add(self, kind: str, rows_dropped: int, examples: Iterable[dict]) -> None:
        self.counts[kind] += 1
        self.dropped[kind] += rows_dropped
        if len(self.examples[kind]) < self.max_examples:
            self.examples[kind].extend(list(examples)[: self.max_examples - len(self.examples[kind])])

    def as_dict(self) -> dict:
        return {
            kind: {
                "count": self.counts[kind],
                "rows_dropped": self.dropped[kind],
                "examples": self.examples[kind],
            }
            for kind in PROBLEM_KINDS
        }


def read_train_csv(path: Path | str) -> pd.DataFrame:
    """All columns as strings (nothing parsed, nothing turned into NaN), plus each row's line in the file.

    Blank lines are kept as rows of empty fields, and quoted line breaks counted, so that
    ``csv_line`` is the line the row starts on (the header is line 1); :func:`prepare` counts blank lines.
    """
    frame = read_strings(path, DataError, TRAIN_COLUMNS)
    frame["csv_line"] = line_numbers(frame)
    return frame


def jpeg_size(path: Path) -> tuple[int, int]:
    """(height, width) of an image, from its header only."""
    with Image.open(path) as image:
        width, height = image.size
    return height, width


def _example(row: pd.Series, detail: str) -> dict:
    return {"line": int(row.csv_line), "image_id": row.ImageId, "detail": detail}


def _drop_rows(frame: pd.DataFrame, bad: np.ndarray, kind: str, details: list[str], report: Report) -> pd.DataFrame:
    """Count each bad row under ``kind`` (with its detail) and return the rest."""
    for (_, row), detail in zip(frame[bad].iterrows(), details, strict=True):
        report.add(kind, 1, [_example(row, detail)])
    return frame[~bad]


def _check_rows(frame: pd.DataFrame, labels: LabelSet, report: Report) -> pd.DataFrame:
    """Row-level checks; returns the good rows with parsed size, class, area and bbox columns."""
    bad = (frame[list(TRAIN_COLUMNS)] == "").all(axis=1).to_numpy()
    frame = _drop_rows(frame, bad, "blank_line", ["no field has a value"] * int(bad.sum()), report)
    bad = (frame.ImageId.str.strip() == "").to_numpy()
    frame = _drop_rows(frame, bad, "missing_image_id", ["ImageId is empty"] * int(bad.sum()), report)
    problems = {name: problem for name in frame.ImageId.unique() if (problem := name_problem(name))}
    bad = frame.ImageId.isin(problems).to_numpy()
    frame = _drop_rows(frame, bad, "invalid_image_id", [f"not a plain file name: {problems[name]}"
                                                        for name in frame.ImageId[bad]], report)

    height = pd.to_numeric(frame.Height, errors="coerce")
    width = pd.to_numeric(frame.Width, errors="coerce")
    bad = ~((height >= 1) & (width >= 1) & (height <= MAX_SIDE) & (width <= MAX_SIDE)
            & (height % 1 == 0) & (width % 1 == 0)).to_numpy()
    details = [f"Height={h!r}, Width={w!r}" for h, w in zip(frame.Height[bad], frame.Width[bad], strict=True)]
    frame = _drop_rows(frame, bad, "invalid_size", details, report)
    frame = frame.assign(height=height[~bad].astype(np.int64), width=width[~bad].astype(np.int64))

    bad = (frame.EncodedPixels.str.strip() == "").to_numpy()
    frame = _drop_rows(frame, bad, "empty_mask", ["EncodedPixels is empty"] * int(bad.sum()), report)

    summary = rle.summarize(frame.EncodedPixels.tolist(), frame.height.to_numpy(), frame.width.to_numpy())
    frame = frame.assign(area=summary.area, bbox_x=summary.bbox[:, 0], bbox_y=summary.bbox[:, 1],
                         bbox_w=summary.bbox[:, 2], bbox_h=summary.bbox[:, 3])
    errors = np.array([e is not None for e in summary.errors], dtype=bool)
    for (_, row), error in zip(frame[errors].iterrows(), (e for e in summary.errors if e), strict=True):
        report.add(f"rle_{error.kind}", 1, [_example(row, str(error))])
    frame = frame[~errors]

    parsed, problems = {}, {}
    for class_id in frame.ClassId.unique():
        try:
            parsed[class_id] = labels.parse(class_id)
        except LabelError as exc:
            problems[class_id] = str(exc)
    bad = frame.ClassId.isin(problems).to_numpy()
    frame = _drop_rows(frame, bad, "invalid_class_id", [problems[c] for c in frame.ClassId[bad]], report)
    frame = frame.assign(
        class_id=frame.ClassId.map({c: labels.format(p) for c, p in parsed.items()}),
        category=frame.ClassId.map({c: p.category for c, p in parsed.items()}),
        attributes=frame.ClassId.map({c: list(p.attributes) for c, p in parsed.items()}),
    )

    bad = frame.duplicated(["ImageId", "EncodedPixels", "class_id"]).to_numpy()
    return _drop_rows(frame, bad, "duplicate_instance", ["repeats an earlier row"] * int(bad.sum()), report)


def _skip_images(frame: pd.DataFrame, images: dict[str, str], kind: str, report: Report) -> pd.DataFrame:
    """Drop every row of the given images (id -> detail), counting each image under ``kind``."""
    rows = frame[frame.ImageId.isin(images)]
    for image_id, group in rows.groupby("ImageId", sort=True):
        report.add(kind, len(group), [_example(group.iloc[0], images[image_id])])
    return frame[~frame.ImageId.isin(images)]


def _check_images(frame: pd.DataFrame, image_dir: Path | None, on_size_mismatch: SizeMismatchPolicy,
                  listed: set[str], report: Report) -> pd.DataFrame:
    """Image-level checks of the rows left; ``listed`` holds every ImageId of train.csv."""
    sizes = frame.groupby("ImageId")[["height", "width"]].nunique()
    inconsistent = sizes.index[(sizes.height > 1) | (sizes.width > 1)]
    frame = _skip_images(frame, {i: "rows give different Height/Width" for i in inconsistent},
                         "inconsistent_size", report)
    if image_dir is None:
        return frame

    claimed = frame.groupby("ImageId", sort=True)[["height", "width"]].first()
    missing, unreadable, mismatched = {}, {}, {}
    for image_id, height, width in tqdm(claimed.itertuples(name=None), total=len(claimed),
                                        desc="JPEG headers", unit="img"):
        path = inside(image_dir, image_id, "ImageId")
        try:
            real = jpeg_size(path)
        except FileNotFoundError:
            missing[image_id] = f"{path} does not exist"
            continue
        except (OSError, UnidentifiedImageError, SyntaxError, Image.DecompressionBombError) as exc:
            unreadable[image_id] = f"{path}: {exc}"
            continue
        if real != (height, width):
            mismatched[image_id] = (f"train.csv says Height={height}, Width={width}; "
                                    f"{path.name} is {real[0]}x{real[1]} (HxW)")
    frame = _skip_images(frame, missing, "missing_image", report)
    frame = _skip_images(frame, unreadable, "unreadable_image", report)
    if mismatched and on_size_mismatch == "fail":
        shown = "; ".join(f"{k}: {v}" for k, v in list(mismatched.items())[:5])
        raise DataError(f"{len(mismatched)} image(s) whose size differs from train.csv "
                        f"(prepare.on_size_mismatch is 'fail'): {shown}")
    frame = _skip_images(frame, mismatched, "size_mismatch", report)

    for path in sorted(image_dir.iterdir()):
        if path.suffix.lower() in (".jpg", ".jpeg") and path.name not in listed:
            report.add("unannotated_image", 0, [{"line": None, "image_id": path.name,
                                                 "detail": "no row in train.csv"}])
    return frame


INSTANCE_COLUMNS = ("image_id", "height", "width", "class_id", "category", "attributes", "rle", "area",
                    "bbox_x", "bbox_y", "bbox_w", "bbox_h", "csv_line")


def read_instances(path: Path | str, columns: Sequence[str] = INSTANCE_COLUMNS) -> pd.DataFrame:
    """An instance table (stage prepare's, or the cache's at the cached size) with ``columns``; a clear error
    naming the file when it is missing, cut short, lacks one or holds an image_id that is not a plain file name."""
    table = read_parquet(path, columns)
    if "image_id" in table.columns:
        for image_id in table.image_id.unique():
            if problem := name_problem(str(image_id)):
                raise DataError(f"{path}: image_id {image_id!r} is not a plain file name ({problem}); run stage "
                                "prepare again (dvc repro)")
    return table


@dataclass(frozen=True)
class Prepared:
    instances: pd.DataFrame
    report: dict

    def describe(self) -> str:
        """One line: what was kept, and the count of each kind of problem found."""
        problems = {kind: p["count"] for kind, p in self.report["problems"].items() if p["count"]}
        return (f"kept {self.report['rows_kept']}/{self.report['rows']} rows of {self.report['images_kept']}/"
                f"{self.report['images']} images; problems: {problems or 'none'}")

    def require(self, min_images: int, source: Path | str) -> None:
        """A :class:`DataError` unless at least ``min_images`` images (and one row) survived validation."""
        kept = self.report["images_kept"]
        if kept >= max(min_images, 1):
            return
        what = "no usable rows" if not kept else f"{kept} usable image(s), fewer than the {min_images} folds"
        raise DataError(f"{source}: {what} ({self.describe()})")


def prepare(train_csv: Path | str, labels: LabelSet, image_dir: Path | str | None,
            on_size_mismatch: SizeMismatchPolicy = "skip", max_examples: int = 5) -> Prepared:
    """Validate ``train.csv`` (and, given ``image_dir``, each JPEG's size) into the instance table.

    Table columns: :data:`INSTANCE_COLUMNS`; ``class_id`` is the canonical ClassId (attributes
    sorted), ``bbox_*`` follow COCO (x, y, width, height in pixels), ``csv_line`` points back
    into ``train.csv``.
    """
    report = Report(max_examples)
    raw = read_train_csv(train_csv)
    frame = _check_rows(raw, labels, report)
    frame = _check_images(frame, Path(image_dir) if image_dir is not None else None, on_size_mismatch,
                          set(raw.ImageId), report)
    table = (
        frame.rename(columns={"ImageId": "image_id", "EncodedPixels": "rle"})
        .loc[:, list(INSTANCE_COLUMNS)]
        .reset_index(drop=True)
        .astype({"height": np.int32, "width": np.int32, "category": np.int16, "area": np.int64,
                 "bbox_x": np.int32, "bbox_y": np.int32, "bbox_w": np.int32, "bbox_h": np.int32})
    )
    summary = {
        "rows": len(raw),
        "rows_kept": len(table),
        "rows_dropped": len(raw) - len(table),
        "images": int(raw.ImageId[raw.ImageId.str.strip() != ""].nunique()),
        "images_kept": int(table.image_id.nunique()),
        "categories_seen": int(table.category.nunique()),
        "instances_with_attributes": int(table.attributes.map(len).gt(0).sum()),
        "problems": report.as_dict(),
    }
    assert summary["rows_dropped"] == sum(report.dropped.values()), "a row was dropped without being counted"
    return Prepared(table, summary)
