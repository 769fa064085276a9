"""Shared fixtures: a small synthetic dataset in the Kaggle layout, written once per test session."""

from __future__ import annotations

import shutil
import socket
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import settings

from pipeline.config.params import SyntheticParams
from pipeline.data.annotations import prepare
from pipeline.data.labels import load_labels
from pipeline.data.synthetic import write_dataset

from stage_runs import run_dirs, stage, training_inputs, user_project

# No per-example time limit: on a loaded 2-core machine Hypothesis's default 200 ms deadline fails tests
# that are correct, only slow for a moment.
settings.register_profile("pipeline", deadline=None)
settings.load_profile("pipeline")


@pytest.fixture
def offline(monkeypatch) -> None:
    """Any attempt to reach the network fails the test."""
    def refuse(*args, **kwargs):
        raise AssertionError(f"network access: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


SMALL = SyntheticParams(seed=7, train_images=24, test_images=5, min_side=128, max_side=224,
                        attribute_rate=0.3, size_defect=True)


@pytest.fixture(scope="session")
def small_params() -> SyntheticParams:
    return SMALL


@pytest.fixture(scope="session")
def small_dataset(tmp_path_factory) -> Path:
    """Read-only use: a synthetic dataset; copy it (``dataset_copy``) before changing it."""
    root = tmp_path_factory.mktemp("small") / "raw"
    write_dataset(root, SMALL)
    return root


@pytest.fixture
def dataset_copy(small_dataset, tmp_path) -> Path:
    target = tmp_path / "raw"
    shutil.copytree(small_dataset, target)
    return target


@pytest.fixture(scope="session")
def small_instances(small_dataset) -> pd.DataFrame:
    """The prepared instance table of ``small_dataset`` (images in ``small_dataset / "train"``)."""
    return prepare(small_dataset / "train.csv", load_labels(), small_dataset / "train").instances


@pytest.fixture(scope="session")
def trained(small_instances, small_dataset, tmp_path_factory) -> Path:
    """A run folder that stage train wrote: two optimizer steps, so ``last.pt`` and no ``best.pt`` yet."""
    root = tmp_path_factory.mktemp("trained")
    _, args = training_inputs(root, small_instances)
    done = stage("train", *args, "--images", str(small_dataset / "train"), "--limit", "8", "--max-steps", "2",
                 *run_dirs(root))
    assert done.returncode == 0, done.stderr
    assert (root / "run" / "last.pt").is_file() and not (root / "run" / "best.pt").exists()
    return root


@pytest.fixture(scope="session")
def project(trained, small_dataset, tmp_path_factory) -> Path:
    """A project folder as ``dvc repro`` leaves it: params, ``models/maskrcnn``, its tuning and its catalogue."""
    return user_project(tmp_path_factory.mktemp("project"), trained, small_dataset / "train")
