"""What a user looks at: the overlay of a photo's items, their JSON, and the contact sheet of similar items."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageOps
from pycocotools import mask as coco_mask

from pipeline.data import rle
from pipeline.data.labels import LabelSet
from pipeline.shop.segment import Item, Photo
from pipeline.utils.drawing import Labelled, annotate, fit_text, font

TILE = 160  # side of each crop on a contact sheet
_LINE = 14  # pixels of each of a tile's two caption lines
_CAPTION = 2 * _LINE + 4  # pixels of caption under each crop


def names(item: Item, labels: LabelSet) -> tuple[str, tuple[str, ...]]:
    """What the pictures say of an item: ``"dress 0.91"`` and its attributes' short names."""
    name, details = labels.short_names(labels.make(item.category, item.attributes))
    return f"{name} {item.score:.2f}", details


def overlay(photo: Image.Image, items: Sequence[Item], labels: LabelSet) -> Image.Image:
    """The photo on its mask grid with each item tinted in its category's colour and numbered, and a legend
    beneath naming each: category, score and as many attributes as fit."""
    height, width = items[0].mask.shape if items else (photo.height, photo.width)
    image = photo.convert("RGB").resize((width, height), Image.Resampling.BILINEAR)
    return annotate(image, [Labelled(item.mask, item.category, *names(item, labels)) for item in items],
                    f"{len(items)} item(s)")


def coco_rle(mask: np.ndarray) -> dict:
    """COCO's compressed RLE of a bool mask, JSON-ready: ``{"size": [h, w], "counts": str}``."""
    encoded = coco_mask.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(v) for v in encoded["size"]], "counts": encoded["counts"].decode("ascii")}


def items_json(photo: Photo, items: Sequence[Item], labels: LabelSet, model: dict) -> dict:
    """The photo's items with names, boxes (photo pixels) and masks (on the grid) as Kaggle and COCO RLE."""
    grid = list(items[0].mask.shape) if items else [photo.height, photo.width]
    return {
        "photo": photo.name, "height": photo.height, "width": photo.width, "mask_grid": grid, "model": model,
        "items": [{"category_id": item.category, "category": labels.category_name(item.category),
                   "attribute_ids": list(item.attributes),
                   "attributes": [labels.attributes[a].name for a in item.attributes],
                   "score": item.score, "box": list(item.box),
                   "kaggle_rle": rle.encode(item.mask), "coco_rle": coco_rle(item.mask)} for item in items],
    }


def tile(image: Image.Image, box: Sequence[float], lines: tuple[str, Sequence[str]]) -> Image.Image:
    """The crop of ``box`` (pixels of ``image``) fitted into a TILE square, with two caption lines below: a name,
    and as many details as fit (each line shortened to the tile's width)."""
    x0, y0, x1, y1 = (int(round(v)) for v in box)
    crop = ImageOps.contain(image.crop((x0, y0, max(x1, x0 + 1), max(y1, y0 + 1))), (TILE, TILE),
                            Image.Resampling.BILINEAR)
    out = Image.new("RGB", (TILE, TILE + _CAPTION), "white")
    out.paste(crop, ((TILE - crop.width) // 2, (TILE - crop.height) // 2))
    draw, face = ImageDraw.Draw(out), font(_LINE - 2)
    name, details = lines
    draw.text((3, TILE + 2), fit_text(draw, name, (), TILE - 6, face), fill="black", font=face)
    if details:
        draw.text((3, TILE + 2 + _LINE), fit_text(draw, "", details, TILE - 6, face), fill="dimgray", font=face)
    return out


def contact_sheet(rows: Sequence[Sequence[Image.Image]]) -> Image.Image:
    """Tiles in rows: each row a query crop, then its results."""
    columns = max((len(r) for r in rows), default=1)
    sheet = Image.new("RGB", (columns * TILE, max(1, len(rows)) * (TILE + _CAPTION)), "white")
    for r, row in enumerate(rows):
        for c, image in enumerate(row):
            sheet.paste(image, (c * TILE, r * (TILE + _CAPTION)))
    return sheet
