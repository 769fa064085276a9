"""The catalogue's descriptors: every true instance of a set of images, embedded by the trained model."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from pipeline.config.shop import FEATURE_KINDS
from pipeline.data.dataset import InstanceDataset, collate
from pipeline.models.contract import DetectionModel
from pipeline.shop.features import embed

#: One row per instance: its image, box in that image's pixels (as stored), category and attributes.
META_COLUMNS = ("image_id", "x0", "y0", "x1", "y1", "category", "attributes")


def embed_instances(model: DetectionModel, dataset: InstanceDataset, batch_size: int, workers: int,
                    device: torch.device, precision: str, description: str,
                    ) -> tuple[dict[str, np.ndarray], pd.DataFrame]:
    """Descriptors of every instance of ``dataset`` (no augmentation), and their metadata in the same order.

    Boxes are given in the pixels of the dataset's stored image (its ``height`` x ``width``),
    not of the model's input; instances empty at the model's size are left out, as training
    leaves them out, and counted in the dataset's meta.
    """
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=workers, collate_fn=collate)
    vectors: dict[str, list[np.ndarray]] = {kind: [] for kind in FEATURE_KINDS}
    rows = []
    sizes = {item.image_id: (item.height, item.width) for item in dataset.images}
    for images, targets, metas in tqdm(loader, desc=description, unit="batch"):
        found = embed(model, images, [t["boxes"] for t in targets], [t["masks"] for t in targets], device, precision)
        for kind in FEATURE_KINDS:
            vectors[kind].append(found[kind])
        for image, target, meta in zip(images, targets, metas, strict=True):
            height, width = sizes[meta["image_id"]]
            factors = torch.tensor([width / image.shape[-1], height / image.shape[-2]] * 2)
            for box, label, attributes in zip(target["boxes"] * factors, target["labels"], target["attributes"],
                                              strict=True):
                rows.append((meta["image_id"], *box.tolist(), int(label) - 1,
                             [int(a) for a in np.flatnonzero(attributes.numpy())]))
    stacked = {kind: np.concatenate(parts) if parts else np.zeros((0, 0), np.float32)
               for kind, parts in vectors.items()}
    return stacked, pd.DataFrame(rows, columns=list(META_COLUMNS))
