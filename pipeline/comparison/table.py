"""The comparison's outputs: ``metrics/compare.json`` (one entry per family), a Markdown table and a bar chart."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pandas as pd
from PIL import Image, ImageDraw, ImageFont

from pipeline.comparison.speed import Measurement
from pipeline.config.comparison import CompareParams
from pipeline.evaluation.bootstrap import interval
from pipeline.evaluation.report import IMAGE_SCORE_COLUMNS
from pipeline.utils.errors import PipelineError
from pipeline.utils.io import atomic_path, atomic_write

#: A semantic family's validation-time pixel scores in its best checkpoint (``pipeline.training.validation``).
PIXEL_SCORES = ("pixel_accuracy", "mean_iou")


class ComparisonError(PipelineError):
    """A family's outputs are missing or do not fit together."""


def image_scores(path: Path, family: str) -> pd.Series:
    """Each validation image's submitted score, as stage evaluate wrote it for ``family``."""
    if not path.is_file():
        raise ComparisonError(f"{path}: missing: family {family!r} has not been evaluated "
                              f"(dvc repro evaluate@{family}, or add it to compare.families)")
    try:
        frame = pd.read_csv(path, dtype={IMAGE_SCORE_COLUMNS[0]: str})
    except (OSError, ValueError) as exc:  # pandas' parser errors are ValueErrors
        raise ComparisonError(f"{path}: cannot read it as a CSV ({exc}); rerun stage evaluate@{family}") from exc
    if (list(frame.columns) != list(IMAGE_SCORE_COLUMNS) or frame.empty
            or not pd.api.types.is_numeric_dtype(frame[IMAGE_SCORE_COLUMNS[1]])):
        raise ComparisonError(f"{path}: expected the columns {', '.join(IMAGE_SCORE_COLUMNS)} and a row per image "
                              f"with a numeric score; rerun stage evaluate@{family}")
    return frame.set_index(IMAGE_SCORE_COLUMNS[0])[IMAGE_SCORE_COLUMNS[1]]


def entry(family: str, scores: pd.Series, best: Mapping[str, Any], measured: Measurement, params: CompareParams,
          ) -> dict[str, Any]:
    """One family's row: ``best`` is its best checkpoint's validation record (epoch, mask AP, pixel scores)."""
    low, high = interval(scores.to_numpy(), params.bootstrap_resamples, params.seed)
    row = {"family": family, "score": float(scores.mean()), "score_ci95": [low, high], "val_images": len(scores),
           "mask_ap": best["mask_ap"], "best_epoch": best["epoch"], **asdict(measured)}
    for name in PIXEL_SCORES:
        if name in best:
            row[name] = {"train": best.get(f"train_{name}"), "val": best[name]}
    return row


def _number(value: float | None, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def markdown(rows: Mapping[str, Mapping[str, Any]]) -> str:
    """The table README shows: one line per family."""
    lines = ["| family | score (95 % interval) | mask AP | train img/s | inference img/s | parameters | "
             "peak memory | pixel accuracy train / val | attributes |",
             "|---|---|---|---|---|---|---|---|---|"]
    for row in rows.values():
        pixels = row.get("pixel_accuracy")
        low, high = row["score_ci95"]
        lines.append(
            f"| {row['family']} | {row['score']:.3f} ({low:.3f}–{high:.3f}) | {_number(row['mask_ap'])} | "
            f"{row['train_images_per_second']:.2f} | {row['inference_images_per_second']:.2f} | "
            f"{row['parameters'] / 1e6:.1f} M | {row['peak_memory_mb']:,.0f} MB | "
            f"{_number(pixels['train']) + ' / ' + _number(pixels['val']) if pixels else '–'} | "
            f"{'yes' if row['attributes'] else 'no (categories only)'} |")
    return "\n".join(lines) + "\n"


def _bars(draw: ImageDraw.ImageDraw, top: int, title: str, values: list[tuple[str, float, tuple[float, float] | None]],
          font: ImageFont.ImageFont) -> None:
    """One panel of horizontal bars (with whiskers where an interval is given), scaled to its largest value."""
    left, width, bar = 110, 420, 22
    draw.text((10, top), title, fill="black", font=font)
    largest = max([high for _, value, ci in values for high in ((ci[1],) if ci else (value,))] + [1e-9])
    for k, (name, value, ci) in enumerate(values):
        y = top + 20 + k * (bar + 8)
        draw.text((10, y + 5), name, fill="black", font=font)
        draw.rectangle((left, y, left + width * value / largest, y + bar), fill=(70, 130, 180))
        if ci:
            low, high = (left + width * c / largest for c in ci)
            draw.line((low, y + bar / 2, high, y + bar / 2), fill="black", width=2)
            draw.line((low, y + 4, low, y + bar - 4), fill="black", width=2)
            draw.line((high, y + 4, high, y + bar - 4), fill="black", width=2)
        draw.text((left + width + 8, y + 5), f"{value:.3g}", fill="black", font=font)


def chart(path: Path, rows: Mapping[str, Mapping[str, Any]]) -> None:
    """Score (with its interval) and inference speed per family, as a PNG.

    Drawn with Pillow, which the gallery already uses: matplotlib, tens of MB more to install,
    for three bars per panel is not worth it.
    """
    panels = [("competition score (tuned, validation; 95 % bootstrap interval)",
               [(f, r["score"], tuple(r["score_ci95"])) for f, r in rows.items()]),
              ("inference images/s (plain view, same device and size)",
               [(f, r["inference_images_per_second"], None) for f, r in rows.items()]),
              ("train images/s", [(f, r["train_images_per_second"], None) for f, r in rows.items()])]
    height = sum(40 + 30 * len(values) for _, values in panels) + 10
    picture = Image.new("RGB", (620, height), "white")
    draw, font, top = ImageDraw.Draw(picture), ImageFont.load_default(), 10
    for title, values in panels:
        _bars(draw, top, title, values, font)
        top += 40 + 30 * len(values)
    with atomic_path(path) as tmp:
        picture.save(tmp, format="PNG")


def write(rows: Mapping[str, Mapping[str, Any]], table: Path, picture: Path) -> None:
    atomic_write(table, markdown(rows))
    chart(picture, rows)
