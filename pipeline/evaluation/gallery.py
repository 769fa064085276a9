"""A picture to judge predictions at a glance: ground truth beside prediction for one validation image."""

from __future__ import annotations

import colorsys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from pipeline.data.pixels import to_rgb
from pipeline.data.transforms import scaled_size
from pipeline.inference.masks import resize_nearest

_HEADER = 18  # pixels of caption above each panel


@dataclass(frozen=True)
class Shape:
    """One mask to draw, with its caption."""

    category: int
    caption: str
    mask: np.ndarray  # bool, any size (stretched to the panel)


def colour(category: int) -> tuple[int, int, int]:
    """A fixed, well-spread colour per category (golden-ratio hues)."""
    hue = (category * 0.618034) % 1.0
    return tuple(int(255 * c) for c in colorsys.hsv_to_rgb(hue, 0.85, 0.95))


def _panel(image: Image.Image, shapes: Sequence[Shape], title: str, font: ImageFont.ImageFont) -> Image.Image:
    size = (image.height, image.width)
    pixels = np.asarray(image, dtype=np.float32).copy()
    boxes = []
    for shape in shapes:
        mask = resize_nearest(shape.mask, size)
        if not mask.any():
            continue
        pixels[mask] = 0.45 * pixels[mask] + 0.55 * np.asarray(colour(shape.category), np.float32)
        rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
        boxes.append((shape, (int(cols[0]), int(rows[0]), int(cols[-1]), int(rows[-1]))))
    panel = Image.new("RGB", (image.width, image.height + _HEADER), "white")
    panel.paste(Image.fromarray(pixels.round().clip(0, 255).astype(np.uint8)), (0, _HEADER))
    draw = ImageDraw.Draw(panel)
    draw.text((3, 3), title, fill="black", font=font)
    for shape, (x0, y0, x1, y1) in boxes:
        draw.rectangle((x0, y0 + _HEADER, x1, y1 + _HEADER), outline=colour(shape.category))
        draw.text((x0 + 2, y0 + _HEADER + 1), shape.caption, fill="white", font=font, stroke_width=1,
                  stroke_fill="black")
    return panel


def render(image_path: Path | str, truth: Sequence[Shape], predicted: Sequence[Shape], long_side: int,
           title: str) -> Image.Image:
    """Truth (left) and prediction (right) over the image scaled to ``long_side``, captioned ``title``."""
    with Image.open(image_path) as original:
        scale = long_side / max(original.size)
        height, width = scaled_size(original.height, original.width, scale)
        image = to_rgb(original).resize((width, height), Image.Resampling.BILINEAR)
    font = ImageFont.load_default()
    left = _panel(image, truth, f"ground truth ({len(truth)})", font)
    right = _panel(image, predicted, f"prediction ({len(predicted)})", font)
    sheet = Image.new("RGB", (2 * width + 6, height + 2 * _HEADER), "white")
    ImageDraw.Draw(sheet).text((3, 3), title, fill="black", font=font)
    sheet.paste(left, (0, _HEADER))
    sheet.paste(right, (width + 6, _HEADER))
    return sheet
