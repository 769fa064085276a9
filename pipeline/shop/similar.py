"""Similar items of a photo's items: each item described as the catalogue was, searched within its category."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torchvision.transforms.v2 import functional as F

from pipeline.data.labels import LabelSet
from pipeline.data.pixels import to_rgb
from pipeline.data.transforms import fit_scale, scaled_size
from pipeline.inference.masks import resize_nearest
from pipeline.inference.predict import Inference
from pipeline.shop.catalogue import Catalogue, CatalogueError
from pipeline.shop.features import embed
from pipeline.shop.photos import DECODE_ERRORS, PHOTO_FORMATS
from pipeline.shop.render import names, tile
from pipeline.shop.segment import Item, Photo
from pipeline.utils.paths import inside


def item_vectors(inference: Inference, photo: Photo, items: Sequence[Item], kind: str) -> np.ndarray:
    """The ``kind`` descriptors of the items, from the photo at the model's fitted size (as the catalogue's were)."""
    sizes = inference.model_params
    size = scaled_size(photo.height, photo.width, fit_scale(photo.height, photo.width, sizes.min_size, sizes.max_size))
    image = F.to_dtype(F.resize(photo.pixels, list(size), antialias=True), torch.float32, scale=True)
    factors = torch.tensor([size[1] / photo.width, size[0] / photo.height] * 2)
    boxes = torch.tensor([item.box for item in items], dtype=torch.float32).reshape(-1, 4) * factors
    masks = torch.from_numpy(np.stack([resize_nearest(item.mask, size) for item in items]).astype(np.uint8)
                             if items else np.zeros((0, *size), np.uint8))
    return embed(inference.model, [image], [boxes], [masks], inference.device, inference.precision)[kind]


def similar_items(catalogue: Catalogue, vectors: np.ndarray, items: Sequence[Item], k: int,
                  labels: LabelSet) -> list[list[dict]]:
    """For each item, up to ``k`` catalogue items of its category, most similar first, with their labels."""
    found = []
    for vector, item in zip(vectors, items, strict=True):
        hits = catalogue.search(vector[None], k, category=item.category)[0]
        rows = catalogue.items.iloc[[i for i, _ in hits]]
        found.append([_result(row, similarity, labels) for row, (_, similarity) in zip(rows.itertuples(), hits,
                                                                                          strict=True)])
    return found


def _result(row, similarity: float, labels: LabelSet) -> dict:
    """One catalogue item found: where it is, its ClassId and the names beside the ids."""
    category, attributes = int(row.category), [int(a) for a in row.attributes]
    return {"image_id": row.image_id, "box": [round(float(v), 1) for v in (row.x0, row.y0, row.x1, row.y1)],
            "class_id": labels.format(labels.make(category, attributes)),
            "category": labels.category_name(category), "attributes": [labels.attributes[a].name for a in attributes],
            "similarity": round(similarity, 4)}


def sheet_rows(photo_image: Image.Image, photo: Photo, items: Sequence[Item], results: Sequence[Sequence[dict]],
               image_dir: Path, labels: LabelSet) -> list[list[Image.Image]]:
    """Contact-sheet tiles: per item, its crop from the photo, then each result's crop from its catalogue image."""
    to_grid = np.array([photo_image.width / photo.width, photo_image.height / photo.height] * 2)
    rows = []
    for item, found in zip(items, results, strict=True):
        row = [tile(photo_image, np.array(item.box) * to_grid, names(item, labels))]
        for result in found:
            name, details = labels.short_names(labels.parse(result["class_id"]))
            caption = (f"{name} sim {result['similarity']:.2f}", details)
            path = inside(image_dir, result["image_id"], "image_id of the catalogue")
            try:
                with Image.open(path, formats=PHOTO_FORMATS) as image:
                    row.append(tile(to_rgb(image), result["box"], caption))
            except DECODE_ERRORS as exc:  # moved, deleted or replaced since stage index ran
                why = getattr(exc, "strerror", None) or exc
                raise CatalogueError(f"{path}: a catalogue image cannot be read ({why}); "
                                     "rebuild the catalogue where its images are: dvc repro index") from exc
        rows.append(row)
    return rows
