"""Interrupted and starved stages: killed at an exact point (SIGKILL), or out of disk, then run again."""

from __future__ import annotations

import json
import re
import signal
import sys
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
import torch

from pipeline.inference import store
from pipeline.utils import checkpoint

from small_disk import needs_tmpfs, on_small_disk
from stage_runs import hooked, predict_args, run_dirs, stage, training_inputs


def dvclive_rows(live: Path) -> dict[str, list]:
    """Every curve DVCLive wrote (but the measured images/s), as lists of (step, value)."""
    curves = {}
    for path in sorted((live / "plots" / "metrics").rglob("*.tsv")):
        if path.name != "images_per_second.tsv":
            table = pd.read_csv(path, sep="\t")
            curves[str(path.relative_to(live))] = table.to_numpy().tolist()
    return curves


@pytest.mark.slow
def test_a_killed_training_run_resumes_to_the_uninterrupted_result(small_instances, small_dataset, tmp_path):
    """Killed (SIGKILL) right after the checkpoint of step 3, mid-epoch and mid-way between two DVCLive rows."""
    params, args = training_inputs(tmp_path, small_instances, train={"log_every": 2})
    args += ["--images", str(small_dataset / "train"), "--limit", "8"]
    whole = stage("train", *args, *run_dirs(tmp_path / "whole"))
    assert whole.returncode == 0, whole.stderr
    cut = tmp_path / "cut"
    killed = hooked("kill-after-checkpoint", "3", "train", *args, *run_dirs(cut))
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert checkpoint.load(cut / "run" / "last.pt")["state"]["step"] == 3
    resumed = stage("train", *args, *run_dirs(cut))
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming" in resumed.stderr and "step 3" in resumed.stderr
    expected = checkpoint.load(tmp_path / "whole" / "run" / "last.pt")
    got = checkpoint.load(cut / "run" / "last.pt")
    timing = {"val_seconds"}  # a measured duration, not a result
    assert {k: v for k, v in got["state"].items() if k not in timing} == \
        {k: v for k, v in expected["state"].items() if k not in timing}
    assert all(torch.equal(expected["model"][k], got["model"][k]) for k in expected["model"])
    whole_rows, cut_rows = dvclive_rows(tmp_path / "whole" / "live"), dvclive_rows(cut / "live")
    assert [step for step, _ in cut_rows["plots/metrics/train/loss.tsv"]] == [2, 4, 6, 8], "no gaps or repeats"
    assert cut_rows == whole_rows, "the row after the resume (step 4) covers steps 3 and 4, as uninterrupted"
    assert json.loads((cut / "live" / "metrics.json").read_text())["train"]["instances_dropped"] == \
        json.loads((tmp_path / "whole" / "live" / "metrics.json").read_text())["train"]["instances_dropped"]


AFTER_THE_STAGE = """
import subprocess, sys
from pathlib import Path
from pipeline.utils import checkpoint
run_dir = Path(sys.argv[1])
done = subprocess.run([sys.executable, "-m", "stages.train", *sys.argv[2:]], capture_output=True, text=True)
print("exit:", done.returncode)
print("said:", done.stderr.strip().splitlines()[-1])
print("traceback:", "Traceback" in done.stderr)
print("kept step:", checkpoint.load(run_dir / "last.pt")["state"]["step"])
print("files:", sorted(p.name for p in run_dir.iterdir()))
"""


@needs_tmpfs
def test_a_disk_full_at_a_checkpoint_says_so_and_keeps_the_previous_one(small_instances, small_dataset, tmp_path):
    """The tiny model's last.pt is about 350 MB (weights and AdamW's two moments): a 500 MB disk holds one
    checkpoint but not a second beside it, so the save of step 2 fails and step 1's must survive."""
    _, args = training_inputs(tmp_path, small_instances)
    disk = tmp_path / "disk"
    disk.mkdir()
    done = on_small_disk(disk, 500, sys.executable, "-c", AFTER_THE_STAGE, str(disk / "run"), *args, "--images",
                         str(small_dataset / "train"), "--limit", "8", "--max-steps", "3",
                         "--run-dir", str(disk / "run"), "--live-dir", str(tmp_path / "live"))
    assert done.returncode == 0, done.stderr
    said = dict(line.split(": ", 1) for line in done.stdout.splitlines())
    assert said["exit"] == "1" and said["traceback"] == "False", done.stdout
    assert re.fullmatch(rf"error: no space left on device while writing {disk}/run/last.pt "
                        r"\(3\d\d\.\d MB needed, \d+\.\d MB free\)", said["said"]), said["said"]
    assert said["kept step"] == "1", "the previous checkpoint is intact"
    assert said["files"] == "['last.pt', 'params.yaml']", "no temporary is left behind"


def test_predict_killed_on_the_test_set_resumes_without_predicting_finished_parts(trained, small_instances,
                                                                                   small_dataset, tmp_path):
    """Through the stage and the key it really builds (ModelSpec's tuples included)."""
    params, _ = training_inputs(tmp_path, small_instances, predict={"part_size": 2, "scales": [1.0], "hflip": False})
    n_val = pd.read_csv(trained / "folds.csv").query("fold == 0").shape[0]
    n_test = len(pd.read_csv(small_dataset / "sample_submission.csv"))
    whole = stage("predict", *predict_args(trained, params, small_dataset, tmp_path / "whole"))
    assert whole.returncode == 0, whole.stderr
    cut = tmp_path / "cut"
    killed = hooked("kill-after-part", "test", "predict", *predict_args(trained, params, small_dataset, cut))
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert (cut / "val" / "manifest.json").is_file() and len(list((cut / "test" / "parts").glob("*.json"))) == 2
    resumed = hooked("count-predictions", "-", "predict", *predict_args(trained, params, small_dataset, cut))
    assert resumed.returncode == 0, resumed.stderr
    assert f"predicted images: {n_test - 2}" in resumed.stdout, "val and the finished test part are not redone"
    assert f"resuming, 2 of {n_test} images already predicted" in resumed.stderr
    assert f"up to date ({n_val} images), nothing to predict" in resumed.stderr
    for split in ("val", "test"):
        a, b = (store.read(folder / split) for folder in (tmp_path / "whole", cut))
        assert a.images == b.images and a.manifest == b.manifest
        assert pq.read_table(a.folder / store.DETECTIONS).equals(pq.read_table(b.folder / store.DETECTIONS))
    again = hooked("count-predictions", "-", "predict", *predict_args(trained, params, small_dataset, cut))
    assert again.returncode == 0 and "predicted images: 0" in again.stdout and "part files: {}" in again.stdout
