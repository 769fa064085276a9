"""The submission file: encoding post-processed masks, and a validator of every rule docs/competition.md lists.

Rules checked: the header; every test ImageId present, none unknown; every EncodedPixels a
well-formed Kaggle RLE inside the image's submission grid; every ClassId in the label set; no
two masks of one ClassId sharing a pixel within an image. An image without predictions gets
one row with empty EncodedPixels and ClassId ``23`` (what the winners submitted).
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from pipeline.data import rle
from pipeline.data.annotations import SUBMISSION_COLUMNS, DataError, jpeg_size
from pipeline.data.csv_strings import line_numbers, read_strings
from pipeline.data.labels import LabelError, LabelSet
from pipeline.inference.detections import ImageRecord, Instance
from pipeline.utils.errors import PipelineError
from pipeline.utils.io import atomic_path
from pipeline.utils.paths import inside, name_problem

EMPTY_CLASS_ID = "23"
MAX_REPORTED = 20


class SubmissionError(PipelineError):
    """A submission that Kaggle would reject or mis-score."""


def _read_csv(path: Path | str) -> pd.DataFrame:
    """Every field as a string, blank lines kept as empty rows (``line_numbers`` gives each row's line)."""
    return read_strings(path, SubmissionError)


def _blank(image_id: str, pixels: str, class_id: str) -> bool:
    return not (image_id or pixels or class_id)


def test_records(sample_submission: Path | str, image_dir: Path | str) -> list[ImageRecord]:
    """The test images (in the sample submission's order) with their sizes read from the JPEG headers.

    Every ImageId must be a plain file name of ``image_dir``: a path would read, and submit, another
    folder's image.
    """
    frame = _read_csv(sample_submission)
    if "ImageId" not in frame.columns:
        raise DataError(f"{sample_submission}: no ImageId column (columns: {', '.join(frame.columns)})")
    lines: dict[str, int] = {}
    for image_id, line in zip(frame.ImageId, line_numbers(frame), strict=True):
        lines.setdefault(image_id, int(line))
    if bad := {i: problem for i in frame.ImageId if i and (problem := name_problem(i))}:
        shown = "; ".join(f"line {lines[i]}: {i!r} ({problem})" for i, problem in list(bad.items())[:5])
        raise DataError(f"{sample_submission}: {len(bad)} ImageId(s) are not plain file names of {image_dir}: "
                        f"{shown}")
    records = []
    for image_id in dict.fromkeys(i for i in frame.ImageId if i):
        path = inside(image_dir, image_id, f"ImageId of {sample_submission}, line {lines[image_id]},")
        try:
            height, width = jpeg_size(path)
        except FileNotFoundError as exc:
            raise DataError(f"{path}: test image listed in {sample_submission} (line {lines[image_id]}) not found"
                            ) from exc
        except (OSError, SyntaxError, Image.DecompressionBombError) as exc:
            raise DataError(f"{path}: cannot read image ({exc})") from exc
        records.append(ImageRecord(image_id, height, width))
    return records


def image_rows(image_id: str, instances: Sequence[Instance]) -> list[tuple[str, str, str]]:
    """The rows of one image, instances by decreasing score; one empty row when there are none."""
    found = sorted(instances, key=lambda i: -i.score)
    return [(image_id, rle.encode(i.mask), i.class_id) for i in found] or [(image_id, "", EMPTY_CLASS_ID)]


def frame(instances: Mapping[str, Sequence[Instance]], records: Sequence[ImageRecord]) -> pd.DataFrame:
    """Submission rows, images in ``records``' order, instances by decreasing score."""
    rows = [row for record in records for row in image_rows(record.image_id, instances.get(record.image_id, ()))]
    return pd.DataFrame(rows, columns=SUBMISSION_COLUMNS)


def problems(submission: pd.DataFrame, grids: Mapping[str, tuple[int, int]], labels: LabelSet) -> list[str]:
    """Every rule the submission breaks, with CSV line numbers (the header is line 1); empty when valid.

    ``grids`` maps each test ImageId to its submission grid (height, width).
    """
    if list(submission.columns) != list(SUBMISSION_COLUMNS):
        return [f"header is {','.join(map(str, submission.columns))}, expected {','.join(SUBMISSION_COLUMNS)}"]
    found: list[str] = []
    ids = set(submission.ImageId)
    if missing := [i for i in grids if i not in ids]:
        found.append(f"{len(missing)} test image(s) have no row, e.g. {missing[0]}")
    lines = line_numbers(submission)
    runs: dict[tuple[str, str], list[tuple[np.ndarray, np.ndarray, int]]] = {}
    for line, image_id, pixels, class_id in zip(lines, submission.ImageId, submission.EncodedPixels,
                                                submission.ClassId, strict=True):
        if _blank(image_id, pixels, class_id):
            continue  # pandas, and so Kaggle's reader, skips blank lines; remarks() mentions them
        if image_id not in grids:
            found.append(f"line {line}: ImageId {image_id!r} is not a test image")
            continue
        try:
            labels.parse(class_id)
        except LabelError as exc:
            found.append(f"line {line}: {exc}")
        try:
            starts, lengths = rle.parse(pixels, *grids[image_id])
        except rle.RLEError as exc:
            found.append(f"line {line}: EncodedPixels on the {'x'.join(map(str, grids[image_id]))} grid: {exc}")
            continue
        runs.setdefault((image_id, class_id), []).append((starts, lengths, line))
    for (image_id, class_id), masks in runs.items():
        if len(masks) > 1 and (overlap := _overlapping_lines(masks)):
            found.append(f"lines {overlap[0]} and {overlap[1]}: two masks of ClassId {class_id} "
                         f"share pixels in {image_id}")
    return found


def remarks(submission: pd.DataFrame, labels: LabelSet) -> list[str]:
    """What a valid submission may hold but deserves a look, with CSV line numbers: blank lines, and
    ClassIds whose attributes are not in increasing order (the metric matches whole ClassId strings,
    docs/competition.md; this pipeline always writes them sorted, a hand-edited file may not)."""
    if list(submission.columns) != list(SUBMISSION_COLUMNS):
        return []
    found = []
    for line, image_id, pixels, class_id in zip(line_numbers(submission), submission.ImageId,
                                                submission.EncodedPixels, submission.ClassId, strict=True):
        if _blank(image_id, pixels, class_id):
            found.append(f"line {line}: blank line (skipped)")
            continue
        with contextlib.suppress(LabelError):  # an invalid ClassId is a problem, reported by problems()
            if (canonical := labels.format(labels.parse(class_id))) != class_id:
                found.append(f"line {line}: ClassId {class_id!r} is accepted, but its attributes are not in "
                             f"increasing order; ground truth would read {canonical!r}")
    return found


def _overlapping_lines(masks: list[tuple[np.ndarray, np.ndarray, int]]) -> tuple[int, int] | None:
    """The lines of two masks whose runs overlap, if any (runs within one mask never do)."""
    starts = np.concatenate([s for s, _, _ in masks])
    ends = np.concatenate([s + n for s, n, _ in masks])
    owner = np.concatenate([np.full(len(s), line) for s, _, line in masks])
    order = np.argsort(starts, kind="stable")
    starts, ends, owner = starts[order], ends[order], owner[order]
    reach = np.maximum.accumulate(ends)  # furthest pixel covered by any earlier run
    clash = np.flatnonzero(starts[1:] < reach[:-1])
    if not len(clash):
        return None
    k = clash[0] + 1
    earlier = np.flatnonzero(ends[:k] > starts[k])[0]
    return tuple(sorted((int(owner[earlier]), int(owner[k]))))


def check(submission: pd.DataFrame, grids: Mapping[str, tuple[int, int]], labels: LabelSet, source: str) -> None:
    """Raise :class:`SubmissionError` listing the problems (the first ``MAX_REPORTED``) if there are any."""
    found = problems(submission, grids, labels)
    if found:
        shown = "\n  ".join(found[:MAX_REPORTED])
        more = f"\n  ... and {len(found) - MAX_REPORTED} more" if len(found) > MAX_REPORTED else ""
        raise SubmissionError(f"{source}: invalid submission, {len(found)} problem(s):\n  {shown}{more}")


def check_file(path: Path | str, grids: Mapping[str, tuple[int, int]], labels: LabelSet) -> pd.DataFrame:
    """Read and validate a submission CSV for the test images of ``grids`` (each one's grid); returns its rows."""
    submission = _read_csv(path)
    check(submission, grids, labels, str(path))
    return submission


def write(submission: pd.DataFrame, path: Path | str, grids: Mapping[str, tuple[int, int]], labels: LabelSet,
          ) -> None:
    """Validate, then write atomically; an invalid submission is never written."""
    check(submission, grids, labels, str(path))
    with atomic_path(path) as tmp:
        submission.to_csv(tmp, index=False)
