"""The model-family seam: a family registered from outside runs train -> predict -> tune -> evaluate -> submission."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import yaml

from pipeline.config.model import MaskRCNNParams, ModelParams
from pipeline.models.registry import FamilyError, ModelConfig, family, load

from stage_runs import predict_args, run_dirs, training_inputs, with_fake_family


def test_an_unknown_family_names_the_known_ones(tmp_path):
    with pytest.raises(FamilyError, match="model.family is 'solo'; the known families are maskrcnn, unet, yolact"):
        family("solo")
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump({"model": {"family": "maskrcnn", "min_size": 64, "max_size": 96},
                                    "maskrcnn": {"architecture": "maskrcnn_resnet18_fpn"},
                                    "unet": {"encoder": "resnet34"}}))
    config = load(path)
    assert isinstance(config.family, MaskRCNNParams) and config.family.architecture == "maskrcnn_resnet18_fpn"
    key = config.key()
    assert set(key) == {"model", "maskrcnn"}, "the resume and prediction keys hold both sections"
    assert key["model"] == {"family": "maskrcnn", "min_size": 64, "max_size": 96}
    assert key["maskrcnn"]["anchor_sizes"] == (32, 64, 128, 256, 512), "the family's defaults fill its section"
    assert load(path, "unet").key()["model"]["family"] == "unet", "--family picks another family's section"


def test_a_family_is_imported_only_when_used_and_its_code_is_its_package_alone():
    import subprocess
    import sys

    code = ("import sys, stages.train, stages.predict, stages.compare\n"
            "print(sorted(m for m in sys.modules if m.startswith(('pipeline.models.maskrcnn', "
            "'pipeline.models.unet', 'pipeline.models.yolact'))))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "[]", "a stage imports a family only to run it"
    for name in ("maskrcnn", "unet", "yolact"):
        own = [m for m in family(name).code_modules() if m.startswith("pipeline.models.") and
               m.split(".")[2] not in ("contract", "weights", "batching", "registry", "__init__", "anchors",
                                       "batchnorm", "targets")]
        assert own and all(m.startswith(f"pipeline.models.{name}") for m in own), own


def test_a_model_without_the_contract_is_a_clear_error(monkeypatch):
    from torch import nn

    from pipeline.models import registry

    monkeypatch.setitem(registry._FAMILIES, "bare", registry.Family("bare", dict, lambda *args: nn.Linear(1, 1)))
    with pytest.raises(FamilyError, match="family 'bare' built a Linear without the contract's mask_format"):
        ModelConfig(ModelParams(family="bare"), {}).build(47, 92)


def test_a_fake_family_goes_through_every_stage_with_no_change_to_the_pipeline(small_instances, small_dataset,
                                                                                tmp_path):
    params, args = training_inputs(
        tmp_path, small_instances, model={"family": "fake"}, fake={"category": 2, "mask_size": 8},
        train={"epochs": 1}, predict={"scales": [1.0]},
        tune={"score_thresh": [0.3, 0.5], "nms_iou": [0.5], "mask_thresh": [0.5], "min_area": [0],
              "max_detections": [20], "rounds": 1}, evaluate={"gallery_images": 1})
    trained = with_fake_family("train", *args, "--images", str(small_dataset / "train"), "--limit", "4",
                               *run_dirs(tmp_path))
    assert trained.returncode == 0, trained.stderr
    assert "training finished: 1 epochs" in trained.stdout
    resolved = yaml.safe_load((tmp_path / "run" / "params.yaml").read_text())
    assert resolved["fake"] == {"category": 2, "mask_size": 8} and "maskrcnn" not in resolved
    losses = pd.read_csv(tmp_path / "live" / "plots" / "metrics" / "train" / "loss_fake.tsv", sep="\t")
    assert losses.loss_fake.iloc[-1] < losses.loss_fake.iloc[0], "the loop trained the family's weight"

    predicted = with_fake_family("predict", *predict_args(tmp_path, params, small_dataset, tmp_path / "predictions"))
    assert predicted.returncode == 0, predicted.stderr
    manifest = json.loads((tmp_path / "predictions" / "test" / "manifest.json").read_text())
    assert manifest["mask_format"] == {"kind": "crop", "size": 8} and manifest["num_attributes"] == 0

    common = ["--params", str(params), "--labels", str(small_dataset / "label_descriptions.json")]
    val = ["--predictions", str(tmp_path / "predictions" / "val"), "--instances", str(tmp_path / "instances.parquet")]
    tuned = with_fake_family("tune", *common, *val, "--out", str(tmp_path / "postprocess.yaml"),
                             "--metrics", str(tmp_path / "tune.json"))
    assert tuned.returncode == 0, tuned.stderr
    evaluated = with_fake_family("evaluate", *common, *val, "--images", str(small_dataset / "train"),
                                 "--tuned", str(tmp_path / "postprocess.yaml"), "--metrics", str(tmp_path / "e.json"),
                                 "--val-submission", str(tmp_path / "val.csv"), "--gallery", str(tmp_path / "gallery"))
    assert evaluated.returncode == 0, evaluated.stderr
    test = ["--sample-submission", str(small_dataset / "sample_submission.csv"),
            "--test-images", str(small_dataset / "test"), "--tuned", str(tmp_path / "postprocess.yaml")]
    written = with_fake_family("submission", *common, "--predictions", str(tmp_path / "predictions" / "test"), *test,
                               "--out", str(tmp_path / "submission.csv"))
    assert written.returncode == 0, written.stderr
    checked = with_fake_family("validate_submission", str(tmp_path / "submission.csv"), *common[2:], *test)
    assert checked.returncode == 0 and ": valid (" in checked.stdout, checked.stderr
    rows = pd.read_csv(tmp_path / "submission.csv", dtype=str, keep_default_na=False)
    test_ids = set(pd.read_csv(small_dataset / "sample_submission.csv").ImageId)
    assert set(rows.ImageId) == test_ids and set(rows.ClassId) == {"2"}, "one centre instance per test image"
