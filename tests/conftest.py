"""Shared fixtures: a small synthetic dataset in the Kaggle layout, written once per test session."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest

from pipeline.annotations import prepare
from pipeline.labels import load_labels
from pipeline.params import SyntheticParams
from pipeline.synthetic import write_dataset

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
