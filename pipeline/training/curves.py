"""The training curves in four charts: losses, validation (score with mask AP), learning rate and throughput.

DVCLive writes one table per metric (``<live>/plots/metrics/<train|val>/<name>.tsv``), which ``dvc plots show``
would draw as as many single-line charts. After each epoch these are gathered into one long table per chart,
``<live>/curves/<chart>.tsv`` (``step``, ``curve``, ``value``: what dvc.yaml's ``curves`` template draws with a
line per curve), and drawn as ``<live>/figures/<chart>.png`` with matplotlib, which a user without a network
(DVC's HTML page loads Vega from a CDN) or without a browser can open.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure  # not pyplot: no backend chosen, none changed for the caller

from pipeline.utils.io import atomic_path

log = logging.getLogger(__name__)

CURVES = "curves"  # long tables, one per chart
FIGURES = "figures"  # the same charts as PNG


@dataclass(frozen=True)
class Chart:
    name: str
    title: str
    split: str  # DVCLive's folder: train or val
    metrics: tuple[str, ...] | None  # None: every metric of the folder whose name starts with "loss"
    log_scale: bool = False


CHARTS = (
    Chart("losses", "training losses (mean over each logging interval)", "train", None, log_scale=True),
    Chart("validation", "validation: competition score and mask AP", "val", ("score", "mask_ap")),
    Chart("learning_rate", "learning rate", "train", ("lr",)),
    Chart("throughput", "training throughput (images/s)", "train", ("images_per_second",)),
)


def _metric_files(folder: Path, chart: Chart) -> list[Path]:
    if chart.metrics is None:
        return sorted(p for p in folder.glob("loss*.tsv"))
    return [folder / f"{name}.tsv" for name in chart.metrics if (folder / f"{name}.tsv").is_file()]


def gather(live_dir: Path, chart: Chart) -> pd.DataFrame:
    """The chart's curves as one long table (step, curve, value), from DVCLive's per-metric tables."""
    parts = []
    for path in _metric_files(live_dir / "plots" / "metrics" / chart.split, chart):
        table = pd.read_csv(path, sep="\t")
        if {"step", path.stem} <= set(table.columns):
            parts.append(pd.DataFrame({"step": table["step"], "curve": path.stem, "value": table[path.stem]}))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=["step", "curve", "value"])


def _figure(table: pd.DataFrame, chart: Chart, family: str) -> Figure:
    figure = Figure(figsize=(6.4, 4.0), dpi=100)
    axes = figure.subplots()
    if table.empty:  # before the first logging interval (or validation): say so rather than leave no file
        axes.text(0.5, 0.5, "no values logged yet", ha="center", va="center", transform=axes.transAxes)
    for curve, rows in table.groupby("curve", sort=True):
        axes.plot(rows["step"], rows["value"], marker="o" if len(rows) < 30 else None, markersize=3, label=curve)
    if chart.log_scale and not table.empty and (table["value"] > 0).all():
        axes.set_yscale("log")
    axes.set_title(f"{family}: {chart.title}", fontsize=11)
    axes.set_xlabel("optimizer step")
    axes.grid(alpha=0.3)
    if table["curve"].nunique() > 1:
        axes.legend(fontsize=8, loc="best")
    figure.tight_layout()
    return figure


def write_curves(live_dir: Path | str, family: str) -> list[Path]:
    """Write every chart as ``curves/<chart>.tsv`` and ``figures/<chart>.png`` (one with nothing logged yet
    says so: dvc.yaml declares them all); the PNG paths."""
    live_dir = Path(live_dir)
    written = []
    for folder in (CURVES, FIGURES):
        (live_dir / folder).mkdir(parents=True, exist_ok=True)
    for chart in CHARTS:
        table = gather(live_dir, chart)
        with atomic_path(live_dir / CURVES / f"{chart.name}.tsv") as tmp:
            table.to_csv(tmp, sep="\t", index=False)
        with atomic_path(live_dir / FIGURES / f"{chart.name}.png") as tmp:
            _figure(table, chart, family).savefig(tmp, format="png")
        written.append(live_dir / FIGURES / f"{chart.name}.png")
    log.debug("training curves drawn: %s", ", ".join(p.name for p in written))
    return written
