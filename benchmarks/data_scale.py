"""The data stages at real scale: prepare, folds and cache on the real profile, at several sizes.

Each size gets a folder of its own (``--work``, default ``build/scale``) with the project's params,
the Kaggle notebook's merged over them (``kaggle_kernel/params.kaggle.yaml``: the real model's
1,024-px input, so the cache's real size), and the real profile of the synthetic data
(``docs/data.md``): ``N`` train images and test images in the real proportion (3,200 to 45,625).
Stage download writes them (set-up, timed apart). Each stage then runs as ``dvc.yaml`` runs it;
for each the benchmark records its wall time, the peak resident memory of its process and its
worker processes together (sampled every 50 ms), the bytes of its outputs, and the images and
instances it handled. It prints one row per stage and size, then each cost's growth fitted
against the number of images (log-log least squares: an exponent of 1 is linear) and its
extrapolation to the 45,625 real training images, and writes it all as JSON.

  python benchmarks/data_scale.py --sizes 456 1369 4562 --json build/scale/data_scale.json
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psutil
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from pipeline.config.params import with_overrides  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
REAL_TRAIN, REAL_TEST = 45_625, 3_200
STAGES = ("download", "prepare", "folds", "cache")
REAL_PROFILE = {"profile": "real", "min_side": 296, "max_side": 8688, "attribute_rate": 0.2, "size_defect": True}


def workspace_params(folder: Path, train_images: int) -> None:
    """params.yaml of one size: the project's, the Kaggle notebook's over it, and the real profile."""
    merged = with_overrides(REPO / "params.yaml", REPO / "kaggle_kernel" / "params.kaggle.yaml")
    merged["data"]["source"] = "synthetic"
    merged["synthetic"].update(REAL_PROFILE, train_images=train_images,
                               test_images=max(1, round(train_images * REAL_TEST / REAL_TRAIN)))
    (folder / "params.yaml").write_text(yaml.safe_dump(merged, sort_keys=False), encoding="utf-8")


def peak_memory(process: subprocess.Popen, every: float = 0.05) -> int:
    """Until ``process`` ends: the largest sum of resident memory over it and its descendants, in bytes."""
    root, peak = psutil.Process(process.pid), 0
    while process.poll() is None:
        total = 0
        try:
            for member in [root, *root.children(recursive=True)]:
                total += member.memory_info().rss
        except psutil.Error:  # a worker ended between listing and reading it
            pass
        peak = max(peak, total)
        time.sleep(every)
    return peak


def output_bytes(folder: Path, outs: list) -> int:
    paths = [folder / (out if isinstance(out, str) else next(iter(out))) for out in outs]
    files = [p for path in paths for p in ([path] if path.is_file() else path.rglob("*")) if p.is_file()]
    return sum(p.stat().st_size for p in files)


def run_stage(folder: Path, name: str, stage: dict) -> dict:
    """Run one stage's ``cmd`` in ``folder``; its time, peak memory and output bytes."""
    command = shlex.split(stage["cmd"])
    command[0] = sys.executable if command[0] == "python" else command[0]
    log = folder / f"{name}.log"
    with open(log, "w", encoding="utf-8") as output:
        start = time.perf_counter()
        process = subprocess.Popen(command, cwd=folder, stdout=output, stderr=subprocess.STDOUT)
        peak = peak_memory(process)
        seconds = time.perf_counter() - start
    if process.returncode != 0:
        raise SystemExit(f"stage {name} failed in {folder}:\n{log.read_text(encoding='utf-8')[-3000:]}")
    return {"seconds": seconds, "peak_bytes": peak, "output_bytes": output_bytes(folder, stage.get("outs", []))}


def measure_size(work: Path, train_images: int, stages: dict, names: list[str]) -> dict[str, dict]:
    """Run the stages ``names`` at one size; a stage left out must have run there before."""
    folder = work / f"train-{train_images}"
    folder.mkdir(parents=True, exist_ok=True)
    workspace_params(folder, train_images)
    rows = {}
    for name in names:
        rows[name] = run_stage(folder, name, stages[name])
        print(f"{train_images:>7} images  {name:<9} {rows[name]['seconds']:8.1f} s  "
              f"{rows[name]['peak_bytes'] / 2**20:8.0f} MiB  {rows[name]['output_bytes'] / 2**20:9.1f} MiB out",
              flush=True)
    report = json.loads((folder / "metrics" / "data_report.json").read_text())
    cache = json.loads((folder / "metrics" / "cache.json").read_text())
    rows["counts"] = {"images": report["images_kept"], "instances": report["rows_kept"],
                      "cached_instances": cache["instances"], "cache_bytes": cache["bytes_on_disk"]}
    return rows


def growth(sizes: list[int], values: list[float]) -> tuple[float, float]:
    """Exponent b and the value extrapolated to the real training set, from log(value) = a + b log(size)."""
    slope, intercept = np.polyfit(np.log(sizes), np.log(values), 1)
    return float(slope), float(np.exp(intercept) * REAL_TRAIN ** slope)


def fit_growth(results: dict[int, dict], names: list[str]) -> dict[str, dict]:
    """Each stage's costs fitted against the sizes run, printed with their extrapolation."""
    sizes = sorted(results)
    fitted = {}
    print(f"\ngrowth against images, and extrapolated to {REAL_TRAIN:,} train images:")
    for name in names:
        costs = [cost for cost in ("seconds", "peak_bytes", "output_bytes")
                 if min(results[size][name][cost] for size in sizes) > 0]
        fitted[name] = {cost: growth(sizes, [results[size][name][cost] for size in sizes]) for cost in costs}
        shown = "  ".join(f"{cost} x^{b:.2f} -> {value:,.0f}" for cost, (b, value) in fitted[name].items())
        print(f"  {name:<8} {shown}")
    return fitted


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[456, 1369, 4562], help="train images per run")
    parser.add_argument("--work", type=Path, default=REPO / "build" / "scale")
    parser.add_argument("--stages", nargs="+", choices=STAGES, default=list(STAGES),
                        help="the stages to run (again); those left out must have run at each size before")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    names = [name for name in STAGES if name in args.stages]
    results = {size: measure_size(args.work, size, stages, names) for size in sorted(args.sizes)}
    fitted = fit_growth(results, [name for name in names if name != "download"]) if len(results) > 1 else {}
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"sizes": results, "growth": fitted}, indent=2))


if __name__ == "__main__":
    main()
