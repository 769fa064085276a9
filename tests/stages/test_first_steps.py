"""A new user's first steps: quick --help, inputs missing named with the stage that makes them, photos by folder
or pattern, a mistyped run folder answered with the runs that exist."""

from __future__ import annotations

import subprocess
import sys
from argparse import Namespace
from pathlib import Path

import pytest

from pipeline.inference.trained import checkpoint_path
from pipeline.shop.photos import photo_paths
from pipeline.utils.checkpoint import CheckpointError
from pipeline.utils.errors import PipelineError
from stages._cli import require_inputs

REPO = Path(__file__).resolve().parents[2]
ENTRY_POINTS = sorted([f"stages.{p.stem}" for p in (REPO / "stages").glob("[a-z]*.py")] + ["kaggle_kernel.build"])
_HELP = """
import contextlib, io, runpy, sys
for name in sys.argv[1:]:
    sys.argv = [name, "--help"]
    with contextlib.redirect_stdout(io.StringIO()) as out, contextlib.suppress(SystemExit):
        runpy.run_module(name, run_name="__main__")
    assert "usage:" in out.getvalue(), name
    print(name, "torch" in sys.modules)
"""


def test_every_entry_point_answers_help_without_importing_torch():
    done = subprocess.run([sys.executable, "-c", _HELP, *ENTRY_POINTS], cwd=REPO, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    answered = dict(line.split() for line in done.stdout.splitlines())
    assert answered == {name: "False" for name in ENTRY_POINTS}


def test_a_missing_input_names_the_stage_that_makes_it(tmp_path):
    args = Namespace(raw=tmp_path / "raw", instances=tmp_path)
    with pytest.raises(PipelineError, match=r"raw \(--raw\) does not exist: run stage download first"):
        require_inputs(args, {"instances": "prepare", "raw": "download"})
    require_inputs(Namespace(raw=tmp_path), {"raw": "download"})


def test_prepare_before_download_says_to_run_download(tmp_path):
    done = subprocess.run([sys.executable, "-m", "stages.prepare", "--raw", str(tmp_path / "raw"), "--out",
                           str(tmp_path / "t.parquet"), "--report", str(tmp_path / "r.json")], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert done.stderr.strip() == (f"error: {tmp_path / 'raw'} (--raw) does not exist: run stage download first "
                                   "(dvc repro download)")


def test_photos_come_from_files_folders_and_patterns_in_order(tmp_path):
    for name in ("b.jpg", "a.PNG", "c.txt", "d.jpeg"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "sub").mkdir()
    assert photo_paths([str(tmp_path)]) == [tmp_path / "a.PNG", tmp_path / "b.jpg", tmp_path / "d.jpeg"]
    assert photo_paths([str(tmp_path / "*.jp*g"), str(tmp_path / "c.txt")]) == [
        tmp_path / "b.jpg", tmp_path / "d.jpeg", tmp_path / "c.txt"]
    with pytest.raises(PipelineError, match="a folder with no images"):
        photo_paths([str(tmp_path / "sub")])
    with pytest.raises(PipelineError, match="no file matches this pattern"):
        photo_paths([str(tmp_path / "*.webp")])


def test_a_mistyped_run_folder_lists_the_runs_that_exist(tmp_path):
    for run, checkpoint in (("maskrcnn", "best.pt"), ("unet", "last.pt"), ("empty", None)):
        (tmp_path / run).mkdir()
        if checkpoint:
            (tmp_path / run / checkpoint).write_bytes(b"")
    with pytest.raises(CheckpointError) as raised:
        checkpoint_path(tmp_path / "maskrnn", "best")
    assert f"the runs in {tmp_path} are: {tmp_path / 'maskrcnn'}, {tmp_path / 'unet'}); check --run-dir" in str(
        raised.value)
    with pytest.raises(CheckpointError, match="holds no training run"):
        checkpoint_path(tmp_path / "empty" / "x", "best")
