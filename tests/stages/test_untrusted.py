"""The stages given files a user did not write or a damaged earlier output: a clear one-line error naming the
file, a counted skip or a repair, and nothing read or written outside the project."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import yaml

from pipeline.config.inference import PostprocessParams
from pipeline.config.tuned import Tuned
from pipeline.inference import store
from pipeline.inference.detections import Detections
from pipeline.models.contract import MaskFormat
from pipeline.submission import rows as submission
from pipeline.utils.lock import exclusive

from stage_runs import REPO, params_file, predict_args, stage, training_inputs

LABELS = str(REPO / "pipeline" / "data" / "label_descriptions.json")
POSTPROCESS = PostprocessParams.model_validate(yaml.safe_load((REPO / "params.yaml").read_text())["postprocess"])


def one_line_error(done, *says: str) -> str:
    """The stage failed with exit status 1 and a single ``error:`` line holding each of ``says``."""
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    line = done.stderr.strip().splitlines()[-1]
    assert line.startswith("error: ") and all(s in line for s in says), line
    return line


def test_path_image_ids_are_counted_by_prepare_and_never_reach_a_file_outside(dataset_copy, tmp_path):
    """An absolute ImageId naming a real JPEG outside the project used to pass prepare; the cache then re-encoded
    it in place. ``../../victim_rel.jpg`` landed outside the cache folder."""
    with open(dataset_copy / "train.csv", newline="") as handle:
        rows = list(csv.reader(handle))
    victim = tmp_path / "srv" / "photos" / "v.jpg"
    victim.parent.mkdir(parents=True)
    victim.write_bytes((dataset_copy / "train" / rows[1][0]).read_bytes())
    (tmp_path / "victim_rel.jpg").write_bytes(victim.read_bytes())
    before = victim.read_bytes()
    rows[1][0], rows[2][0] = str(victim), "../../victim_rel.jpg"
    with open(dataset_copy / "train.csv", "w", newline="") as handle:
        csv.writer(handle).writerows(rows)
    params = params_file(tmp_path, model={"min_size": 32, "max_size": 48})
    prepared = stage("prepare", "--params", str(params), "--raw", str(dataset_copy),
                     "--out", str(tmp_path / "t.parquet"), "--report", str(tmp_path / "r.json"))
    assert prepared.returncode == 0, prepared.stderr
    problem = json.loads((tmp_path / "r.json").read_text())["problems"]["invalid_image_id"]
    assert problem["count"] == 2 and [e["line"] for e in problem["examples"]] == [2, 3]
    cached = stage("cache", "--params", str(params), "--instances", str(tmp_path / "t.parquet"),
                   "--images", str(dataset_copy / "train"), "--out", str(tmp_path / "cache"),
                   "--report", str(tmp_path / "c.json"))
    assert cached.returncode == 0, cached.stderr
    assert victim.read_bytes() == before and (tmp_path / "victim_rel.jpg").read_bytes() == before


def test_a_truncated_instance_table_is_named_by_folds_and_cache(small_dataset, tmp_path):
    (tmp_path / "t.parquet").write_bytes(b"PAR1" + bytes(64))
    params = params_file(tmp_path)
    folds = stage("folds", "--params", str(params), "--instances", str(tmp_path / "t.parquet"), "--labels", LABELS,
                  "--out", str(tmp_path / "folds.csv"), "--report", str(tmp_path / "folds.json"))
    one_line_error(folds, f"{tmp_path / 't.parquet'}: cannot read the table", "dvc repro")
    cache = stage("cache", "--params", str(params), "--instances", str(tmp_path / "t.parquet"),
                  "--images", str(small_dataset / "train"), "--out", str(tmp_path / "cache"),
                  "--report", str(tmp_path / "c.json"))
    one_line_error(cache, f"{tmp_path / 't.parquet'}: cannot read the table")


def test_a_tuned_file_cut_short_makes_no_submission_and_no_valid_verdict(small_dataset, tmp_path):
    """``head -c 499`` of the tuned file: the grid read 512x5, and the submission and its validator said valid."""
    tuned = tmp_path / "t.yaml"
    tuned.write_text(Tuned("maskrcnn", POSTPROCESS).text()[:499])
    test = ["--sample-submission", str(small_dataset / "sample_submission.csv"),
            "--test-images", str(small_dataset / "test"), "--labels", LABELS, "--tuned", str(tuned)]
    (tmp_path / "none").mkdir()  # a predictions folder that exists: the tuned file is read first
    made = stage("submission", "--predictions", str(tmp_path / "none"), *test, "--out", str(tmp_path / "s.csv"))
    one_line_error(made, f"{tuned}:")
    assert not (tmp_path / "s.csv").exists()
    (tmp_path / "s.csv").write_text("ImageId,EncodedPixels,ClassId\n")
    one_line_error(stage("validate_submission", str(tmp_path / "s.csv"), *test), f"{tuned}:")
    told = stage("validate_submission", str(tmp_path / "s.csv"), *test, "--grid", "512x5")
    assert told.returncode == 2 and "invalid choice: '512x5'" in told.stderr
    records = submission.test_records(small_dataset / "sample_submission.csv", small_dataset / "test")
    submission.frame({}, records).to_csv(tmp_path / "s.csv", index=False)
    given = stage("validate_submission", str(tmp_path / "s.csv"), *test, "--grid", "512x512")
    assert given.returncode == 0 and "grid 512x512" in given.stdout, "a grid given, the tuned file is not read"


def fake_predictions(folder: Path, records: list, family: str = "maskrcnn", limit: int | None = None) -> Path:
    """A finished prediction folder of ``family`` without any detection."""
    made = store.Made({"fake": True}, family, ["x1"], MaskFormat("roi", 28), 92, limit)
    store.write(folder, made, records, lambda todo: iter([(todo, [Detections.empty(28, 92, "roi", 1) for _ in todo])]),
                8)
    return folder


def test_evaluate_and_tune_refuse_a_partial_prediction_folder(small_instances, small_dataset, tmp_path):
    """One row of images.csv removed, or a --limit run: both used to be scored as if they were the whole fold."""
    params, _ = training_inputs(tmp_path, small_instances)
    records = submission.test_records(small_dataset / "sample_submission.csv", small_dataset / "test")
    val = fake_predictions(tmp_path / "val", records)
    lines = (val / store.IMAGES).read_text().splitlines()
    (val / store.IMAGES).write_text("\n".join(lines[:-1]) + "\n")
    (tmp_path / "t.yaml").write_text(Tuned("maskrcnn", POSTPROCESS).text())
    common = ["--params", str(params), "--instances", str(tmp_path / "instances.parquet"), "--labels", LABELS]
    evaluated = stage("evaluate", *common, "--predictions", str(val), "--images", str(small_dataset / "test"),
                      "--tuned", str(tmp_path / "t.yaml"), "--metrics", str(tmp_path / "e.json"),
                      "--report", str(tmp_path / "er.json"),
                      "--val-submission", str(tmp_path / "v.csv"), "--gallery", str(tmp_path / "g"))
    one_line_error(evaluated, f"{val}: damaged, images.csv", "run stage predict")
    assert not (tmp_path / "e.json").exists()
    limited = fake_predictions(tmp_path / "limited", records[:2], limit=2)
    tuned = stage("tune", *common, "--predictions", str(limited), "--out", str(tmp_path / "p.yaml"),
                  "--metrics", str(tmp_path / "tune.json"), "--report", str(tmp_path / "tr.json"))
    one_line_error(tuned, f"{limited}: made with --limit 2")
    assert not (tmp_path / "p.yaml").exists()


def test_a_tuned_file_of_another_family_is_refused_for_these_predictions(small_dataset, tmp_path):
    records = submission.test_records(small_dataset / "sample_submission.csv", small_dataset / "test")
    predictions = fake_predictions(tmp_path / "test", records, family="maskrcnn")
    (tmp_path / "t.yaml").write_text(Tuned("unet", POSTPROCESS).text())
    done = stage("submission", "--predictions", str(predictions),
                 "--sample-submission", str(small_dataset / "sample_submission.csv"),
                 "--test-images", str(small_dataset / "test"), "--labels", LABELS, "--tuned", str(tmp_path / "t.yaml"),
                 "--out", str(tmp_path / "s.csv"))
    one_line_error(done, "tuned for family unet, not for the predictions in", "use tuning/maskrcnn/postprocess.yaml")


def test_a_second_predict_on_the_same_folder_is_told_who_writes_it(trained, small_instances, small_dataset,
                                                                   tmp_path):
    """Two at once used to end with one failing on the other's parts and a stale parts/ in the finished folder."""
    params, _ = training_inputs(tmp_path, small_instances, predict={"scales": [1.0], "hflip": False})
    with exclusive(tmp_path / "out" / "val", "stage predict val"):
        done = stage("predict", *predict_args(trained, params, small_dataset, tmp_path / "out"))
    one_line_error(done, f"{tmp_path / 'out' / 'val'} is busy: stage predict val (process")


def test_segment_told_to_write_into_a_file_says_so(tmp_path):
    (tmp_path / "out").write_text("a file")
    photo = tmp_path / "p.png"
    photo.write_bytes(b"")
    done = stage("segment", str(photo), "--out", str(tmp_path / "out"))
    one_line_error(done, f"{tmp_path / 'out'}: --out must be a folder, and this is a file")
    assert np.array_equal(np.frombuffer((tmp_path / "out").read_bytes(), np.uint8),
                          np.frombuffer(b"a file", np.uint8))
