"""The Python API's model and what it returns for a photo: items with names, the overlay, the JSON, similar items."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import overload

import numpy as np
from PIL import Image

from pipeline.data.labels import LabelSet
from pipeline.models.registry import ModelConfig
from pipeline.shop.build import catalogue_key
from pipeline.shop.catalogue import Catalogue, load_catalogue
from pipeline.shop.features import require_features
from pipeline.shop.photos import names_many, photo_paths
from pipeline.shop.render import contact_sheet, items_json, overlay
from pipeline.shop.segment import Item, Photo, PhotoSource, Segmenter, photo_on_grid
from pipeline.shop.similar import item_vectors, sheet_rows, similar_items


@dataclass(frozen=True)
class FoundItem:
    """One item of a photo, named: category and attribute names beside their label ids."""

    category: str
    category_id: int
    attributes: tuple[str, ...]
    attribute_ids: tuple[int, ...]
    score: float
    box: tuple[float, float, float, float]  # x0, y0, x1, y1 in the photo's pixels
    mask: np.ndarray  # bool (grid height, grid width): the photo's size, or scaled to segment.max_side


@dataclass
class Result:
    """A photo's items, best first, as stage segment writes them."""

    photo: Photo
    found: list[Item]  # the items as the pipeline holds them (label ids only)
    model: FashionModel = field(repr=False)

    @property
    def items(self) -> list[FoundItem]:
        labels = self.model.labels
        return [FoundItem(labels.category_name(i.category), i.category, tuple(labels.attributes[a].name
                                                                              for a in i.attributes),
                          i.attributes, i.score, i.box, i.mask) for i in self.found]

    def plot(self) -> Image.Image:
        """The photo with each item tinted and numbered, and a legend of names and scores (stage segment's PNG)."""
        return overlay(photo_on_grid(self.photo, self.model.max_side), self.found, self.model.labels)

    def to_dict(self) -> dict:
        """Stage segment's JSON: the photo's size, the model, and each item with ids, names, score, box and masks
        (Kaggle and COCO run-length encoding, on the mask grid)."""
        return items_json(self.photo, self.found, self.model.labels, self.model.info)

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    def similar(self, k: int = 8) -> Similar:
        """Up to ``k`` catalogue items of each item's category, most similar first (needs the model's catalogue)."""
        if k < 1:
            raise ValueError(f"k must be at least 1, not {k}")
        catalogue = self.model.catalogue
        vectors = item_vectors(self.model.segmenter.inference, self.photo, self.found, catalogue.manifest["features"])
        return Similar(self, similar_items(catalogue, vectors, self.found, k, self.model.labels))


@dataclass
class Similar:
    """Each item of a result with its most similar catalogue items (stage similar's output)."""

    result: Result
    matches: list[list[dict]]  # per item: image_id, box, class_id, category, attributes, similarity

    def to_dict(self) -> dict:
        """Stage similar's JSON: the result's JSON with each item's ``similar`` list."""
        found = self.result.to_dict()
        found["model"] = {**found["model"], "catalogue": str(self.result.model.index)}
        for item, matches in zip(found["items"], self.matches, strict=True):
            item["similar"] = matches
        return found

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    def plot(self) -> Image.Image:
        """The contact sheet: per item, its crop from the photo, then each match's crop with its names."""
        return contact_sheet(self.rows())

    def rows(self) -> list[list[Image.Image]]:
        """The contact sheet's tiles, a row per item (the item's crop first)."""
        result, catalogue = self.result, self.result.model.catalogue
        image_dir = Path(catalogue.manifest["image_dir"])  # as stage index was given it, in the project
        image_dir = image_dir if image_dir.is_absolute() else result.model.project / image_dir
        return sheet_rows(photo_on_grid(result.photo, result.model.max_side), result.photo, result.found,
                          self.matches, image_dir, result.model.labels)


@dataclass
class FashionModel:
    """A trained model ready for photos: call it with one photo for a :class:`Result`, with a list, a folder or a
    pattern for a list of them."""

    segmenter: Segmenter
    config: ModelConfig  # the model sections it was built from
    checkpoint: Path  # its weights
    info: dict  # what the JSON says of the model: family, checkpoint, TTA views
    index: Path  # the catalogue folder (stage index), searched by Result.similar
    project: Path  # the folder a catalogue's relative image folder is in (the run's project)

    @property
    def family(self) -> str:
        return self.config.model.family

    @property
    def labels(self) -> LabelSet:
        return self.segmenter.labels

    @property
    def max_side(self) -> int:
        return self.segmenter.max_side

    @cached_property
    def catalogue(self) -> Catalogue:
        """The catalogue of similar items, refused when another model built it (loaded on first use: checking it
        reads the whole checkpoint)."""
        require_features(self.segmenter.inference.model, self.family)
        return load_catalogue(self.index, catalogue_key(self.checkpoint, self.config))

    def check_catalogue(self) -> None:
        """Load and check the catalogue now (a :class:`~pipeline.utils.errors.PipelineError` when it is missing or
        another model built it), not on the first photo's ``similar``."""
        _ = self.catalogue

    @overload
    def __call__(self, photos: list[PhotoSource] | tuple[PhotoSource, ...]) -> list[Result]: ...

    @overload
    def __call__(self, photos: PhotoSource, name: str | None = None) -> Result | list[Result]: ...

    def __call__(self, photos, name=None):
        """A photo's result (``name`` names an image from memory in messages and JSON); a list's, a folder's or a
        pattern's results, in order."""
        if isinstance(photos, (list, tuple)):
            return [self._one(photo, f"photo {i}") for i, photo in enumerate(photos)]
        if isinstance(photos, (str, Path)) and names_many(photos):
            return [self._one(path) for path in photo_paths([str(photos)])]
        return self._one(photos, name or "photo")

    def _one(self, photo: PhotoSource, name: str = "photo") -> Result:
        found_photo, items = self.segmenter(photo, name)
        return Result(found_photo, items, self)
