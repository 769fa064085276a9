"""Decorations of the real profile: beads, rivets, sequins, zippers, appliqués and the like, on garments.

Each lies on a garment (categories 0-12, or a belt or a bag) as a part of it: it is clipped to the
garment's shape, painted over it, and hidden where the garment is hidden. Two decorations of one
category never share a pixel, as two instances of one ClassId must not. Sizes are in pixels at a
long side of 1,024 px.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from pipeline.data.synthetic_figures import COLOURS, Piece


@dataclass(frozen=True)
class Decoration:
    """One kind: its odds of a cluster per image, the mean size of a cluster, its shape and size."""

    odds: float
    mean_count: float
    shape: Literal["dot", "blob", "box", "zip", "hem"]
    size: tuple[float, float]  # radius (dot, blob), half side (box), width (zip, hem), in px at 1,024 px


# Tuned so that the instances per image of each kind match the real rates (docs/data.md).
DECORATIONS = {
    35: Decoration(0.2, 1.0, "zip", (2.0, 4.0)),     # zipper
    37: Decoration(0.013, 12.0, "dot", (1.0, 2.5)),   # bead
    42: Decoration(0.026, 8.0, "dot", (1.5, 3.0)),    # rivet
    44: Decoration(0.007, 10.0, "dot", (1.0, 1.5)),   # sequin
    36: Decoration(0.08, 1.4, "blob", (5.0, 16.0)),   # applique
    39: Decoration(0.015, 3.0, "blob", (3.0, 9.0)),   # flower
    38: Decoration(0.013, 1.0, "blob", (4.0, 8.0)),    # bow
    34: Decoration(0.085, 1.0, "box", (3.0, 7.0)),     # buckle
    43: Decoration(0.048, 1.0, "hem", (5.0, 12.0)),   # ruffle
    40: Decoration(0.013, 1.0, "hem", (6.0, 16.0)),   # fringe
    41: Decoration(0.004, 1.0, "hem", (2.0, 4.0)),    # ribbon
    45: Decoration(0.006, 2.0, "dot", (1.5, 4.0)),     # tassel
}
HOSTS = (*range(13), 19, 24)
_COUNT_SIGMA = 1.5  # of a cluster's count beyond its first item: log-normal, for the long tail
MAX_CLUSTER = 100  # items: each is a mask of the whole drawing


def _cluster_size(rng: np.random.Generator, mean: float) -> int:
    if mean <= 1.0:
        return 1
    extra = mean - 1.0
    drawn = extra * np.exp(_COUNT_SIGMA * rng.standard_normal() - _COUNT_SIGMA ** 2 / 2)
    return min(1 + int(round(drawn)), MAX_CLUSTER)


def _disk(shape: tuple[int, int], y: float, x: float, ry: float, rx: float) -> np.ndarray:
    """An ellipse's mask on a canvas of ``shape``, at least one pixel."""
    mask = np.zeros(shape, dtype=bool)
    y0, y1 = max(int(y - ry), 0), min(int(y + ry) + 1, shape[0])
    x0, x1 = max(int(x - rx), 0), min(int(x + rx) + 1, shape[1])
    if y1 <= y0 or x1 <= x0:  # off the canvas
        return mask
    yy, xx = np.ogrid[y0:y1, x0:x1]
    mask[y0:y1, x0:x1] = ((yy - y) / max(ry, 0.5)) ** 2 + ((xx - x) / max(rx, 0.5)) ** 2 <= 1.0
    if 0 <= int(y) < shape[0] and 0 <= int(x) < shape[1]:
        mask[int(y), int(x)] = True
    return mask


def _shapes(rng: np.random.Generator, kind: Decoration, host: np.ndarray, count: int, scale: float) -> list:
    """The masks of one cluster on ``host`` (a garment's mask)."""
    ys, xs = np.nonzero(host)
    pick = int(rng.integers(ys.size))
    cy, cx = float(ys[pick]), float(xs[pick])
    size = rng.uniform(*kind.size) * scale
    if kind.shape == "zip":
        column = int(np.median(xs))
        mask = np.zeros_like(host)
        mask[:, max(column - int(size / 2), 0): column + max(int(size / 2), 1)] = True
        return [mask & host]
    if kind.shape == "hem":
        bottom = int(ys.max())
        mask = np.zeros_like(host)
        mask[max(bottom - int(size), 0): bottom + 1] = True
        return [mask & host]
    spread = rng.uniform(4, 12) * scale * np.sqrt(count)
    masks = []
    for k in range(count):
        y, x = (cy, cx) if k == 0 else (cy + rng.normal(0, spread), cx + rng.normal(0, spread))
        if kind.shape == "box":
            mask = np.zeros_like(host)
            rows = slice(max(int(y - size), 0), max(int(y + size) + 1, 0))
            mask[rows, max(int(x - 1.4 * size), 0): max(int(x + 1.4 * size) + 1, 0)] = True
        else:
            mask = _disk(host.shape, y, x, size * rng.uniform(0.7, 1.3), size * rng.uniform(0.7, 1.3))
        masks.append(mask & host)
    return masks


def decorate(rng: np.random.Generator, pieces: list[Piece], scale: float) -> None:
    """Add clusters of decorations to the garments of ``pieces`` as their parts (``scale``: long side / 1,024)."""
    hosts = [piece for piece in pieces if piece.category in HOSTS and piece.shape.any()]
    if not hosts:
        return
    for category, kind in DECORATIONS.items():
        if rng.random() >= kind.odds:
            continue
        host = hosts[int(rng.integers(len(hosts)))]
        colour = np.array(COLOURS[category], dtype=np.float32)
        taken = np.zeros_like(host.shape)
        for mask in _shapes(rng, kind, host.shape, _cluster_size(rng, kind.mean_count), scale):
            mask &= ~taken
            if mask.any():
                taken |= mask
                host.parts.insert(0, Piece(category, mask, colour, host.layer + 0.3))  # first: painted on top
