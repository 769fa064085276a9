"""A picture to judge predictions at a glance: ground truth beside prediction for one validation image."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from pipeline.data.pixels import to_rgb
from pipeline.data.transforms import scaled_size
from pipeline.inference.masks import resize_nearest
from pipeline.utils.drawing import Labelled, annotate, fit_text, font, font_size

_GAP = 8  # pixels between the two panels


@dataclass(frozen=True)
class Shape:
    """One mask to draw, with its names."""

    category: int
    name: str  # e.g. "dress 0.91" (the category's short name, and the score of a prediction)
    details: tuple[str, ...]  # its attributes' short names
    mask: np.ndarray  # bool, any size (stretched to the panel)


def _items(shapes: Sequence[Shape], size: tuple[int, int]) -> list[Labelled]:
    items = [Labelled(resize_nearest(s.mask, size), s.category, s.name, s.details) for s in shapes]
    return [item for item in items if item.mask.any()]


def render(image_path: Path | str, truth: Sequence[Shape], predicted: Sequence[Shape], long_side: int,
           title: str) -> Image.Image:
    """Truth (left) and prediction (right) over the image scaled to ``long_side``, each item numbered on the
    image and named in a legend beneath; ``title`` above both."""
    with Image.open(image_path) as original:
        scale = long_side / max(original.size)
        height, width = scaled_size(original.height, original.width, scale)
        image = to_rgb(original).resize((width, height), Image.Resampling.BILINEAR)
    left = annotate(image, _items(truth, (height, width)), f"ground truth ({len(truth)})")
    right = annotate(image, _items(predicted, (height, width)), f"prediction ({len(predicted)})")
    size = font_size(2 * width)
    header = size + 8
    sheet = Image.new("RGB", (2 * width + _GAP, header + max(left.height, right.height)), "white")
    draw = ImageDraw.Draw(sheet)
    face = font(size)
    draw.text((4, 2), fit_text(draw, title, (), sheet.width - 8, face), fill="black", font=face)
    sheet.paste(left, (0, header))
    sheet.paste(right, (width + _GAP, header))
    return sheet
