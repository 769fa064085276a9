"""Pictures with names that stay readable: masks tinted, each numbered on the image, and a legend beneath.

A caption drawn at its mask's corner overlaps its neighbours' and runs off the image. Here each
item gets a small numbered badge inside its mask, placed where it overlaps no other badge, and its
name and details go on a line of the legend under the image, shortened to fit that line: details
dropped from the end (``+2``), then the name cut with an ellipsis. The font scales with the image.
"""

from __future__ import annotations

import colorsys
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFont

Box = tuple[int, int, int, int]


@dataclass(frozen=True)
class Labelled:
    """One item to draw: its mask (the image's size), colour key, name and details (e.g. attribute names)."""

    mask: np.ndarray  # bool, the image's height and width
    key: int  # the colour (a category id)
    name: str  # e.g. "jacket 0.61"
    details: tuple[str, ...] = ()


def colour(key: int) -> tuple[int, int, int]:
    """A fixed, well-spread colour per key (golden-ratio hues)."""
    hue = (key * 0.618034) % 1.0
    return tuple(int(255 * c) for c in colorsys.hsv_to_rgb(hue, 0.85, 0.95))


def font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """Pillow's own scalable font at ``size`` pixels (no system font needed)."""
    return ImageFont.load_default(size=size)


def font_size(width: int) -> int:
    """A legible size for text on an image ``width`` pixels wide."""
    return int(np.clip(width / 32, 11, 22))


def text_width(draw: ImageDraw.ImageDraw, text: str, face) -> int:
    left, _, right, _ = draw.textbbox((0, 0), text, font=face)
    return int(right - left)


def fit_text(draw: ImageDraw.ImageDraw, name: str, details: Sequence[str], width: int, face) -> str:
    """``"name: a, b, +2"``: as many details as fit ``width`` pixels, then the name cut with "…" if need be."""
    for shown in range(len(details), -1, -1):
        rest = len(details) - shown
        parts = list(details[:shown]) + ([f"+{rest}"] if rest and (shown or not name) else [])
        text = f"{name}: {', '.join(parts)}" if name and parts else name or ", ".join(parts)
        if text_width(draw, text, face) <= width:
            return text
    while name and text_width(draw, name + "…", face) > width:
        name = name[:-1]
    return name + "…" if name else ""


def _overlaps(a: Box, b: Box) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _candidates(mask: np.ndarray, size: tuple[int, int], limit: int = 48) -> list[tuple[int, int]]:
    """Top-left corners for a badge of ``size`` (w, h): inside the mask first (nearest its centre first), then
    anywhere on the image on a coarse grid, nearest the mask first."""
    height, width = mask.shape
    w, h = size
    inside = []
    rows, cols = np.nonzero(mask)
    centre = (rows.mean(), cols.mean()) if len(rows) else (0.0, 0.0)
    if len(rows):
        step = max(1, len(rows) // limit)
        picks = sorted(range(0, len(rows), step), key=lambda k: (rows[k] - centre[0]) ** 2 + (cols[k] - centre[1]) ** 2)
        inside = [(int(cols[k]) - w // 2, int(rows[k]) - h // 2) for k in picks]
    grid = sorted(((x, y) for y in range(0, max(1, height - h + 1), max(1, h))
                   for x in range(0, max(1, width - w + 1), max(1, w))),
                  key=lambda c: (c[1] + h / 2 - centre[0]) ** 2 + (c[0] + w / 2 - centre[1]) ** 2)
    return [(min(max(x, 0), max(width - w, 0)), min(max(y, 0), max(height - h, 0))) for x, y in inside + grid]


def place_badges(masks: Sequence[np.ndarray], size: tuple[int, int]) -> list[Box]:
    """A box of ``size`` per mask, inside the image, overlapping no other (while the image has room): in the
    mask where possible."""
    placed: list[Box] = []
    for mask in masks:
        options = _candidates(mask, size)
        box = next(((x, y, x + size[0], y + size[1]) for x, y in options
                    if not any(_overlaps((x, y, x + size[0], y + size[1]), other) for other in placed)),
                   (*options[0], options[0][0] + size[0], options[0][1] + size[1]))
        placed.append(box)
    return placed


def annotate(image: Image.Image, items: Sequence[Labelled], title: str = "") -> Image.Image:
    """``image`` with each item tinted and numbered, a title above and a legend line per item beneath."""
    width = image.width
    size = font_size(width)
    face, small = font(size), font(max(9, size - 2))
    pixels = np.asarray(image.convert("RGB"), dtype=np.float32).copy()
    masks = [np.asarray(item.mask, dtype=bool) for item in items]
    if wrong := [m.shape for m in masks if m.shape != pixels.shape[:2]]:
        raise ValueError(f"masks of shape {wrong[0]} on an image of {pixels.shape[:2]}")
    for item, mask in reversed(list(zip(items, masks, strict=True))):  # the first item drawn last, on top
        pixels[mask] = 0.45 * pixels[mask] + 0.55 * np.asarray(colour(item.key), np.float32)
    line = size + 6
    header = line if title else 0
    sheet = Image.new("RGB", (width, header + image.height + line * len(items) + 4), "white")
    sheet.paste(Image.fromarray(pixels.round().clip(0, 255).astype(np.uint8)), (0, header))
    draw = ImageDraw.Draw(sheet)
    if title:
        draw.text((4, 2), fit_text(draw, title, (), width - 8, face), fill="black", font=face)
    numbers = [str(k + 1) for k in range(len(items))]
    badge = (text_width(draw, "99", small) + 6, size + 2)
    for number, item, (x0, y0, x1, y1) in zip(numbers, items, place_badges(masks, badge),
                                              strict=True):
        draw.rectangle((x0, y0 + header, x1 - 1, y1 + header - 1), fill=colour(item.key), outline="black")
        draw.text((x0 + 3, y0 + header), number, fill="black", font=small)
    for k, (number, item) in enumerate(zip(numbers, items, strict=True)):
        top = header + image.height + 2 + k * line
        draw.rectangle((4, top + 2, 4 + size, top + 2 + size), fill=colour(item.key), outline="black")
        draw.text((10 + size, top), number, fill="black", font=face)
        start = 10 + size + text_width(draw, "99", face) + size // 2
        draw.text((start, top), fit_text(draw, item.name, item.details, width - start - 4, face), fill="black",
                  font=face)
    return sheet
