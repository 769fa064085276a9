"""The submission file: encoding, the validator (one test per defect) and the upload."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline.data import rle
from pipeline.data.annotations import SUBMISSION_COLUMNS, DataError
from pipeline.data.labels import load_labels
from pipeline.inference.detections import ImageRecord, Instance
from pipeline.kaggle import submit as kaggle_submit
from pipeline.submission import rows as submission
from pipeline.submission.rows import SubmissionError

from damaged_files import bomb_png

REPO = Path(__file__).resolve().parents[2]
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
    assert list(frame.columns) == list(SUBMISSION_COLUMNS)
    assert frame.ImageId.tolist() == ["a.jpg"] * 3 + ["b.jpg", "c.jpg"]
    assert frame.ClassId.tolist() == ["1", "10_7_20", "1", "33", "23"], "by decreasing score; 23 for an empty image"
    assert frame.EncodedPixels.iloc[-1] == ""
    assert np.array_equal(rle.decode(frame.EncodedPixels.iloc[0], 16, 16), box(8, 8, 4))
    assert submission.problems(frame, GRIDS, LABELS) == []


def written_and_read(frame: pd.DataFrame, tmp_path: Path) -> pd.DataFrame:
    path = tmp_path / "s.csv"
    submission.write(frame, path, GRIDS, LABELS)
    return submission.check_file(path, GRIDS, LABELS)


def _params(grid: str):
    from pipeline.config.inference import PostprocessParams

    return PostprocessParams(tta=False, score_thresh=0.5, nms_iou=0.5, mask_thresh=0.5, min_area=0,
                             max_detections=10, attribute_policy="category", grid=grid)


def tuned_file(path: Path, grid: str = "512x512") -> Path:
    """A tuned post-processing file as stage tune writes it."""
    from pipeline.config.tuned import Tuned

    path.write_text(Tuned("maskrcnn", _params(grid)).text())
    return path


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


def git_repository(root: Path) -> Path:
    """A one-commit repository holding params.yaml."""
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
    root.mkdir()
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    (root / "params.yaml").write_text("a: 1\n")
    subprocess.run(["git", "add", "params.yaml"], cwd=root, check=True)
    subprocess.run([*git, "commit", "-q", "-m", "first"], cwd=root, check=True)
    return root


def test_submit_sends_the_file_with_a_message_naming_commit_and_params(tmp_path):
    repo = git_repository(tmp_path / "repo")
    params = repo / "params.yaml"
    text = kaggle_submit.message(repo, [params], "first try")
    revision = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=repo, capture_output=True, text=True)
    assert text.startswith(f"commit {revision.stdout.strip()} params ") and text.endswith("first try")
    assert "+changes" not in text
    params.write_text("a: 2\n")
    edited = kaggle_submit.message(repo, [params])
    assert edited.startswith(f"commit {revision.stdout.strip()}+changes params "), "uncommitted edits are marked"
    assert edited.split(" params ")[1] != text.split(" params ")[1].split()[0]
    api = FakeKaggle()
    kaggle_submit.submit(api, tmp_path / "s.csv", "imaterialist-fashion-2019-FGVC6", text)
    assert api.calls == [{"file_name": str(tmp_path / "s.csv"), "message": text,
                          "competition": "imaterialist-fashion-2019-FGVC6"}]
    assert kaggle_submit.git_revision(tmp_path) == "no-git"


def test_a_refused_upload_is_a_clear_error(tmp_path):
    with pytest.raises(kaggle_submit.SubmitError, match="did not accept .*accepted the competition's rules"):
        kaggle_submit.submit(FakeKaggle(RuntimeError("403 Forbidden")), tmp_path / "s.csv", "c", "m")


def submit_stage(tmp_path: Path, submission_csv: Path, sample: Path, images: Path, tuned: Path,
                 fake_http: bool = False, **env_changes: str) -> subprocess.CompletedProcess:
    """``python -m stages.submit`` with no Kaggle credentials but those in ``env_changes``.

    With ``fake_http`` every HTTP request goes to ``tests/fake_kaggle_http.py`` (logged in tmp_path/http.jsonl).
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("KAGGLE_")}
    env.update(HOME=str(tmp_path), KAGGLE_CONFIG_DIR=str(tmp_path / ".kaggle"), XDG_CONFIG_HOME=str(tmp_path),
               PYTHONPATH=str(REPO), **env_changes)
    runner = [str(REPO / "tests" / "fake_kaggle_http.py"), str(tmp_path / "http.jsonl")] if fake_http else []
    return subprocess.run([sys.executable, *runner, "-m", "stages.submit", "--file", str(submission_csv),
                           "--sample-submission", str(sample), "--test-images", str(images),
                           "--labels", str(REPO / "pipeline" / "data" / "label_descriptions.json"),
                           "--tuned", str(tuned)], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)


