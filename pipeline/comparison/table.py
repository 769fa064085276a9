"""The comparison's outputs: ``reports/compare.json`` (one entry per family), a Markdown table and a bar chart."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pandas as pd

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


#: What the comparison shows of stage evaluate's Fashionpedia scores (``pipeline.evaluation.fashionpedia``).
FASHIONPEDIA_COLUMNS = ("mask_ap", "ap_iou_f1")


def fashionpedia_scores(path: Path, family: str) -> dict[str, float | None]:
    """The Fashionpedia mask AP and AP with attributes that stage evaluate wrote for ``family``."""
    remedy = f"rerun stage evaluate@{family}"
    if not path.is_file():
        raise ComparisonError(f"{path}: missing: family {family!r} has not been evaluated "
                              f"(dvc repro evaluate@{family}, or add it to compare.families)")
    try:
        found = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ComparisonError(f"{path}: cannot read it as JSON ({exc}); {remedy}") from exc
    if not isinstance(found, dict) or not all(k in found and _is_score(found[k]) for k in FASHIONPEDIA_COLUMNS):
        raise ComparisonError(f"{path}: expected the numbers {', '.join(FASHIONPEDIA_COLUMNS)} (or null); {remedy}")
    return {k: found[k] for k in FASHIONPEDIA_COLUMNS}


def _is_score(value: object) -> bool:
    """A number in [0, 1], or None (the evaluator had no ground truth to score)."""
    return value is None or (isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value <= 1)


def entry(family: str, scores: pd.Series, best: Mapping[str, Any], measured: Measurement, params: CompareParams,
          fashionpedia: Mapping[str, float | None]) -> dict[str, Any]:
    """One family's row: ``best`` is its best checkpoint's validation record (epoch, mask AP, pixel scores);
    ``fashionpedia`` the Fashionpedia scores of its evaluation (mask AP, AP with attributes)."""
    low, high = interval(scores.to_numpy(), params.bootstrap_resamples, params.seed)
    row = {"family": family, "score": float(scores.mean()), "score_ci95": [low, high], "val_images": len(scores),
           "mask_ap": best["mask_ap"], "best_epoch": best["epoch"],
           "fashionpedia": {"mask_ap": fashionpedia["mask_ap"], "ap_iou_f1": fashionpedia["ap_iou_f1"]},
           **asdict(measured)}
    for name in PIXEL_SCORES:
        if name in best:
            row[name] = {"train": best.get(f"train_{name}"), "val": best[name]}
    return row


def _number(value: float | None, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def markdown(rows: Mapping[str, Mapping[str, Any]]) -> str:
    """The table README shows: one line per family."""
    lines = ["| family | score (95 % interval) | mask AP | Fashionpedia mask AP / AP IoU+F1 | train img/s | "
             "inference img/s | parameters | peak memory | pixel accuracy train / val | attributes |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for row in rows.values():
        pixels = row.get("pixel_accuracy")
        low, high = row["score_ci95"]
        lines.append(
            f"| {row['family']} | {row['score']:.3f} ({low:.3f}–{high:.3f}) | {_number(row['mask_ap'])} | "
            f"{_number(row['fashionpedia']['mask_ap'])} / {_number(row['fashionpedia']['ap_iou_f1'])} | "
            f"{row['train_images_per_second']:.2f} | {row['inference_images_per_second']:.2f} | "
            f"{row['parameters'] / 1e6:.1f} M | {row['peak_memory_mb']:,.0f} MB | "
            f"{_number(pixels['train']) + ' / ' + _number(pixels['val']) if pixels else '–'} | "
            f"{'yes' if row['attributes'] else 'no (categories only)'} |")
    return "\n".join(lines) + "\n"


def chart(path: Path, rows: Mapping[str, Mapping[str, Any]]) -> None:
    """Score (with its 95 % interval as error bars), inference and training speed: a bar per family, as PNG."""
    from matplotlib.figure import Figure  # not pyplot: no backend chosen, none changed for the caller

    families = list(rows)
    scores = [rows[f]["score"] for f in families]
    errors = [[max(0.0, s - rows[f]["score_ci95"][0]) for f, s in zip(families, scores, strict=True)],
              [max(0.0, rows[f]["score_ci95"][1] - s) for f, s in zip(families, scores, strict=True)]]
    panels = [("competition score (tuned, validation)\nbars: 95 % bootstrap interval", scores, errors),
              ("inference images/s\n(plain view, same device and size)",
               [rows[f]["inference_images_per_second"] for f in families], None),
              ("training images/s", [rows[f]["train_images_per_second"] for f in families], None)]
    figure = Figure(figsize=(11, 1.6 + 0.5 * len(families)), dpi=100)
    axes = figure.subplots(1, 3)
    for ax, (title, values, error) in zip(axes, panels, strict=True):
        ax.barh(families, values, xerr=error, capsize=4, color="steelblue", height=0.5)
        ax.set_title(title, fontsize=9)
        ax.set_ylim(-0.75, len(families) - 0.25)
        ax.invert_yaxis()
        ax.grid(axis="x", alpha=0.3)
        reach = [v + e for v, e in zip(values, error[1], strict=True)] if error else values
        ax.set_xlim(0, max(max(reach), 1e-9) * 1.25)
        for y, value in enumerate(values):
            ax.annotate(f"{value:.3g}", (value, y), xytext=(4, -10), textcoords="offset points", fontsize=8)
    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png")


def write(rows: Mapping[str, Mapping[str, Any]], table: Path, picture: Path) -> None:
    atomic_write(table, markdown(rows))
    chart(picture, rows)
