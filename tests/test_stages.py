"""The DVC stages as users run them: through `python -m stages.<name>` and through `dvc repro`."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from pipeline import checkpoint
from pipeline.folds import make_folds

REPO = Path(__file__).resolve().parents[1]


def stage(name: str, *args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", f"stages.{name}", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(REPO)})


def params_file(tmp_path: Path, **changes: dict) -> Path:
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    for section, values in changes.items():
        params[section].update(values)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


def test_prepare_stage_fails_on_size_mismatch_when_asked(small_dataset, tmp_path):
    params = params_file(tmp_path, prepare={"on_size_mismatch": "fail"})
    done = stage("prepare", "--params", str(params), "--raw", str(small_dataset),
                 "--out", str(tmp_path / "t.parquet"), "--report", str(tmp_path / "r.json"))
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1].startswith("error: 1 image(s) whose size differs from train.csv")
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "t.parquet").exists()


def test_prepare_and_folds_stages_write_their_outputs(small_dataset, tmp_path):
    params = params_file(tmp_path)
    done = stage("prepare", "--params", str(params), "--raw", str(small_dataset),
                 "--out", str(tmp_path / "t.parquet"), "--report", str(tmp_path / "r.json"))
    assert done.returncode == 0, done.stderr
    table = pd.read_parquet(tmp_path / "t.parquet")
    report = json.loads((tmp_path / "r.json").read_text())
    assert len(table) == report["rows_kept"] > 0
    done = stage("folds", "--params", str(params), "--instances", str(tmp_path / "t.parquet"),
                 "--labels", str(small_dataset / "label_descriptions.json"), "--out", str(tmp_path / "folds.csv"),
                 "--metrics", str(tmp_path / "folds.json"))
    assert done.returncode == 0, done.stderr
    folds = pd.read_csv(tmp_path / "folds.csv")
    assert set(folds.ImageId) == set(table.image_id)
    assert sum(json.loads((tmp_path / "folds.json").read_text())["images_per_fold"]) == len(folds)
    assert not list(tmp_path.glob(".*tmp*")), "no temporary files left behind"


@pytest.mark.parametrize("name", list(yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]))
def test_each_stage_depends_on_every_module_it_imports(name):
    """Otherwise a change to an imported module would not make `dvc repro` rerun the stage."""
    imported = subprocess.run(
        [sys.executable, "-c", f"import sys, stages.{name}; print(' '.join(sorted(sys.modules)))"],
        cwd=REPO, capture_output=True, text=True, check=True).stdout.split()
    modules = {m.replace(".", "/") + ".py" for m in imported if m.startswith(("pipeline.", "stages."))}
    deps = set(yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"][name]["deps"])
    assert modules - deps == set()


TINY_TRAINING = {
    "model": {"min_size": 64, "max_size": 96, "anchor_sizes": [8, 16, 32, 64, 128], "rpn_post_nms_top_n_train": 100,
              "box_batch_size_per_image": 32, "rpn_pre_nms_top_n_test": 100, "rpn_post_nms_top_n_test": 100},
    "train": {"epochs": 2, "batch_size": 2, "checkpoint_every": 1, "log_every": 1, "warmup_steps": 2},
}


def training_inputs(tmp_path: Path, instances: pd.DataFrame, **changes: dict) -> tuple[Path, list[str]]:
    """A params file for a seconds-long training run, and the stage arguments other than the run folders."""
    instances.to_parquet(tmp_path / "instances.parquet")
    make_folds(instances, 46, 4, 0).to_csv(tmp_path / "folds.csv", index=False)
    sections = {name: {**TINY_TRAINING.get(name, {}), **changes.get(name, {})} for name in ("model", "train")}
    params = params_file(tmp_path, **sections)
    labels = REPO / "pipeline" / "data" / "label_descriptions.json"
    return params, ["--params", str(params), "--instances", str(tmp_path / "instances.parquet"),
                    "--folds", str(tmp_path / "folds.csv"), "--labels", str(labels)]


def run_dirs(root: Path) -> list[str]:
    return ["--run-dir", str(root / "run"), "--live-dir", str(root / "live")]


@pytest.mark.parametrize("workers", [0, 1])
def test_train_stage_names_a_missing_image(small_instances, dataset_copy, tmp_path, workers):
    params, args = training_inputs(tmp_path, small_instances, train={"workers": workers})
    victims = sorted(small_instances.image_id.unique())
    for victim in victims:
        (dataset_copy / "train" / victim).unlink()
    done = stage("train", *args, "--images", str(dataset_copy / "train"), *run_dirs(tmp_path))
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and last.endswith(": image not found") and "/train/" in last, last
    assert "Traceback" not in done.stderr


def test_train_stage_rejects_a_fold_that_does_not_exist(small_instances, small_dataset, tmp_path):
    params, args = training_inputs(tmp_path, small_instances, train={"fold": 9})
    done = stage("train", *args, "--images", str(small_dataset / "train"), *run_dirs(tmp_path))
    assert done.returncode == 1
    assert "fold 9 cannot be held out (the file has folds [0, 1, 2, 3])" in done.stderr


@pytest.mark.slow
def test_a_killed_training_run_resumes_to_the_uninterrupted_result(small_instances, small_dataset, tmp_path):
    params, args = training_inputs(tmp_path, small_instances)
    args += ["--images", str(small_dataset / "train"), "--limit", "8"]
    whole = stage("train", *args, *run_dirs(tmp_path / "whole"))
    assert whole.returncode == 0, whole.stderr
    cut = tmp_path / "cut"
    running = subprocess.Popen([sys.executable, "-m", "stages.train", *args, *run_dirs(cut)], cwd=REPO,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               env={**os.environ, "PYTHONPATH": str(REPO)})
    deadline = time.monotonic() + 240
    while not (cut / "run" / "last.pt").exists() and running.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    running.kill()
    running.wait()
    killed_at = checkpoint.load(cut / "run" / "last.pt")["state"]["step"]
    resumed = stage("train", *args, *run_dirs(cut))
    assert resumed.returncode == 0, resumed.stderr
    assert f"step {killed_at}" in resumed.stdout and killed_at < 8
    expected = checkpoint.load(tmp_path / "whole" / "run" / "last.pt")
    got = checkpoint.load(cut / "run" / "last.pt")
    timing = {"val_seconds"}  # a measured duration, not a result
    assert {k: v for k, v in got["state"].items() if k not in timing} == \
        {k: v for k, v in expected["state"].items() if k not in timing}
    assert all(torch.equal(expected["model"][k], got["model"][k]) for k in expected["model"])
    steps = pd.read_csv(cut / "live" / "plots" / "metrics" / "train" / "loss.tsv", sep="\t").step
    assert steps.tolist() == list(range(1, 9)), "the resumed curve has no gaps or repeated steps"


@pytest.mark.slow
def test_torchrun_runs_the_same_stage_on_two_processes(small_instances, small_dataset, tmp_path):
    params, args = training_inputs(tmp_path, small_instances)
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           "-m", "stages.train", *args, "--images", str(small_dataset / "train"), "--limit", "8",
                           *run_dirs(tmp_path), "--max-steps", "2"],
                          cwd=REPO, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("training stopped at step 2") == 1, "only rank 0 reports"
    saved = checkpoint.load(tmp_path / "run" / "last.pt")
    assert saved["state"]["step"] == 2 and len(saved["rng"]) == 2 and saved["params"]["world_size"] == 2


def test_predict_tune_evaluate_and_submission_stages_chain(small_instances, small_dataset, tmp_path):
    """From a checkpoint to a valid submission.csv, through the stage entry points dvc.yaml runs."""
    from pipeline.model import ModelSpec, build_model

    params, _ = training_inputs(tmp_path, small_instances)
    spec_params = yaml.safe_load(params.read_text())
    spec_params["predict"].update(scales=[1.0, 1.2], part_size=3)
    spec_params["tune"].update(score_thresh=[0.05, 0.5], nms_iou=[0.5], mask_thresh=[0.5], min_area=[0],
                               max_detections=[20], rounds=1)
    spec_params["evaluate"]["gallery_images"] = 2
    params.write_text(yaml.safe_dump(spec_params))
    spec = ModelSpec(**{**spec_params["model"], "anchor_sizes": tuple(spec_params["model"]["anchor_sizes"])})
    torch.manual_seed(0)
    (tmp_path / "run").mkdir()
    torch.save({"model": build_model(spec, 47, 92).state_dict(), "num_classes": 47}, tmp_path / "run" / "best.pt")
    common = ["--params", str(params)]
    labels = ["--labels", str(small_dataset / "label_descriptions.json")]
    predicted = stage("predict", *common, "--run-dir", str(tmp_path / "run"),
                      "--instances", str(tmp_path / "instances.parquet"), "--folds", str(tmp_path / "folds.csv"),
                      "--train-images", str(small_dataset / "train"),
                      "--sample-submission", str(small_dataset / "sample_submission.csv"),
                      "--test-images", str(small_dataset / "test"), *labels, "--out", str(tmp_path / "predictions"))
    assert predicted.returncode == 0, predicted.stderr
    assert "x1, x1.2, x1-flip, x1.2-flip" in predicted.stdout
    tuned = stage("tune", *common, "--predictions", str(tmp_path / "predictions" / "val"),
                  "--instances", str(tmp_path / "instances.parquet"), *labels,
                  "--out", str(tmp_path / "postprocess.yaml"), "--metrics", str(tmp_path / "tune.json"))
    assert tuned.returncode == 0, tuned.stderr
    search = json.loads((tmp_path / "tune.json").read_text())
    assert search["tuned"] >= search["default"] and 0 <= search["tuned_held_out"] <= 1
    evaluated = stage("evaluate", *common, "--predictions", str(tmp_path / "predictions" / "val"),
                      "--instances", str(tmp_path / "instances.parquet"), "--images", str(small_dataset / "train"),
                      *labels, "--tuned", str(tmp_path / "postprocess.yaml"), "--metrics", str(tmp_path / "eval.json"),
                      "--val-submission", str(tmp_path / "val.csv"), "--gallery", str(tmp_path / "gallery"))
    assert evaluated.returncode == 0, evaluated.stderr
    report = json.loads((tmp_path / "eval.json").read_text())
    assert {"default_tta", "default_no_tta", "tuned_tta", "tuned_no_tta", "submitted", "per_class",
            "attribute_policies", "attributes"} <= set(report)
    policies = report["attribute_policies"]["all_images"]
    assert set(policies) == {"images", "drop", "category", "full", "tuned"}
    assert policies["tuned"] == pytest.approx(report["submitted"], abs=1e-4)
    assert report["submitted"] == pytest.approx(search["tuned"], abs=1e-4), "evaluate scores what tune chose"
    assert len(list((tmp_path / "gallery").glob("*.png"))) == 2
    val_rows = pd.read_csv(tmp_path / "val.csv", keep_default_na=False)
    val_ids = set(pd.read_csv(tmp_path / "folds.csv").query("fold == 0").ImageId)
    assert set(val_rows.ImageId) == val_ids
    written = stage("submission", *common, "--predictions", str(tmp_path / "predictions" / "test"),
                    "--sample-submission", str(small_dataset / "sample_submission.csv"),
                    "--test-images", str(small_dataset / "test"), *labels,
                    "--tuned", str(tmp_path / "postprocess.yaml"), "--out", str(tmp_path / "submission.csv"))
    assert written.returncode == 0, written.stderr
    checked = stage("validate_submission", str(tmp_path / "submission.csv"), *labels,
                    "--sample-submission", str(small_dataset / "sample_submission.csv"),
                    "--test-images", str(small_dataset / "test"), "--tuned", str(tmp_path / "postprocess.yaml"))
    assert checked.returncode == 0 and "valid" in checked.stdout, checked.stderr
    rows = pd.read_csv(tmp_path / "submission.csv", keep_default_na=False)
    assert set(rows.ImageId) == set(pd.read_csv(small_dataset / "sample_submission.csv").ImageId)


def test_submission_refuses_predictions_that_miss_test_images(small_instances, small_dataset, tmp_path):
    from pipeline import raw_predictions
    from pipeline.detections import Detections
    from pipeline.submission import test_records

    records = test_records(small_dataset / "sample_submission.csv", small_dataset / "test")
    raw_predictions.write(tmp_path / "test", {}, records[:-1], 28, 92, ["x1"],
                          lambda todo: iter([(todo, [Detections.empty(28, 92) for _ in todo])]), 8)
    (tmp_path / "tuned.yaml").write_text(yaml.safe_dump({"postprocess": yaml.safe_load(
        (REPO / "params.yaml").read_text())["postprocess"]}))
    done = stage("submission", "--predictions", str(tmp_path / "test"),
                 "--sample-submission", str(small_dataset / "sample_submission.csv"),
                 "--test-images", str(small_dataset / "test"),
                 "--labels", str(small_dataset / "label_descriptions.json"),
                 "--tuned", str(tmp_path / "tuned.yaml"), "--out", str(tmp_path / "submission.csv"))
    assert done.returncode == 1 and "no predictions for 1 image(s)" in done.stderr
    assert not (tmp_path / "submission.csv").exists()


def project_copy(tmp_path: Path) -> Path:
    """The files git would commit, committed in a fresh git repository: what a clean clone holds."""
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"], cwd=REPO,
                            capture_output=True, text=True, check=True).stdout.split("\0")
    root = tmp_path / "project"
    for name in filter(None, listed):
        if (REPO / name).is_file():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, root / name)
    git = ["git", "-c", "user.name=test", "-c", "user.email=test@example.com"]
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    subprocess.run(["git", "add", "-A"], cwd=root, check=True)
    subprocess.run([*git, "commit", "-q", "-m", "clone"], cwd=root, check=True)
    return root


def dvc(root: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "DVC_NO_ANALYTICS": "1"}
    return subprocess.run([sys.executable, "-m", "dvc", *args], cwd=root, capture_output=True, text=True,
                          timeout=1800, env=env)  # the whole demo: about 8 minutes on 2 free cores


DATA_STAGES = ("download", "prepare", "folds", "cache")


@pytest.mark.slow
def test_dvc_repro_runs_the_whole_default_pipeline_then_has_nothing_to_do(tmp_path):
    root = project_copy(tmp_path)
    assert "analytics = false" in (root / ".dvc" / "config").read_text()
    first = dvc(root, "repro")
    assert first.returncode == 0, first.stdout + first.stderr
    # tune's outputs are committed (tuning/postprocess.yaml, metrics/tune.json): when predict reproduces
    # the committed predictions exactly (the same machine) DVC rightly skips it. Every stage's outputs
    # are checked below, and the second repro finds nothing to do.
    for stage_name in (*DATA_STAGES, "train", "predict", "evaluate", "submission"):
        assert f"Running stage '{stage_name}'" in first.stdout, stage_name
    assert (root / "data" / "raw" / "train.csv").is_file()
    report = json.loads((root / "metrics" / "data_report.json").read_text())
    assert report["problems"]["size_mismatch"]["count"] == 1
    assert sum(p["rows_dropped"] for p in report["problems"].values()) == report["rows"] - report["rows_kept"]
    folds = pd.read_csv(root / "data" / "folds.csv")
    assert folds.ImageId.nunique() == report["images_kept"]
    assert json.loads((root / "metrics" / "cache.json").read_text())["images"] == report["images_kept"]

    metrics = json.loads((root / "dvclive" / "train" / "metrics.json").read_text())
    best = torch.load(root / "models" / "train" / "best.pt", weights_only=True)
    assert metrics["val"]["best_score"] == best["score"]["score"]
    # on the development machine: see README; other CPUs round differently, so leave a margin
    assert best["score"]["mask_ap"] > 0.02, "the demo model learns"
    evaluation = json.loads((root / "metrics" / "evaluate.json").read_text())
    tuned = json.loads((root / "metrics" / "tune.json").read_text())
    assert evaluation["submitted"] > 0.03 and tuned["tuned"] >= tuned["default"]
    checked = subprocess.run([sys.executable, "-m", "stages.validate_submission", "submission.csv"], cwd=root,
                             capture_output=True, text=True, timeout=300)
    assert checked.returncode == 0 and "valid" in checked.stdout, checked.stderr
    shown = dvc(root, "plots", "show", "--json")
    assert shown.returncode == 0, shown.stderr
    for plotted in ("val/mask_ap.tsv", "val/score.tsv", "train/loss.tsv", "evaluation/gallery/00_"):
        assert plotted in shown.stdout, plotted

    lock = yaml.safe_load((root / "dvc.lock").read_text())
    committed = yaml.safe_load((REPO / "dvc.lock").read_text())
    for name in DATA_STAGES:  # trained weights differ across CPUs; the data stages must not
        assert lock["stages"][name] == committed["stages"][name], (
            f"stage {name}: outputs or code differ from the committed dvc.lock: run `make demo`, commit dvc.lock")
    for name in ("train", "predict", "tune", "evaluate"):
        assert lock["stages"][name]["params"] == committed["stages"][name]["params"], name

    second = dvc(root, "repro")
    assert second.returncode == 0, second.stdout + second.stderr
    assert "Running stage" not in second.stdout
    assert "Data and pipelines are up to date" in second.stdout
    assert dvc(root, "status").stdout.strip() == "Data and pipelines are up to date."
