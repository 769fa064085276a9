"""Stage compare from two small families' finished runs; the UNet's training metrics that feed it."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from pipeline.comparison.table import markdown

from stage_runs import TINY_UNET_TRAINING, TINY_YOLACT_TRAINING, stage, training_inputs

FAMILIES = ("maskrcnn", "unet", "yolact")
FIELDS = {"family", "score", "score_ci95", "val_images", "mask_ap", "best_epoch", "attributes",
          "train_images_per_second", "inference_images_per_second", "parameters", "peak_memory_mb", "device"}


@pytest.fixture(scope="module")
def finished(small_instances, small_dataset, tmp_path_factory) -> tuple[Path, Path, list[str]]:
    """Both families trained one epoch on 8 images into models/<family>, and an evaluation folder each."""
    root = tmp_path_factory.mktemp("compare")
    params, args = training_inputs(root, small_instances, train={"epochs": 1},
                                   compare={"families": list(FAMILIES), "train_steps": 1, "inference_images": 2},
                                   **TINY_UNET_TRAINING, **TINY_YOLACT_TRAINING)
    for family in FAMILIES:
        done = stage("train", *args, "--family", family, "--images", str(small_dataset / "train"), "--limit", "8",
                     "--run-dir", str(root / "models" / family), "--live-dir", str(root / "dvclive" / family))
        assert done.returncode == 0, done.stderr
        scores = pd.DataFrame({"ImageId": ["a.jpg", "b.jpg", "c.jpg"], "score": [0.0, 0.5, 1.0]})
        (root / "evaluation" / family).mkdir(parents=True)
        scores.to_csv(root / "evaluation" / family / "image_scores.csv", index=False)
    compare_args = [*args, "--models", str(root / "models"), "--evaluation", str(root / "evaluation"),
                    "--images", str(small_dataset / "train"), "--out", str(root / "compare.json"),
                    "--table", str(root / "compare.md"), "--chart", str(root / "compare.png")]
    return root, params, compare_args


def test_the_unet_logs_losses_pixel_accuracy_and_mean_iou_on_train_and_validation(finished):
    root, _, _ = finished
    logged = json.loads((root / "dvclive" / "unet" / "metrics.json").read_text())
    assert {"loss_ce", "loss_dice", "loss", "pixel_accuracy", "mean_iou"} <= set(logged["train"])
    assert {"score", "mask_ap", "pixel_accuracy", "mean_iou"} <= set(logged["val"])
    assert all(0 <= logged[split][key] <= 1 for split in ("train", "val") for key in ("pixel_accuracy", "mean_iou"))
    detector = json.loads((root / "dvclive" / "maskrcnn" / "metrics.json").read_text())
    assert "pixel_accuracy" not in detector["val"], "an instance family has no semantic map to score"


def test_compare_writes_every_field_for_every_family(finished):
    root, _, args = finished
    done = stage("compare", *args)
    assert done.returncode == 0, done.stderr
    rows = json.loads((root / "compare.json").read_text())
    assert list(rows) == list(FAMILIES)
    for family, row in rows.items():
        assert set(row) >= FIELDS, FIELDS - set(row)
        assert row["family"] == family and row["score"] == pytest.approx(0.5) and row["val_images"] == 3
        low, high = row["score_ci95"]
        assert 0 <= low < 0.5 < high <= 1
        assert row["train_images_per_second"] > 0 and row["inference_images_per_second"] > 0
        assert row["parameters"] > 1e6 and row["peak_memory_mb"] > 100 and row["device"] == "cpu"
    assert rows["maskrcnn"]["attributes"] and not rows["unet"]["attributes"] and rows["yolact"]["attributes"]
    assert set(rows["unet"]["pixel_accuracy"]) == {"train", "val"} and "pixel_accuracy" not in rows["maskrcnn"]
    assert "pixel_accuracy" not in rows["yolact"]
    assert (root / "compare.md").read_text() == markdown(rows) == done.stdout
    assert (root / "compare.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_family_without_outputs_is_a_clear_error(finished, tmp_path):
    root, params, args = finished
    missing = tmp_path / "evaluation"
    (missing / "maskrcnn").mkdir(parents=True)
    (missing / "maskrcnn" / "image_scores.csv").write_bytes((root / "evaluation" / "maskrcnn" /
                                                             "image_scores.csv").read_bytes())
    at = args.index("--evaluation")
    done = stage("compare", *args[:at + 1], str(missing), *args[at + 2:])
    assert done.returncode == 1
    assert done.stderr.strip() == (f"error: {missing / 'unet' / 'image_scores.csv'}: missing: family 'unet' has not "
                                   "been evaluated (dvc repro evaluate@unet, or add it to compare.families)")


def test_a_run_stopped_before_its_first_validation_is_compared_from_its_last_checkpoint(finished, tmp_path):
    """A Kaggle session out of time in its first epoch has only last.pt, and stage predict used it."""
    root, _, args = finished
    models = tmp_path / "models"
    for family in FAMILIES:
        (models / family).mkdir(parents=True)
        (models / family / "last.pt").write_bytes((root / "models" / family / "last.pt").read_bytes())
    (models / "unet" / "best.pt").write_bytes((root / "models" / "unet" / "best.pt").read_bytes())
    at = args.index("--models")
    done = stage("compare", *args[:at + 1], str(models), *args[at + 2:])
    assert done.returncode == 0, done.stderr
    assert f"{models / 'maskrcnn' / 'best.pt'} does not exist yet" in done.stdout
    rows = json.loads((root / "compare.json").read_text())
    assert rows["maskrcnn"]["best_epoch"] is None and rows["maskrcnn"]["mask_ap"] is None
    assert rows["maskrcnn"]["inference_images_per_second"] > 0 and rows["unet"]["best_epoch"] == 1
    assert "| maskrcnn | 0.500 (" in done.stdout and "| – |" in done.stdout
    (models / "maskrcnn" / "last.pt").unlink()
    missing = stage("compare", *args[:at + 1], str(models), *args[at + 2:])
    assert missing.returncode == 1 and missing.stderr.strip() == (
        f"error: {models / 'maskrcnn' / 'best.pt'}: missing: family 'maskrcnn' has not been trained "
        "(dvc repro train@maskrcnn, or add it to compare.families)")


def test_the_submission_family_must_be_compared(finished, tmp_path):
    _, params, args = finished
    other = tmp_path / "params.yaml"
    other.write_text(params.read_text().replace("family: maskrcnn", "family: fake"))
    at = args.index("--params")
    done = stage("compare", *args[:at + 1], str(other), *args[at + 2:])
    assert done.returncode == 1 and "model.family 'fake' (the submission's) is not in compare.families" in done.stderr
