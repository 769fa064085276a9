"""The submission file: encoding, the validator (one test per defect) and the upload."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from pipeline import kaggle_submit, rle, submission
from pipeline.detections import ImageRecord
from pipeline.labels import load_labels
from pipeline.postprocess import Instance
from pipeline.submission import COLUMNS, SubmissionError

REPO = Path(__file__).resolve().parents[1]
LABELS = load_labels()
RECORDS = [ImageRecord("a.jpg", 30, 40), ImageRecord("b.jpg", 50, 20), ImageRecord("c.jpg", 10, 10)]
GRIDS = {"a.jpg": (16, 16), "b.jpg": (16, 16), "c.jpg": (16, 16)}


def box(top: int, left: int, size: int) -> np.ndarray:
    mask = np.zeros((16, 16), bool)
    mask[top : top + size, left : left + size] = True
    return mask


def valid_frame() -> pd.DataFrame:
    instances = {"a.jpg": [Instance("1", 0.5, box(0, 0, 4)), Instance("1", 0.9, box(8, 8, 4)),
                           Instance("10_7_20", 0.7, box(0, 0, 6))],
                 "b.jpg": [Instance("33", 0.4, box(2, 2, 3))]}
    return submission.frame(instances, RECORDS)


def test_frame_has_a_row_per_instance_and_one_for_an_empty_image():
    frame = valid_frame()
    assert list(frame.columns) == COLUMNS
    assert frame.ImageId.tolist() == ["a.jpg"] * 3 + ["b.jpg", "c.jpg"]
    assert frame.ClassId.tolist() == ["1", "10_7_20", "1", "33", "23"], "by decreasing score; 23 for an empty image"
    assert frame.EncodedPixels.iloc[-1] == ""
    assert np.array_equal(rle.decode(frame.EncodedPixels.iloc[0], 16, 16), box(8, 8, 4))
    assert submission.problems(frame, GRIDS, LABELS) == []


def written_and_read(frame: pd.DataFrame, tmp_path: Path) -> pd.DataFrame:
    path = tmp_path / "s.csv"
    submission.write(frame, path, GRIDS, LABELS)
    return submission.check_file(path, RECORDS, _params("16x16"), LABELS)


def _params(grid: str):
    from pipeline.predict_params import PostprocessParams

    return PostprocessParams(tta=False, score_thresh=0.5, nms_iou=0.5, mask_thresh=0.5, min_area=0,
                             max_detections=10, attribute_policy="category", grid=grid)


def test_a_written_submission_reads_back_valid_with_its_empty_row(tmp_path):
    back = written_and_read(valid_frame(), tmp_path)
    assert back.equals(valid_frame())


def defect(change) -> list[str]:
    return submission.problems(change(valid_frame()), GRIDS, LABELS)


def _set(row: int, column: str, value: str):
    def change(frame):
        frame.loc[row, column] = value
        return frame
    return change


@pytest.mark.parametrize("change,message", [
    (lambda f: f.rename(columns={"ClassId": "Class"}), "header is ImageId,EncodedPixels,Class"),
    (lambda f: f.drop(index=4), "1 test image(s) have no row, e.g. c.jpg"),
    (_set(3, "ImageId", "zzz.jpg"), "line 5: ImageId 'zzz.jpg' is not a test image"),
    (_set(0, "EncodedPixels", "5 3 2"), "line 2: EncodedPixels on the 16x16 grid"),
    (_set(0, "EncodedPixels", "5 x"), "line 2: EncodedPixels"),
    (_set(0, "EncodedPixels", "0 3"), "line 2: EncodedPixels"),
    (_set(0, "EncodedPixels", "251 7"), "past the last pixel 256"),
    (_set(0, "EncodedPixels", "10 5 12 3"), "line 2: EncodedPixels"),
    (_set(1, "ClassId", "46"), "line 3: category 46 is not in the label set"),
    (_set(1, "ClassId", "10_92"), "line 3: attribute(s) [92] not in the label set"),
    (_set(1, "ClassId", "shirt"), "line 3: ClassId 'shirt' is not integers"),
    (_set(1, "ClassId", "1"), "lines 3 and 4: two masks of ClassId 1 share pixels in a.jpg"),
])
def test_the_validator_rejects_each_defect(change, message):
    found = defect(change)
    assert any(message in problem for problem in found), found


def test_the_same_mask_twice_is_an_overlap_but_other_classes_may_overlap():
    frame = valid_frame()
    assert submission.problems(frame, GRIDS, LABELS) == [], "10_7_20 overlaps the 1 at the corner: allowed"
    doubled = pd.concat([frame, frame.iloc[[3]]], ignore_index=True)
    assert submission.problems(doubled, GRIDS, LABELS) == [
        "lines 5 and 7: two masks of ClassId 33 share pixels in b.jpg"]


def test_an_invalid_submission_is_never_written(tmp_path):
    frame = valid_frame()
    frame.loc[0, "ClassId"] = "99"
    with pytest.raises(SubmissionError, match=r"s.csv: invalid submission, 1 problem\(s\):\n  line 2: category 99"):
        submission.write(frame, tmp_path / "s.csv", GRIDS, LABELS)
    assert list(tmp_path.iterdir()) == []


def test_native_grids_check_each_image_size():
    frame = valid_frame()
    grids = {r.image_id: _params("native").grid_size(r.height, r.width) for r in RECORDS}
    frame.loc[4, "EncodedPixels"] = "95 6"  # c.jpg is 10 x 10: pixels 95-100 fit, 96-101 would not
    assert submission.problems(frame.drop(index=[0, 1, 2, 3]), grids, LABELS)[0].startswith("2 test image(s)")
    frame.loc[4, "EncodedPixels"] = "96 6"
    assert any("line 6" in p and "past the last pixel 100" in p for p in submission.problems(frame, grids, LABELS))


class FakeKaggle:
    """Stands in for the network boundary only: records what would have been uploaded."""

    def __init__(self, error: Exception | None = None) -> None:
        self.calls: list[dict] = []
        self.error = error

    def competition_submit(self, **kwargs):
        self.calls.append(kwargs)
        if self.error:
            raise self.error


def test_submit_sends_the_file_with_a_message_naming_commit_and_params(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text("a: 1\n")
    text = kaggle_submit.message(REPO, [params], "first try")
    revision = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True)
    assert text.startswith(f"commit {revision.stdout.strip()}") and text.endswith("first try")
    params.write_text("a: 2\n")
    assert kaggle_submit.message(REPO, [params]).split(" params ")[1] != text.split(" params ")[1].split()[0]
    api = FakeKaggle()
    kaggle_submit.submit(api, tmp_path / "s.csv", "imaterialist-fashion-2019-FGVC6", text)
    assert api.calls == [{"file_name": str(tmp_path / "s.csv"), "message": text,
                          "competition": "imaterialist-fashion-2019-FGVC6"}]
    assert kaggle_submit.git_revision(tmp_path) == "no-git"


def test_a_refused_upload_is_a_clear_error(tmp_path):
    with pytest.raises(kaggle_submit.SubmitError, match="did not accept .*accepted the competition's rules"):
        kaggle_submit.submit(FakeKaggle(RuntimeError("403 Forbidden")), tmp_path / "s.csv", "c", "m")


def submit_stage(tmp_path: Path, submission_csv: Path, sample: Path, images: Path, tuned: Path,
                 ) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KAGGLE_")}
    env.update(HOME=str(tmp_path), KAGGLE_CONFIG_DIR=str(tmp_path / ".kaggle"), XDG_CONFIG_HOME=str(tmp_path))
    return subprocess.run([sys.executable, "-m", "stages.submit", "--file", str(submission_csv),
                           "--sample-submission", str(sample), "--test-images", str(images),
                           "--labels", str(REPO / "pipeline" / "data" / "label_descriptions.json"),
                           "--tuned", str(tuned)], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)


def test_submit_validates_first_then_needs_credentials(small_dataset, tmp_path):
    records = submission.test_records(small_dataset / "sample_submission.csv", small_dataset / "test")
    tuned = tmp_path / "tuned.yaml"
    tuned.write_text(yaml.safe_dump({"postprocess": _params("16x16").model_dump(mode="json")}))
    bad = tmp_path / "bad.csv"
    submission.frame({}, records[1:]).to_csv(bad, index=False)
    done = submit_stage(tmp_path, bad, small_dataset / "sample_submission.csv", small_dataset / "test", tuned)
    assert done.returncode == 1 and "1 test image(s) have no row" in done.stderr
    assert "credentials" not in done.stderr, "validation comes before the upload"
    good = tmp_path / "good.csv"
    submission.frame({}, records).to_csv(good, index=False)
    done = submit_stage(tmp_path, good, small_dataset / "sample_submission.csv", small_dataset / "test", tuned)
    assert done.returncode == 1 and done.stderr.startswith("error: Kaggle credentials not found")
    assert "Traceback" not in done.stderr
