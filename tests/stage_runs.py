"""Running stages as ``dvc.yaml`` runs them, for the tests: the command line, params files, tiny training."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import yaml

from pipeline.data.folds import make_folds

from model_configs import TINY_UNET, TINY_YOLACT

REPO = Path(__file__).resolve().parents[1]
LABELS = REPO / "pipeline" / "data" / "label_descriptions.json"


def stage(name: str, *args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", f"stages.{name}", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(REPO)})


def with_fake_family(name: str, *args: str) -> subprocess.CompletedProcess:
    """A stage run with the model family of ``tests/fake_family.py`` registered, as a plugin would register it."""
    return subprocess.run([sys.executable, str(REPO / "tests" / "fake_family.py"), "-m", f"stages.{name}", *args],
                          cwd=REPO, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(REPO)})


def hooked(hook: str, value: str, name: str, *args: str) -> subprocess.CompletedProcess:
    """A stage run with a hook of ``tests/hooked_stage.py``: killed at an exact point, or its work counted."""
    return subprocess.run([sys.executable, str(REPO / "tests" / "hooked_stage.py"), hook, value, "-m",
                           f"stages.{name}", *args], cwd=REPO, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(REPO)})


def offline_stage(name: str, *args: str) -> subprocess.CompletedProcess:
    """A stage run that reaches no network (``tests/offline_stage.py``): an attempt ends it with status 86."""
    return subprocess.run([sys.executable, str(REPO / "tests" / "offline_stage.py"), "-m", f"stages.{name}", *args],
                          cwd=REPO, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(REPO)})


def params_file(tmp_path: Path, **changes: dict) -> Path:
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    for section, values in changes.items():
        params.setdefault(section, {}).update(values)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


TINY_TRAINING = {
    "model": {"min_size": 64, "max_size": 96},
    "maskrcnn": {"anchor_sizes": [8, 16, 32, 64, 128], "rpn_post_nms_top_n_train": 100,
                 "box_batch_size_per_image": 32, "rpn_pre_nms_top_n_test": 100, "rpn_post_nms_top_n_test": 100},
    "train": {"epochs": 2, "batch_size": 2, "checkpoint_every": 1, "log_every": 1, "warmup_steps": 2},
}


#: The UNet's part of a seconds-long run (``training_inputs(..., **TINY_UNET_TRAINING)``): model_configs' tiny UNet.
def _as_params(values: dict) -> dict:
    return {key: list(value) if isinstance(value, tuple) else value for key, value in values.items()}


TINY_UNET_TRAINING = {"unet": _as_params(TINY_UNET)}
#: YOLACT's part of such a run: model_configs' tiny YOLACT.
TINY_YOLACT_TRAINING = {"yolact": _as_params(TINY_YOLACT)}


def training_inputs(tmp_path: Path, instances: pd.DataFrame, **changes: dict) -> tuple[Path, list[str]]:
    """A params file for a seconds-long training run, and the stage arguments other than the run folders."""
    instances.to_parquet(tmp_path / "instances.parquet")
    make_folds(instances, 46, 4, 0).to_csv(tmp_path / "folds.csv", index=False)
    sections = {name: {**TINY_TRAINING.get(name, {}), **changes.get(name, {})} for name in {*TINY_TRAINING, *changes}}
    params = params_file(tmp_path, **sections)
    labels = REPO / "pipeline" / "data" / "label_descriptions.json"
    return params, ["--params", str(params), "--instances", str(tmp_path / "instances.parquet"),
                    "--folds", str(tmp_path / "folds.csv"), "--labels", str(labels)]


def run_dirs(root: Path) -> list[str]:
    return ["--run-dir", str(root / "run"), "--live-dir", str(root / "live")]


def predict_args(root: Path, params: Path, small_dataset: Path, out: Path) -> list[str]:
    return ["--params", str(params), "--run-dir", str(root / "run"), "--instances", str(root / "instances.parquet"),
            "--folds", str(root / "folds.csv"), "--train-images", str(small_dataset / "train"),
            "--sample-submission", str(small_dataset / "sample_submission.csv"),
            "--test-images", str(small_dataset / "test"), "--labels", str(small_dataset / "label_descriptions.json"),
            "--out", str(out)]


def user_project(root: Path, trained: Path, images: Path) -> Path:
    """``root`` laid out as a project after ``dvc repro``: ``params.yaml``, ``models/maskrcnn`` (``trained``'s run),
    ``tuning/maskrcnn/postprocess.yaml`` and ``index/`` (built by stage index from ``images``). Every threshold is
    0: the run has trained for two steps and scores little."""
    from pipeline.config.inference import PostprocessParams
    from pipeline.config.tuned import Tuned

    params = yaml.safe_load((trained / "params.yaml").read_text())
    params["maskrcnn"]["box_score_thresh"] = 0.0
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    shutil.copytree(trained / "run", root / "models" / "maskrcnn")
    postprocess = PostprocessParams.model_validate({**params["postprocess"], "score_thresh": 0.0,
                                                    "max_detections": 8})
    (root / "tuning" / "maskrcnn").mkdir(parents=True)
    (root / "tuning" / "maskrcnn" / "postprocess.yaml").write_text(Tuned("maskrcnn", postprocess).text())
    done = stage("index", "--params", str(root / "params.yaml"), "--run-dir", str(root / "models" / "maskrcnn"),
                 "--instances", str(trained / "instances.parquet"), "--images", str(images),
                 "--folds", str(trained / "folds.csv"), "--labels", str(LABELS), "--out", str(root / "index"),
                 "--metrics", str(root / "retrieval.json"), "--report", str(root / "retrieval-report.json"))
    assert done.returncode == 0, done.stderr
    return root
