"""The DVC stages as users run them: through `python -m stages.<name>` and through `dvc repro`."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

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


@pytest.mark.parametrize("name", ["download", "prepare", "folds"])
def test_each_stage_depends_on_every_module_it_imports(name):
    """Otherwise a change to an imported module would not make `dvc repro` rerun the stage."""
    imported = subprocess.run(
        [sys.executable, "-c", f"import sys, stages.{name}; print(' '.join(sorted(sys.modules)))"],
        cwd=REPO, capture_output=True, text=True, check=True).stdout.split()
    modules = {m.replace(".", "/") + ".py" for m in imported if m.startswith(("pipeline.", "stages."))}
    deps = set(yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"][name]["deps"])
    assert modules - deps == set()


def project_copy(tmp_path: Path) -> Path:
    """The files git would commit, in a fresh git repository: what a clean clone holds."""
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"], cwd=REPO,
                            capture_output=True, text=True, check=True).stdout.split("\0")
    root = tmp_path / "project"
    for name in filter(None, listed):
        if (REPO / name).is_file():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, root / name)
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    return root


def dvc(root: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "DVC_NO_ANALYTICS": "1"}
    return subprocess.run([sys.executable, "-m", "dvc", *args], cwd=root, capture_output=True, text=True,
                          timeout=900, env=env)


@pytest.mark.slow
def test_dvc_repro_runs_the_data_stages_then_has_nothing_to_do(tmp_path):
    root = project_copy(tmp_path)
    assert "analytics = false" in (root / ".dvc" / "config").read_text()
    first = dvc(root, "repro")
    assert first.returncode == 0, first.stdout + first.stderr
    for stage_name in ("download", "prepare", "folds"):
        assert f"Running stage '{stage_name}'" in first.stdout
    assert (root / "data" / "raw" / "train.csv").is_file()
    report = json.loads((root / "metrics" / "data_report.json").read_text())
    assert report["problems"]["size_mismatch"]["count"] == 1
    assert sum(p["rows_dropped"] for p in report["problems"].values()) == report["rows"] - report["rows_kept"]
    folds = pd.read_csv(root / "data" / "folds.csv")
    assert folds.ImageId.nunique() == report["images_kept"]
    lock = (root / "dvc.lock").read_text()
    assert lock == (REPO / "dvc.lock").read_text(), (
        "the pipeline's outputs or code differ from the committed dvc.lock: run `make demo` and commit dvc.lock")

    second = dvc(root, "repro")
    assert second.returncode == 0, second.stdout + second.stderr
    assert "Running stage" not in second.stdout
    assert "Data and pipelines are up to date" in second.stdout
    assert (root / "dvc.lock").read_text() == lock
    assert dvc(root, "status").stdout.strip() == "Data and pipelines are up to date."
