"""The scale run's report and figure (benchmarks/scale_report.py, scale_figure.py): growth, extrapolation, verdicts."""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
import scale_figure  # noqa: E402
import scale_report  # noqa: E402

SIZES = (456, 1369, 4562)


def run(size: int, cost: Callable[[float], float]) -> dict:
    """One size's results on 2 CPUs: every stage costs ``cost(count)`` seconds, bytes of memory and bytes written."""
    counts = {"images": size, "instances": 7 * size, "val_images": size // 5, "test_images": size // 14,
              "train_steps": 4, "predicted_images": size // 5 + size // 14, "tuned_images": min(size // 5, 1000),
              "val_detections": 200 * (size // 5), "test_detections": 200 * (size // 14),
              "catalogue_items": 6 * size}
    stages = {name: {cost_name: float(cost(counts[count])) for cost_name in ("seconds", "peak_bytes", "output_bytes")}
              for name, count in scale_report.COUNT.items()}
    return {"stages": stages, "counts": counts, "cpus": 2}


def report(cost: Callable[[float], float], sizes: tuple[int, ...] = SIZES) -> tuple[dict, dict]:
    results = {size: run(size, cost) for size in sizes}
    return results, scale_report.report(results, REPO)


def test_a_fixed_cost_does_not_hide_linear_growth():
    _, found = report(lambda n: 5.0 + 0.01 * n)
    fitted = found["stages"]["prepare"]["fits"]["seconds"]
    assert found["stages"]["prepare"]["real_count"] == scale_report.REAL_INSTANCES
    assert fitted["growth"] == pytest.approx(1.0)
    assert fitted["real"] == pytest.approx(5.0 + 0.01 * scale_report.REAL_INSTANCES)
    assert found["stages"]["train"]["fits"]["seconds"]["real"] == pytest.approx(5.04), "a fixed count: as measured"


def test_quadratic_growth_behind_a_fixed_cost_is_found_and_extrapolated_as_quadratic():
    """A stage that compares every detection with every other, after a start-up cost larger than that work."""
    results, found = report(lambda n: 100.0 + 1e-7 * n**2)
    evaluate = found["stages"]["evaluate"]
    real = 200 * scale_report.REAL_TRAIN / 5
    assert evaluate["real_count"] == pytest.approx(real)
    assert evaluate["fits"]["seconds"]["growth"] == pytest.approx(2.0)
    assert evaluate["fits"]["seconds"]["real"] == pytest.approx(100.0 + 1e-7 * real**2)
    assert evaluate["fits"]["peak_bytes"]["real"] == pytest.approx(2 * (100.0 + 1e-7 * real**2)), "4 workers, not 2"
    assert not found["kaggle"]["stages"]["evaluate"]["fits"], "92 hours"
    table = scale_report.markdown(results, found)
    assert next(line for line in table.splitlines() if line.startswith("| evaluate |")).endswith("**does not fit** |")


def test_a_cost_that_hardly_moves_between_the_smallest_sizes_is_extrapolated_as_linear():
    """Noise on a flat start (a worker pool's memory) must not read as steep growth."""
    _, found = report(lambda n: 2e9 + (1e6 if n > 20_000 else 0.0) + 1e4 * max(0.0, n - 50_000))
    fitted = found["stages"]["evaluate"]["fits"]["peak_bytes"]
    assert fitted["growth"] is None
    largest, real = 200 * (4562 // 5), found["stages"]["evaluate"]["real_count"]
    # 2 workers here, 4 on Kaggle; linear at the cost per detection between the two largest sizes
    assert fitted["real"] / 2 == pytest.approx(2e9 + 1e6 + 1e4 * (largest - 50_000) + 1e4 * (real - largest))


def test_the_tune_sample_stops_growing_at_its_cap():
    _, found = report(lambda n: 1.0 + n)
    cap = scale_report.kaggle_params(REPO)["tune"]["max_images"]
    assert found["stages"]["tune"]["real_count"] == cap
    assert found["stages"]["tune"]["fits"]["seconds"]["real"] == pytest.approx(1.0 + cap)


def test_the_session_plan_adds_up_the_reserve_and_counts_the_versions():
    """Every CPU stage a minute here; the GPU stages from docs/gpu.md's 1-6 training images/s per T4."""
    results, found = report(lambda n: 60.0)
    kaggle, reserve = found["kaggle"], scale_report.kaggle_params(REPO)["kaggle_session"]["reserve_minutes"]
    assert kaggle["in_reserve"] == ["predict", "tune", "evaluate", "submission", "compare"], "index: after training"
    # predict: (9,125 + 3,200) images x 2 views at 3-18 views/s; tune, evaluate, submission: 2 of 4 cores busy,
    # or as here; tune up to its 2 rounds (the scale run's untrained model stops after one)
    assert kaggle["reserve_needed"] == pytest.approx([24_650 / 18 / 60 + 3 * 0.5 + 1, 24_650 / 3 / 60 + 2 + 3])
    assert kaggle["reserve_fits"] == (reserve >= 24_650 / 3 / 60 + 5)
    assert kaggle["training_minutes_per_session"] == pytest.approx(690 - reserve - 3)
    # 12 epochs of 36,500 images at 2-12 images/s: 608-3,650 minutes, and one more version for the index
    versions = [math.ceil(minutes / (690 - reserve - 3)) + 1 for minutes in (438_000 / 12 / 60, 438_000 / 2 / 60)]
    assert kaggle["versions"] == versions
    assert f"{versions[0]}–{versions[1]} versions of the notebook" in scale_report.markdown(results, found)


def test_a_reserve_too_small_for_its_stages_is_said():
    results, found = report(lambda n: 60.0 + 50.0 * n)  # tune's 1,000 images: 14 hours
    assert not found["kaggle"]["reserve_fits"]
    assert "**it does not fit**" in scale_report.markdown(results, found)


def test_one_size_is_measured_but_not_extrapolated():
    results, found = report(lambda n: 1.0 + n, sizes=(456,))
    assert found["stages"]["cache"]["fits"]["seconds"]["real"] is None
    assert found["kaggle"]["stages"]["cache"]["fits"] is None
    table = scale_report.markdown(results, found)
    assert next(line for line in table.splitlines() if line.startswith("| cache |")).endswith("not extrapolated |")


def test_the_figure_draws_each_growing_stage_in_its_colour(tmp_path):
    sizes, found = report(lambda n: 2.0 + n)
    path = tmp_path / "scale.png"
    scale_figure.draw(sizes, found, path)
    with Image.open(path) as figure:
        pixels = np.asarray(figure.convert("RGB")).reshape(-1, 3)
    colours = {tuple(int(c[i : i + 2], 16) for i in (1, 3, 5)) for c in scale_figure.COLOURS}
    drawn = {tuple(p) for p in np.unique(pixels, axis=0)} & colours
    growing = ("prepare", "folds", "cache", "predict", "tune", "evaluate", "submission", "index")
    assert len(drawn) == min(len(growing), len(colours))
