"""Multilabel stratified K folds over images, on per-image category presence."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from iterstrat.ml_stratifiers import MultilabelStratifiedKFold

from pipeline.utils.errors import PipelineError

#: The columns of folds.csv.
FOLD_COLUMNS = ("ImageId", "fold")


class FoldError(PipelineError, ValueError):
    """A fold that does not exist or leaves nothing to train or validate on."""


def category_presence(instances: pd.DataFrame, n_categories: int) -> tuple[np.ndarray, np.ndarray]:
    """Sorted image ids and a (images x categories) boolean matrix: does the image show the category."""
    image_ids, rows = np.unique(instances.image_id.to_numpy(), return_inverse=True)
    presence = np.zeros((image_ids.size, n_categories), dtype=bool)
    presence[rows, instances.category.to_numpy()] = True
    return image_ids, presence


def make_folds(instances: pd.DataFrame, n_categories: int, n_folds: int, seed: int,
               source: str = "the instance table") -> pd.DataFrame:
    """ImageId -> fold (0..n_folds-1); every image in exactly one fold, the same for the same seed."""
    image_ids, presence = category_presence(instances, n_categories)
    if image_ids.size < n_folds:
        raise FoldError(f"{source}: {image_ids.size} image(s) cannot be split into {n_folds} folds "
                        "(folds.n_folds); check stage prepare's report for the rows it dropped")
    splitter = MultilabelStratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    fold = np.empty(image_ids.size, dtype=np.int64)
    for k, (_, held_out) in enumerate(splitter.split(np.zeros((image_ids.size, 1)), presence)):
        fold[held_out] = k
    return pd.DataFrame({FOLD_COLUMNS[0]: image_ids, FOLD_COLUMNS[1]: fold})


def fold_balance(instances: pd.DataFrame, folds: pd.DataFrame, n_categories: int) -> dict:
    """Images per fold, and how far each category's share of a fold's images strays from its global share."""
    image_ids, presence = category_presence(instances, n_categories)
    fold = folds.set_index("ImageId").fold.reindex(image_ids).to_numpy()
    overall = presence.mean(axis=0)
    per_fold = [presence[fold == k].mean(axis=0) for k in range(int(fold.max()) + 1)]
    deviation = np.abs(np.stack(per_fold) - overall)
    return {
        "images_per_fold": [int((fold == k).sum()) for k in range(len(per_fold))],
        "max_category_share_deviation": round(float(deviation.max()), 4),
        "mean_category_share_deviation": round(float(deviation[:, overall > 0].mean()), 4),
    }


def read_folds(path: Path | str) -> pd.DataFrame:
    """``folds.csv`` of stage folds: an ImageId and a whole-number fold per row; a clear error naming the file."""
    path = Path(path)
    try:
        folds = pd.read_csv(path, dtype={"ImageId": str}, keep_default_na=False)
    except FileNotFoundError as exc:
        raise FoldError(f"{path}: not found; run stage folds (dvc repro)") from exc
    except (OSError, ValueError) as exc:  # pandas' parser and decoding errors are ValueErrors
        raise FoldError(f"{path}: cannot read it as a CSV ({exc}); run stage folds again (dvc repro)") from exc
    if list(folds.columns) != list(FOLD_COLUMNS):
        raise FoldError(f"{path}: columns are {list(folds.columns)}, expected {list(FOLD_COLUMNS)}; run stage folds "
                        "again (dvc repro)")
    if not pd.api.types.is_integer_dtype(folds.fold):
        raise FoldError(f"{path}: the fold column holds something other than whole numbers; run stage folds again "
                        "(dvc repro)")
    return folds


def split(folds: pd.DataFrame, fold: int, source: str = "folds.csv") -> tuple[list[str], list[str]]:
    """(train image ids, validation image ids) for held-out ``fold``; an error if either side is empty."""
    known = sorted(int(f) for f in folds.fold.unique())
    held_out = folds.fold == fold
    if not held_out.any() or held_out.all():
        raise FoldError(f"{source}: fold {fold} cannot be held out (the file has folds {known})")
    return sorted(folds.ImageId[~held_out]), sorted(folds.ImageId[held_out])
