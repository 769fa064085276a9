"""Data: the competition's files read and checked, the folds, and the training images as tensors.

Public names, imported on first use (docs/development.md, "Where a change goes").
"""

import lazy_loader

__getattr__, __dir__, __all__ = lazy_loader.attach(
    __name__,
    submod_attrs={
        "labels": ["LabelSet", "ClassId", "load_labels", "BUNDLED_LABELS"],
        "attributes": ["choose", "groups_of", "multi_hot"],
        "rle": ["RLEError", "decode", "encode", "parse"],
        "annotations": ["DataError", "Prepared", "prepare", "read_train_csv", "read_instances", "TRAIN_COLUMNS",
                        "SUBMISSION_COLUMNS"],
        "synthetic": ["write_dataset"],
        "download": ["DownloadError", "find_dataset_root", "link_dataset"],
        "folds": ["FoldError", "make_folds", "fold_balance", "read_folds", "split"],
        "dataset": ["InstanceDataset", "collate", "load_image"],
        "pixels": ["to_rgb"],
        "transforms": ["Augment", "fit_scale", "scaled_size"],
        "sampler": ["EpochSampler"],
        "image_cache": ["CacheSettings", "build_cache"],
    },
)
