"""DVCLive logging: resumed curves and the repositories DVCLive cannot start in."""

from __future__ import annotations

import os
import subprocess
import sys

import pandas as pd
import pytest

from pipeline.training.tracking import open_live
from pipeline.utils.errors import PipelineError


def test_a_resumed_log_drops_the_steps_logged_after_the_checkpoint(tmp_path):
    with open_live(tmp_path / "live", None) as live:
        for step in range(1, 8):
            live.step = step
            live.log_metric("train/loss", 1.0 / step)
            live.make_summary()
    with open_live(tmp_path / "live", 4) as resumed:
        for step in range(5, 9):
            resumed.step = step
            resumed.log_metric("train/loss", 2.0 / step)
            resumed.make_summary()
    history = pd.read_csv(tmp_path / "live" / "plots" / "metrics" / "train" / "loss.tsv", sep="\t")
    assert history.step.tolist() == list(range(1, 9))
    assert history.loss.iloc[4] == pytest.approx(2.0 / 5)


def test_a_git_repository_without_commits_gets_advice_not_a_traceback(tmp_path, monkeypatch):
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    subprocess.run([sys.executable, "-m", "dvc", "init", "-q"], cwd=tmp_path, check=True,
                   env={**os.environ, "DVC_NO_ANALYTICS": "1"})
    monkeypatch.chdir(tmp_path)
    with pytest.raises(PipelineError, match="make a first commit"), open_live(tmp_path / "live", None):
        pass


def test_the_repository_dvclive_opens_is_closed_on_leaving(tmp_path, monkeypatch):
    """DVCLive leaves git's pack files open; garbage collection would warn about them in some later test."""
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "--allow-empty", "-m", "i"],
                   cwd=tmp_path, check=True)
    subprocess.run(["git", "gc", "-q"], cwd=tmp_path, check=True)  # the commit now lives in a pack
    monkeypatch.chdir(tmp_path)
    with open_live(tmp_path / "live", None) as live:
        live.log_metric("x", 1.0)
        repo = live._dvc_repo
    pack_files = [f for f in _open_files() if f.startswith(str(tmp_path.resolve())) and "/objects/pack/" in f]
    assert repo is not None and not pack_files


def _open_files() -> list[str]:
    return [os.readlink(f"/proc/self/fd/{fd}") for fd in os.listdir("/proc/self/fd")
            if os.path.exists(f"/proc/self/fd/{fd}")]
