"""The scale run's figure (``benchmarks/scale.py``): each stage's cost against its size, log-log, with its fit.

Three panels: wall time, peak memory and bytes written. The x axis is the share of the real data
that a stage handled (its count over that count at real scale: images, instances, detections,
catalogue items), so that every stage ends at 1, the real data, where its fitted line arrives.
Drawn with Pillow alone (no plotting library in the project's dependencies).
"""

from __future__ import annotations

import math
from pathlib import Path

import scale_report
from PIL import Image, ImageDraw, ImageFont

PANELS = (("seconds", "wall time (s)", 1.0), ("peak_bytes", "peak memory (GiB)", 2.0**30),
          ("output_bytes", "written (GiB)", 2.0**30))
COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22")
WIDTH, HEIGHT, MARGIN = 520, 420, 64


def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow before 10.1: one bitmap size
        return ImageFont.load_default()


class _Axes:
    """A log-log panel: data coordinates to pixels, decade ticks."""

    def __init__(self, left: int, x_range: tuple[float, float], y_range: tuple[float, float]) -> None:
        self.left, self.x_range, self.y_range = left, x_range, y_range

    def point(self, x: float, y: float) -> tuple[float, float]:
        (x0, x1), (y0, y1) = (tuple(map(math.log10, r)) for r in (self.x_range, self.y_range))
        u = (math.log10(x) - x0) / (x1 - x0)
        v = (math.log10(y) - y0) / (y1 - y0)
        return self.left + MARGIN + u * (WIDTH - 1.5 * MARGIN), HEIGHT - MARGIN - v * (HEIGHT - 1.6 * MARGIN)

    def frame(self, draw: ImageDraw.ImageDraw, title: str, font: ImageFont.ImageFont) -> None:
        (x0, y0), (x1, y1) = self.point(self.x_range[0], self.y_range[0]), self.point(self.x_range[1], self.y_range[1])
        draw.rectangle((x0, y1, x1, y0), outline="#444444")
        draw.text(((x0 + x1) / 2, y1 - 28), title, fill="black", font=font, anchor="mm")
        draw.text(((x0 + x1) / 2, y0 + 34), "share of the real data's count", fill="black", font=font, anchor="mm")
        for axis, (low, high) in ((0, self.x_range), (1, self.y_range)):
            for power in range(math.floor(math.log10(low)), math.ceil(math.log10(high)) + 1):
                value = 10.0**power
                if not low <= value <= high:
                    continue
                px, py = self.point(value if axis == 0 else self.x_range[0], value if axis == 1 else self.y_range[0])
                label = f"{value:g}"
                if axis == 0:
                    draw.line((px, y1, px, y0), fill="#dddddd")
                    draw.text((px, y0 + 12), label, fill="black", font=font, anchor="mm")
                else:
                    draw.line((x0, py, x1, py), fill="#dddddd")
                    draw.text((x0 - 6, py), label, fill="black", font=font, anchor="rm")


def _series(sizes: dict[int, dict], report: dict, cost: str, unit: float) -> dict[str, dict]:
    """Per stage measured at several sizes: its points (share, value), and its fitted line from the largest to
    the real data (see ``scale_report.fit``)."""
    found = {}
    for name, row in report["stages"].items():
        line, real = row["fits"][cost]["line"], row["real_count"]
        if line is None or name == "download" or real <= line["x"]:
            continue
        ran = sorted(size for size in sizes if name in sizes[size]["stages"])
        points = [(count / real, sizes[size]["stages"][name][cost] / unit)
                  for size, count in zip(ran, row["measured_counts"], strict=True)]
        steps = [line["x"] * (real / line["x"]) ** (k / 20) for k in range(21)]
        fitted = [(count / real, scale_report.at(count, line) / unit) for count in steps]
        found[name] = {"points": [p for p in points if p[1] > 0], "line": [p for p in fitted if p[1] > 0]}
    return found


def draw(sizes: dict[int, dict], report: dict, path: Path) -> None:
    """Write the three panels and a legend to ``path`` (PNG)."""
    names = [n for n in report["stages"] if n != "download" and report["stages"][n]["fits"]["seconds"]["line"]
             and report["stages"][n]["real_count"] > report["stages"][n]["fits"]["seconds"]["line"]["x"]]
    colour = {name: COLOURS[k % len(COLOURS)] for k, name in enumerate(names)}
    image = Image.new("RGB", (WIDTH * len(PANELS), HEIGHT + 40), "white")
    canvas, font = ImageDraw.Draw(image), _font(13)
    for k, (cost, title, unit) in enumerate(PANELS):
        series = _series(sizes, report, cost, unit)
        values = [v for s in series.values() for _, v in s["points"] + s["line"]]
        shares = [x for s in series.values() for x, _ in s["points"]]
        if not values:
            continue
        y_range = (10 ** math.floor(math.log10(min(values))), 10 ** math.ceil(math.log10(max(values))))
        axes = _Axes(k * WIDTH, (10 ** math.floor(math.log10(min(shares))), 1.0), y_range)
        axes.frame(canvas, title, font)
        for name, found in series.items():
            canvas.line([axes.point(x, y) for x, y in found["points"]], fill=colour[name], width=1)
            canvas.line([axes.point(x, y) for x, y in found["line"]], fill=colour[name], width=2)
            for x, y in found["points"]:
                px, py = axes.point(x, y)
                canvas.ellipse((px - 4, py - 4, px + 4, py + 4), fill=colour[name])
    for k, name in enumerate(names):
        x = 20 + k * (image.width - 40) / max(1, len(names))
        canvas.rectangle((x, HEIGHT + 12, x + 14, HEIGHT + 26), fill=colour[name])
        canvas.text((x + 20, HEIGHT + 19), name, fill="black", font=font, anchor="lm")
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
