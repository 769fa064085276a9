"""What a user looks at: the overlay of a photo's items, their JSON, and the contact sheet of similar items."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont, ImageOps
from pycocotools import mask as coco_mask

from pipeline.data import rle
from pipeline.data.labels import LabelSet
from pipeline.evaluation.gallery import colour
from pipeline.shop.segment import Item, Photo

TILE = 160  # side of each crop on a contact sheet
_CAPTION = 30  # pixels of caption under each crop


def caption(item: Item, labels: LabelSet, attributes: int = 3) -> str:
    """``"dress 0.91: floral, midi, ..."``: the category, the score and the first attribute names."""
    names = [labels.attributes[a].name for a in item.attributes][:attributes]
    more = ", ..." if len(item.attributes) > attributes else ""
    return f"{labels.category_name(item.category)} {item.score:.2f}" + (f": {', '.join(names)}{more}" if names else "")


def overlay(photo: Image.Image, items: Sequence[Item], labels: LabelSet) -> Image.Image:
    """The photo on its mask grid with each item tinted in its category's colour, boxed and captioned."""
    height, width = items[0].mask.shape if items else (photo.height, photo.width)
    pixels = np.asarray(photo.convert("RGB").resize((width, height), Image.Resampling.BILINEAR), np.float32).copy()
    for item in reversed(items):  # the best item drawn last, on top
        pixels[item.mask] = 0.45 * pixels[item.mask] + 0.55 * np.asarray(colour(item.category), np.float32)
    image = Image.fromarray(pixels.round().clip(0, 255).astype(np.uint8))
    draw, font = ImageDraw.Draw(image), ImageFont.load_default()
    for item in items:
        rows, cols = np.flatnonzero(item.mask.any(1)), np.flatnonzero(item.mask.any(0))
        draw.rectangle((int(cols[0]), int(rows[0]), int(cols[-1]), int(rows[-1])), outline=colour(item.category))
        draw.text((int(cols[0]) + 2, int(rows[0]) + 1), caption(item, labels), fill="white", font=font,
                  stroke_width=1, stroke_fill="black")
    return image


def coco_rle(mask: np.ndarray) -> dict:
    """COCO's compressed RLE of a bool mask, JSON-ready: ``{"size": [h, w], "counts": str}``."""
    encoded = coco_mask.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(v) for v in encoded["size"]], "counts": encoded["counts"].decode("ascii")}


def items_json(photo: Photo, items: Sequence[Item], labels: LabelSet, model: dict) -> dict:
    """The photo's items with names, boxes (photo pixels) and masks (on the grid) as Kaggle and COCO RLE."""
    grid = list(items[0].mask.shape) if items else [photo.height, photo.width]
    return {
        "photo": str(photo.path), "height": photo.height, "width": photo.width, "mask_grid": grid, "model": model,
        "items": [{"category_id": item.category, "category": labels.category_name(item.category),
                   "attribute_ids": list(item.attributes),
                   "attributes": [labels.attributes[a].name for a in item.attributes],
                   "score": item.score, "box": list(item.box),
                   "kaggle_rle": rle.encode(item.mask), "coco_rle": coco_rle(item.mask)} for item in items],
    }


def tile(image: Image.Image, box: Sequence[float], text: str) -> Image.Image:
    """The crop of ``box`` (pixels of ``image``) fitted into a TILE square, captioned below."""
    x0, y0, x1, y1 = (int(round(v)) for v in box)
    crop = ImageOps.contain(image.crop((x0, y0, max(x1, x0 + 1), max(y1, y0 + 1))), (TILE, TILE),
                            Image.Resampling.BILINEAR)
    out = Image.new("RGB", (TILE, TILE + _CAPTION), "white")
    out.paste(crop, ((TILE - crop.width) // 2, (TILE - crop.height) // 2))
    ImageDraw.Draw(out).multiline_text((3, TILE + 2), text, fill="black", font=ImageFont.load_default())
    return out


def contact_sheet(rows: Sequence[Sequence[Image.Image]]) -> Image.Image:
    """Tiles in rows: each row a query crop, then its results."""
    columns = max((len(r) for r in rows), default=1)
    sheet = Image.new("RGB", (columns * TILE, max(1, len(rows)) * (TILE + _CAPTION)), "white")
    for r, row in enumerate(rows):
        for c, image in enumerate(row):
            sheet.paste(image, (c * TILE, r * (TILE + _CAPTION)))
    return sheet
