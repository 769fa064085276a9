"""Instance descriptors for retrieval: the family's own features of an instance, L2-normalised; a dataset's all."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from pipeline.config.shop import FEATURE_KINDS
from pipeline.data.dataset import InstanceDataset, collate
from pipeline.models.contract import DetectionModel, InstanceFeatures
from pipeline.shop.catalogue import META_COLUMNS
from pipeline.utils.device import autocast
from pipeline.utils.errors import PipelineError


class FeaturesError(PipelineError):
    """A model that cannot describe instances."""


def require_features(model: DetectionModel, family: str) -> None:
    if not isinstance(model, InstanceFeatures):
        raise FeaturesError(f"family {family} has no instance features (pipeline.models.contract): build the "
                            "catalogue with a Mask R-CNN run (index.family: maskrcnn)")


@torch.inference_mode()
def embed(model: DetectionModel, images: list[torch.Tensor], boxes: list[torch.Tensor], masks: list[torch.Tensor],
          device: torch.device, precision: str = "fp32") -> dict[str, np.ndarray]:
    """Each kind's (N, D) float32 descriptors, unit length, of the instances of ``images`` (all on the model's input).

    Images are float (3, h, w) in [0, 1]; boxes (n_i, 4) and masks (n_i, h, w) in their pixels.
    An instance whose descriptor is zero (nothing to pool) stays zero.
    """
    model.eval()
    with autocast(device, precision):
        found = model.instance_features([i.to(device) for i in images], [b.to(device).float() for b in boxes],
                                        [m.to(device) for m in masks])
    return {kind: torch.nn.functional.normalize(found[kind].float(), dim=1).cpu().numpy() for kind in FEATURE_KINDS}


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
