"""Bring the competition data into the Kaggle layout at one path: generate, download, or link in place."""

from __future__ import annotations

import os
from pathlib import Path

from pipeline.utils.errors import PipelineError
from pipeline.utils.io import atomic_path

#: What the Kaggle download holds, and so what every source must provide.
DATASET_ENTRIES = ("train", "test", "train.csv", "label_descriptions.json", "sample_submission.csv")


class DownloadError(PipelineError):
    """The data cannot be found, fetched or unpacked."""


def check_layout(root: Path) -> None:
    missing = [name for name in DATASET_ENTRIES if not (root / name).exists()]
    if missing:
        raise DownloadError(f"{root}: missing {', '.join(missing)} (expected {', '.join(DATASET_ENTRIES)})")


def find_dataset_root(search_root: Path | str) -> Path:
    """The one folder under ``search_root`` that holds both train.csv and label_descriptions.json.

    Searches rather than trusting one path: the mount point of competition data inside
    Kaggle notebooks has changed over the years. Does not descend into a found dataset.
    """
    search_root = Path(search_root)
    if not search_root.is_dir():
        raise DownloadError(f"{search_root}: not a folder; set data.search_root in params.yaml")
    found = []
    for folder, subfolders, files in os.walk(search_root, followlinks=True):
        if "train.csv" in files and "label_descriptions.json" in files:
            found.append(Path(folder))
            subfolders.clear()
        else:
            subfolders.sort()
    if not found:
        raise DownloadError(f"no folder under {search_root} holds both train.csv and label_descriptions.json")
    if len(found) > 1:
        raise DownloadError(f"several datasets under {search_root}: {', '.join(map(str, found))}; "
                            "set data.search_root to the one to use")
    return found[0]


def link_dataset(root: Path, out: Path) -> None:
    """Make ``out`` a folder of links to the dataset's entries: read in place, gigabytes not copied."""
    check_layout(root)
    with atomic_path(out) as tmp:
        tmp.mkdir()
        for name in DATASET_ENTRIES:
            (tmp / name).symlink_to((root / name).resolve())
