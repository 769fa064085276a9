"""Stratified folds: a partition, balanced per category within a stated tolerance, reproducible."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipeline.data.folds import category_presence, fold_balance, make_folds
from pipeline.data.synthetic import annotation_rows

N_CATEGORIES = 46


@pytest.fixture(scope="module")
def instances() -> pd.DataFrame:
    """600 synthetic images' instances (annotations only, no pixels painted)."""
    rows = [(r[0], int(r[4].split("_")[0])) for i in range(600) for r in annotation_rows(5, i, 96, 128, 0.2)]
    return pd.DataFrame(rows, columns=["image_id", "category"])


def test_every_image_in_exactly_one_fold(instances):
    folds = make_folds(instances, N_CATEGORIES, 5, seed=0)
    assert list(folds.columns) == ["ImageId", "fold"]
    assert folds.ImageId.is_unique
    assert set(folds.ImageId) == set(instances.image_id)
    assert set(folds.fold) == set(range(5))
    sizes = folds.fold.value_counts()
    assert sizes.max() - sizes.min() <= 0.1 * len(folds) / 5


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_category_shares_per_fold_within_tolerance(instances, seed):
    """Tolerance: each category's share of a fold's images is within 0.08 of its share of all images,
    and on average within 0.015 (a random split of these 600 images averages about 0.025)."""
    folds = make_folds(instances, N_CATEGORIES, 5, seed=seed)
    balance = fold_balance(instances, folds, N_CATEGORIES)
    assert balance["max_category_share_deviation"] <= 0.08
    assert balance["mean_category_share_deviation"] <= 0.015
    random = folds.assign(fold=np.random.default_rng(seed).permutation(np.arange(len(folds)) % 5))
    assert balance["mean_category_share_deviation"] < 0.6 * fold_balance(
        instances, random, N_CATEGORIES)["mean_category_share_deviation"]


def test_rarest_category_spread_evenly_over_folds(instances):
    image_ids, presence = category_presence(instances, N_CATEGORIES)
    counts = np.where(presence.sum(axis=0) > 0, presence.sum(axis=0), np.iinfo(np.int64).max)
    rare = int(counts.argmin())
    folds = make_folds(instances, N_CATEGORIES, 5, seed=0).set_index("ImageId").fold
    per_fold = np.bincount(folds.loc[image_ids[presence[:, rare]]], minlength=5)
    assert per_fold.max() - per_fold.min() <= 1


def test_same_seed_same_folds_other_seed_other_folds(instances):
    first = make_folds(instances, N_CATEGORIES, 5, seed=3)
    shuffled = instances.sample(frac=1.0, random_state=1)
    assert first.equals(make_folds(shuffled, N_CATEGORIES, 5, seed=3)), "row order must not matter"
    assert not first.equals(make_folds(instances, N_CATEGORIES, 5, seed=4))


def test_too_few_images_is_a_clear_error(instances):
    few = instances[instances.image_id.isin(instances.image_id.unique()[:3])]
    with pytest.raises(ValueError, match="3 image"):
        make_folds(few, N_CATEGORIES, 5, seed=0)
