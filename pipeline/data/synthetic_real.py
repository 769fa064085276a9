"""The ``real`` profile of the synthetic dataset: images shaped like the competition's.

Image sizes, instances per image, the imbalance of categories and the share of images with
attributes follow the real ``train.csv`` (``docs/data.md`` cites each figure and marks the
estimated ones). Photos are framed as shop and street photos are (the whole figure, from the
knees up, the upper body, the legs), so that most images show a handful of items. Beads,
rivets, sequins, zippers and other decorations lie on the garments, a few pixels wide at
1,024 px, in clusters whose size has a long tail (an image with over 50 instances now and then).

A scene is drawn at a working size whose long side is at most :data:`WORKING_SIDE`; its masks
are scaled to the image's own size when they are encoded, and its painting when it is saved.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from pipeline.data.synthetic_decorations import decorate
from pipeline.data.synthetic_figures import Figure, Piece, Style, dress_figure, figure_centre, rare_items

WORKING_SIDE = 1024
# Long side: log-normal, so that heights have about the real median (1,600 px) and quartiles (1,024 and 3,000 px).
_LONG_SIDE_MEDIAN, _LONG_SIDE_SIGMA = 1800.0, 0.85
# Portrait, landscape, square (estimated: the five commonest real sizes are all portrait).
_ORIENTATION = (0.80, 0.12, 0.08)
# Framings (estimated shares) as (share, body units the image's height spans, first unit shown).
_FRAMINGS = {
    "whole figure": (0.45, (8.3, 9.2), (-0.5, -0.2)),
    "from the knees up": (0.20, (5.6, 6.6), (-0.4, -0.1)),
    "upper body": (0.20, (3.0, 4.0), (-0.2, 0.3)),
    "legs": (0.15, (4.4, 5.2), (3.3, 3.8)),
}
# What a figure wears, tuned so that each category's instances per image match the real rates.
REAL_STYLE = Style(
    whole=0.42, dress=0.95, dress_sleeves=(0.0, 0.0, 0.3),
    tops=(0,) * 8 + (1,) * 22 + (2, 2, 3, 3, 5), lowers=(6,) * 11 + (7,) * 3 + (8,) * 5,
    outer=0.24, outers=(4,) * 50 + (9,) * 20 + (12,),
    pants_pocket=0.9, outer_pocket=0.9, top_pocket=0.4, sleeveless=0.4, neckline=0.86, lower=0.8, belt=0.38, rivets=0.0,
    shoes=0.82, hat=0.06, headband=0.086, glasses=0.126, bag=0.177, watch=0.071, scarf=0.027)
_RARE_ODDS = {21: 0.15, 22: 0.045, 20: 0.0015, 17: 0.014, 16: 0.036, 26: 0.004,
              27: 0.033, 29: 0.65, 30: 0.045, 28: 0.15}


def image_size(rng: np.random.Generator, min_side: int, max_side: int) -> tuple[int, int]:
    """Height and width: the long side log-normal like the real data's, drawn again until it lies in
    [min_side, max_side] (clipped after 100 draws, for a range far from the real sizes)."""
    for _ in range(100):
        drawn = _LONG_SIDE_MEDIAN * math.exp(_LONG_SIDE_SIGMA * rng.standard_normal())
        if min_side <= drawn <= max_side:
            break
    long_side = int(np.clip(drawn, min_side, max_side))
    ratio = 1.5 if rng.random() < 0.7 else rng.uniform(1.2, 1.8)
    short_side = max(int(round(long_side / ratio)), 16)
    orientation = rng.choice(3, p=_ORIENTATION)
    if orientation == 0:
        return long_side, short_side
    if orientation == 1:
        return short_side, long_side
    return long_side, long_side


def working_size(height: int, width: int) -> tuple[int, int]:
    """The size a scene is drawn at: the image's own, shrunk to a long side of WORKING_SIDE when larger."""
    scale = min(1.0, WORKING_SIDE / max(height, width))
    return max(int(round(height * scale)), 1), max(int(round(width * scale)), 1)


def _framing(rng: np.random.Generator) -> tuple[tuple[float, float], tuple[float, float]]:
    """One image's framing: the body units its height spans and the first unit it shows."""
    names = list(_FRAMINGS)
    chosen = _FRAMINGS[names[rng.choice(len(names), p=[_FRAMINGS[name][0] for name in names])]]
    return chosen[1], chosen[2]


def real_scene(rng: np.random.Generator, height: int, width: int, attributed: bool) -> list[Piece]:
    """The pieces of one image at its working size (:func:`working_size`), decorations included."""
    figures = 2 if width > 1.2 * height and rng.random() < 0.5 else 1
    spans, first = _framing(rng)
    pieces: list[Piece] = []
    for k in range(figures):
        centre = figure_centre(rng, width, k, figures)
        unit = height / rng.uniform(*spans) / (1.15 if figures > 1 else 1.0)
        fig = Figure(rng, height, width, centre, unit, -rng.uniform(*first) * unit)
        worn = dress_figure(fig, rng, attributed, REAL_STYLE)
        rare_items(fig, rng, worn, _RARE_ODDS)
        pieces += worn
    decorate(rng, pieces, max(height, width) / WORKING_SIDE)
    return pieces


def statistics(rows: list[tuple[str, str, int, int, str]]) -> dict[str, float]:
    """The figures ``docs/data.md`` compares with the real data's, measured on ``train.csv`` rows.

    Heights and widths are counted per instance, as the real figures are; ``small_share`` is the share
    of instances under 32 x 32 px once their image is scaled to a long side of 1,024 px.
    """
    table = pd.DataFrame(rows, columns=["image_id", "rle", "height", "width", "class_id"])
    category = table.class_id.str.split("_").str[0].astype(int)
    attributed = table.class_id.str.contains("_")
    area = table.rle.map(lambda text: int(np.asarray(text.split()[1::2], dtype=np.int64).sum()))
    area_at_1024 = area * (WORKING_SIDE / table[["height", "width"]].max(axis=1)) ** 2
    return {
        "instances_per_image": len(table) / table.image_id.nunique(),
        "images_with_attributes": float(attributed.groupby(table.image_id).any().mean()),
        "instances_with_attributes": float(attributed.mean()),
        "part_share": float(category.between(27, 45).mean()),
        "height_median": float(table.height.median()),
        "height_quartile_1": float(table.height.quantile(0.25)),
        "height_quartile_3": float(table.height.quantile(0.75)),
        "width_median": float(table.width.median()),
        "portrait_share": float((table.height > table.width).groupby(table.image_id).first().mean()),
        "small_share": float((area_at_1024 < 32 * 32).mean()),
    }
