"""make compare's workspace end to end, on a reduced synthetic set: every family through DVC's foreach stages."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
FAMILIES = yaml.safe_load((REPO / "compare" / "params.yaml").read_text())["compare"]["families"]
#: compare/params.yaml shrunk to minutes: 18 images, one epoch, light UNet, YOLACT and Mask2Former.
REDUCED = {"synthetic": {"train_images": 18, "test_images": 2}, "folds": {"n_folds": 3},
           "compare": {"families": FAMILIES, "train_steps": 1, "inference_images": 2},
           "train": {"epochs": 1}, "predict": {"scales": [1.0]}, "tune": {"rounds": 1},
           "unet": {"decoder_channels": [32, 16, 16, 8, 8]}, "yolact": {"prototypes": 8},
           "mask2former": {"num_queries": 20, "hidden_dim": 64, "train_num_points": 512}}


def make_compare(overrides: Path, workspace: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "DVC_NO_ANALYTICS": "1",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.run([sys.executable, str(REPO / "compare" / "workspace.py"), "--overrides", str(overrides),
                           "--workspace", str(workspace)], cwd=REPO, capture_output=True, text=True, timeout=1500,
                          env=env)


@pytest.mark.slow
def test_make_compare_compares_every_family_and_reruns_only_the_changed_one(tmp_path):
    overrides, workspace = tmp_path / "overrides.yaml", tmp_path / "workspace"
    overrides.write_text(yaml.safe_dump(REDUCED))
    lock = (REPO / "dvc.lock").read_bytes()
    first = make_compare(overrides, workspace)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    for family in FAMILIES:
        for name in ("train", "predict", "tune", "evaluate"):
            assert f"Running stage '{name}@{family}'" in first.stdout, (name, family)
    rows = json.loads((workspace / "reports" / "compare.json").read_text())
    assert list(rows) == FAMILIES
    for family, row in rows.items():
        evaluated = json.loads((workspace / "reports" / family / "evaluate.json").read_text())
        assert row["score"] == pytest.approx(evaluated["submitted"], abs=1e-4), "the tuned score evaluate submitted"
        assert row["val_images"] == evaluated["images"] and row["inference_images_per_second"] > 0
        assert row["fashionpedia"] == {k: evaluated["fashionpedia"][k] for k in ("mask_ap", "ap_iou_f1")}
    assert first.stdout.endswith((workspace / "reports" / "compare.md").read_text())
    assert (REPO / "dvc.lock").read_bytes() == lock, "the project's own pipeline state is left alone"

    REDUCED["unet"]["dice_weight"] = 0.5  # one family's section changes: that family alone reruns
    overrides.write_text(yaml.safe_dump(REDUCED))
    second = make_compare(overrides, workspace)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert "Running stage 'train@unet'" in second.stdout and "Running stage 'compare'" in second.stdout
    for name in ("download", "cache", "train@maskrcnn", "predict@maskrcnn", "evaluate@maskrcnn", "train@yolact",
                 "evaluate@yolact"):
        assert f"Running stage '{name}'" not in second.stdout, name