def test_submit_validates_first_then_needs_credentials(small_dataset, tmp_path):
    records = submission.test_records(small_dataset / "sample_submission.csv", small_dataset / "test")
    tuned = tuned_file(tmp_path / "tuned.yaml")
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


SECRET = "kaggle-secret-0123456789abcdef"


@pytest.fixture
def submittable(small_dataset, tmp_path) -> tuple[Path, Path, Path, Path]:
    """A valid submission of the small dataset's test images, with what stages.submit checks it against."""
    records = submission.test_records(small_dataset / "sample_submission.csv", small_dataset / "test")
    tuned = tuned_file(tmp_path / "tuned.yaml")
    good = tmp_path / "good.csv"
    submission.frame({}, records).to_csv(good, index=False)
    return good, small_dataset / "sample_submission.csv", small_dataset / "test", tuned


def test_submit_uploads_through_the_real_client_to_kaggles_endpoints(submittable, tmp_path):
    from fake_kaggle_http import ACCEPTED

    done = submit_stage(tmp_path, *submittable, fake_http=True, KAGGLE_USERNAME="tester", KAGGLE_KEY=SECRET)
    assert done.returncode == 0, done.stderr
    assert f"Kaggle says: {ACCEPTED}" in done.stdout
    sent = [json.loads(line) for line in (tmp_path / "http.jsonl").read_text().splitlines()]
    assert [(r["method"], r["url"].rsplit("/", 1)[-1]) for r in sent] == [
        ("POST", "StartSubmissionUpload"), ("PUT", "submission"), ("POST", "CreateSubmission")]
    start, create = json.loads(sent[0]["body"]), json.loads(sent[2]["body"])
    assert start["competitionName"] == "imaterialist-fashion-2019-FGVC6" and start["fileName"] == "good.csv"
    assert sent[1]["body"] == submittable[0].read_text(), "the file itself is uploaded"
    assert create["blobFileTokens"] == "blob-token-1" and create["submissionDescription"].startswith("commit ")
    assert SECRET not in done.stdout + done.stderr


def test_a_failed_upload_is_an_error_not_a_success(submittable, tmp_path):
    done = submit_stage(tmp_path, *submittable, fake_http=True, KAGGLE_USERNAME="tester", KAGGLE_KEY=SECRET,
                        FAKE_KAGGLE_UPLOAD_STATUS="400")
    assert done.returncode == 1 and "failed (Could not submit to competition); nothing was submitted" in done.stderr
    assert "submitted good.csv" not in done.stdout


@pytest.mark.parametrize("credentials", [{"KAGGLE_API_TOKEN": SECRET},
                                         {"KAGGLE_USERNAME": "tester", "KAGGLE_KEY": SECRET}],
                         ids=["token, checked online", "key, used at upload"])
def test_no_network_reads_as_no_network(submittable, tmp_path, credentials):
    closed = "http://127.0.0.1:9"  # the discard port: nothing listens, the connection is refused
    done = submit_stage(tmp_path, *submittable, HTTPS_PROXY=closed, HTTP_PROXY=closed, NO_PROXY="", **credentials)
    assert done.returncode == 1, done.stdout
    assert done.stderr.startswith("error: could not reach Kaggle (api.kaggle.com: "), done.stderr
    assert "Traceback" not in done.stderr and "accepted the competition's rules" not in done.stderr
    assert SECRET not in done.stdout + done.stderr


@pytest.mark.parametrize("content,says", [('{"username": "tester", "key": "' + SECRET, "is malformed (not JSON"),
                                          ('{"username": "tester"}', 'is malformed: it needs the text fields')])
def test_a_malformed_kaggle_json_says_it_is_malformed(submittable, tmp_path, content, says):
    (tmp_path / ".kaggle").mkdir()
    (tmp_path / ".kaggle" / "kaggle.json").write_text(content)
    done = submit_stage(tmp_path, *submittable)
    assert done.returncode == 1 and says in done.stderr and "kaggle.json" in done.stderr, done.stderr
    assert "credentials not found" not in done.stderr and SECRET not in done.stdout + done.stderr


def validate_stage(tmp_path: Path, file: Path, small_dataset: Path) -> subprocess.CompletedProcess:
    tuned = tuned_file(tmp_path / "tuned.yaml")
    return subprocess.run([sys.executable, "-m", "stages.validate_submission", str(file),
                           "--sample-submission", str(small_dataset / "sample_submission.csv"),
                           "--test-images", str(small_dataset / "test"),
                           "--labels", str(small_dataset / "label_descriptions.json"), "--tuned", str(tuned)],
                          cwd=REPO, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(REPO)})


@pytest.mark.parametrize("line", [2, 3])
def test_a_row_with_an_extra_field_is_named_wherever_it_is(small_dataset, tmp_path, line):
    """pandas alone shifts every field when the first row has one too many: 'ImageId ... is not a test image'."""
    records = submission.test_records(small_dataset / "sample_submission.csv", small_dataset / "test")
    lines = submission.frame({}, records).to_csv(index=False).splitlines()
    lines[line - 1] += ","
    (tmp_path / "s.csv").write_text("\n".join(lines) + "\n")
    done = validate_stage(tmp_path, tmp_path / "s.csv", small_dataset)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert f"Expected 3 fields in line {line}, saw 4" in done.stderr and "is not a test image" not in done.stderr


def test_unsorted_attributes_are_accepted_with_a_warning_and_blank_lines_skipped(small_dataset, tmp_path):
    records = submission.test_records(small_dataset / "sample_submission.csv", small_dataset / "test")
    frame = submission.frame({records[0].image_id: [Instance("10_20_5", 0.9, np.ones((16, 16), bool))]}, records)
    lines = frame.to_csv(index=False).splitlines()
    (tmp_path / "s.csv").write_text("\n".join([lines[0], lines[1], "", *lines[2:]]) + "\n")
    done = validate_stage(tmp_path, tmp_path / "s.csv", small_dataset)
    assert done.returncode == 0 and f"{tmp_path / 's.csv'}: valid (" in done.stdout, done.stderr
    assert f"{len(records)} images" in done.stdout
    assert "warning: " in done.stderr and "line 2: ClassId '10_20_5' is accepted, but its attributes are not in " \
        "increasing order; ground truth would read '10_5_20'" in done.stderr
    assert "line 3: blank line (skipped)" in done.stderr


def test_the_validator_does_not_load_torch():
    """It checks a CSV: loading the model stack made it take 5 s and 900 MB for a 73 KB file."""
    code = "import sys, stages.validate_submission; print(sorted(sys.modules))"
    loaded = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True).stdout
    assert "'torch'" not in loaded and "'torchvision'" not in loaded


def test_a_valid_first_row_longer_than_the_csv_field_limit_is_read(tmp_path):
    """A mask of 131,072 runs on the 512 x 512 grid: longer than the csv module's default field limit."""
    striped = np.zeros((512, 512), bool)
    striped[::2] = True  # one run per row pair in each column: 131,072 runs
    path = tmp_path / "s.csv"
    pd.DataFrame([("a.jpg", rle.encode(striped), "1")], columns=SUBMISSION_COLUMNS).to_csv(path, index=False)
    assert len(path.read_text().splitlines()[1]) > 131_072
    back = submission.check_file(path, {"a.jpg": (512, 512)}, LABELS)
    assert np.array_equal(rle.decode(back.EncodedPixels.iloc[0], 512, 512), striped)


def test_a_quoted_line_break_keeps_later_line_numbers_right(tmp_path):
    frame = valid_frame()
    frame.loc[0, "ClassId"] = "1\n"  # line 2 spans lines 2 and 3
    frame.loc[3, "EncodedPixels"] = "5 3 2"  # the fourth row starts on line 6
    path = tmp_path / "s.csv"
    frame.to_csv(path, index=False)
    with pytest.raises(SubmissionError) as caught:
        submission.check_file(path, GRIDS, LABELS)
    assert "line 2: ClassId '1\\n' is not integers" in str(caught.value)
    assert "line 6: EncodedPixels on the 16x16 grid" in str(caught.value)


@pytest.mark.parametrize("image_id", ["../train/x.jpg", "/srv/test/x.jpg"])
def test_a_sample_submission_image_id_that_is_a_path_is_refused_with_its_line(small_dataset, tmp_path, image_id):
    """It used to be read from the other folder by predict, written into the submission and called valid."""
    lines = (small_dataset / "sample_submission.csv").read_text().splitlines()
    lines.insert(3, f"{image_id},1 1,23")
    (tmp_path / "sample.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=rf"sample.csv: 1 ImageId\(s\) are not plain file names of .*: line 4: "
                                        f"'{image_id}'"):
        submission.test_records(tmp_path / "sample.csv", small_dataset / "test")


def test_a_test_image_that_is_a_decompression_bomb_is_named(small_dataset, tmp_path):
    images = tmp_path / "test"
    shutil.copytree(small_dataset / "test", images)
    victim = sorted(images.iterdir())[0]
    bomb_png(victim)
    with pytest.raises(DataError, match=rf"{victim}: cannot read image \(.*decompression bomb"):
        submission.test_records(small_dataset / "sample_submission.csv", images)
