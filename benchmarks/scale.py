"""``make scale``: every stage of the pipeline on the real profile of the synthetic data, at several sizes.

Each size gets a folder of its own under ``--work`` (default ``build/scale``): ``N`` train images and
test images in the real proportion (3,200 to 45,625), drawn with the real profile (docs/data.md),
and a params.yaml that is the project's with the Kaggle notebook's merged over it
(``kaggle_kernel/params.kaggle.yaml``: a 1,024-px cache, the session's tune sample, views and
workers). The stages after cache merge ``benchmarks/scale_model.yaml`` over that: a small model
whose forward a CPU runs in seconds and which keeps all of its 100 detections per view, the load
the real model puts on everything after it. Training runs a few optimizer steps.

Each stage runs as ``dvc.yaml`` runs it (Mask R-CNN for the per-family stages), after its outputs
are removed. For each the run records its wall time, the peak memory of its process and its
worker processes together (the sum of their proportional set sizes, sampled from every 50 ms to every
second: shared pages count once), the bytes of its outputs, and the counts it handled (images, instances,
detections, catalogue items). Each stage's output goes to ``<size>/<stage>.log``, its progress bar
to the terminal. From several sizes, ``benchmarks/scale_report.py`` fits each cost's growth and
extrapolates it to the real data; this script writes the JSON, the table and the figure.

  python benchmarks/scale.py --sizes 456 1369 4562
  python benchmarks/scale.py --sizes 456 1369 4562 --stages tune evaluate   # again, on the outputs kept
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import BinaryIO

import pandas as pd
import psutil
import pyarrow.parquet as pq
import yaml

sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).resolve().parent)]
import scale_figure  # noqa: E402
import scale_report  # noqa: E402

from pipeline.config.params import with_overrides  # noqa: E402
from pipeline.utils.pool import available_cpus  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
REAL_TRAIN, REAL_TEST = scale_report.REAL_TRAIN, scale_report.REAL_TEST
FAMILY = "maskrcnn"
DATA_STAGES = ("download", "prepare", "folds", "cache")
STAGES = (*DATA_STAGES, "train", "predict", "tune", "evaluate", "submission", "compare", "index")
TRAIN_STEPS = 4
SMALL_MODEL = REPO / "benchmarks" / "scale_model.yaml"
REAL_PROFILE = {"profile": "real", "min_side": 296, "max_side": 8688, "attribute_rate": 0.2, "size_defect": True}


def workspace_params(folder: Path, train_images: int, stage: str) -> None:
    """params.yaml for one stage at one size: the project's, the Kaggle notebook's, the real profile, and
    for the stages after cache the small model."""
    merged = scale_report.kaggle_params(REPO)
    merged["data"]["source"] = "synthetic"
    merged["synthetic"].update(REAL_PROFILE, train_images=train_images,
                               test_images=max(1, round(train_images * REAL_TEST / REAL_TRAIN)))
    merged["compare"]["families"] = [FAMILY]
    merged["model"]["family"] = merged["index"]["family"] = FAMILY
    for section in ("cache", "tune", "evaluate", "submission"):  # 0 would run small sizes in-process: one regime
        merged[section]["workers"] = available_cpus()           # at every size, as the real data's would run
    (folder / "params.yaml").write_text(yaml.safe_dump(merged, sort_keys=False), encoding="utf-8")
    if stage not in DATA_STAGES:
        (folder / "params.yaml").write_text(yaml.safe_dump(with_overrides(folder / "params.yaml", SMALL_MODEL),
                                                           sort_keys=False), encoding="utf-8")


def stage_definitions() -> dict[str, dict]:
    """dvc.yaml's stages, the per-family ones for ``FAMILY``, with the few ``${...}`` they use filled in."""
    filled = {"${item}": FAMILY, "${train.launcher}": "python", "${model.family}": FAMILY, "${index.family}": FAMILY}
    stages = {}
    for name, stage in yaml.safe_load((REPO / "dvc.yaml").read_text(encoding="utf-8"))["stages"].items():
        text = yaml.safe_dump(stage.get("do", stage))
        for placeholder, value in filled.items():
            text = text.replace(placeholder, value)
        if "${" in text:
            raise SystemExit(f"dvc.yaml's stage {name} uses a variable this benchmark does not fill in")
        stages[name] = yaml.safe_load(text)
    stages["train"]["cmd"] += f" --max-steps {TRAIN_STEPS} --no-resume"
    return stages


def output_paths(folder: Path, stage: dict) -> list[Path]:
    entries = [*stage.get("outs", []), *stage.get("metrics", [])]
    return [folder / (entry if isinstance(entry, str) else next(iter(entry))) for entry in entries]


def output_bytes(paths: list[Path]) -> int:
    files = [p for path in paths for p in ([path] if path.is_file() else path.rglob("*")) if p.is_file()]
    return sum(p.stat().st_size for p in files)


def process_memory(process: psutil.Process) -> int:
    """Proportional set size where the system reports it (shared pages split between their users), else RSS."""
    try:
        return process.memory_full_info().pss
    except (AttributeError, psutil.AccessDenied):
        return process.memory_info().rss


def peak_memory(process: subprocess.Popen) -> int:
    """Until ``process`` ends: the largest sum of memory over it and its descendants, in bytes. Sampled every
    50 ms at first, for stages of seconds, then less often (every second from 20 s on): reading proportional
    sizes costs milliseconds per process."""
    root, peak, start = psutil.Process(process.pid), 0, time.perf_counter()
    while process.poll() is None:
        total = 0
        try:
            for member in [root, *root.children(recursive=True)]:
                total += process_memory(member)
        except psutil.Error:  # a worker ended between listing and reading it
            pass
        peak = max(peak, total)
        time.sleep(min(1.0, 0.05 + (time.perf_counter() - start) / 20))
    return peak


def _copy_output(source: BinaryIO, log: BinaryIO, terminal: BinaryIO) -> None:
    """The stage's output into its log, and onto the terminal: its progress bars are the run's progress."""
    for chunk in iter(lambda: source.read1(4096), b""):
        log.write(chunk)
        terminal.write(chunk)
        terminal.flush()


def run_stage(folder: Path, name: str, stage: dict, python: list[str]) -> dict:
    """Remove ``stage``'s outputs, run its command in ``folder`` (``python`` for its interpreter): its time, peak
    memory and output bytes."""
    paths = output_paths(folder, stage)
    for path in paths:
        shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
    command = shlex.split(stage["cmd"])
    command[:1] = python if command[0] == "python" else command[:1]
    log_path = folder / f"{name}.log"
    with open(log_path, "wb") as log:
        start = time.perf_counter()
        process = subprocess.Popen(command, cwd=folder, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        copier = threading.Thread(target=_copy_output, args=(process.stdout, log, sys.stderr.buffer))
        copier.start()
        peak = peak_memory(process)
        copier.join()
        seconds = time.perf_counter() - start
    if process.returncode != 0:
        raise SystemExit(f"stage {name} failed in {folder}:\n{log_path.read_text(errors='replace')[-3000:]}")
    return {"seconds": seconds, "peak_bytes": peak, "output_bytes": output_bytes(paths)}


def detections(folder: Path) -> int:
    return pq.ParquetFile(folder / "detections.parquet").metadata.num_rows


def counts(folder: Path) -> dict[str, int]:
    """What the stages handled at one size: the count each stage's cost is fitted against."""
    report = json.loads((folder / "reports" / "data.json").read_text())
    params = yaml.safe_load((folder / "params.yaml").read_text())
    folds = pd.read_csv(folder / "data" / "folds.csv")
    predictions = folder / "predictions" / FAMILY
    found = {"images": report["images_kept"], "instances": report["rows_kept"],
             "val_images": int((folds.fold == params["train"]["fold"]).sum()),
             "test_images": len(list((folder / "data" / "raw" / "test").iterdir())),
             "train_steps": TRAIN_STEPS}
    if (predictions / "test" / "detections.parquet").is_file():
        found["val_detections"] = detections(predictions / "val")
        found["test_detections"] = detections(predictions / "test")
        found["predicted_images"] = found["val_images"] + found["test_images"]
    if (tune := folder / "reports" / FAMILY / "tune.json").is_file():
        found["tuned_images"] = json.loads(tune.read_text())["images"]
    if (items := folder / "index" / "items.parquet").is_file():
        found["catalogue_items"] = pq.ParquetFile(items).metadata.num_rows
    return found


def measure_size(work: Path, train_images: int, stages: dict, names: list[str], python: list[str]) -> dict:
    """Run the stages ``names`` at one size, each with its progress; a stage left out must have run before."""
    folder = work / f"train-{train_images}"
    folder.mkdir(parents=True, exist_ok=True)
    rows = {}
    for number, name in enumerate(names, 1):
        print(f"[{train_images} images] stage {number}/{len(names)}: {name}", file=sys.stderr, flush=True)
        workspace_params(folder, train_images, name)
        rows[name] = run_stage(folder, name, stages[name], python)
        print(f"{train_images:>7} images  {name:<10} {rows[name]['seconds']:8.1f} s  "
              f"{rows[name]['peak_bytes'] / 2**20:8.0f} MiB  {rows[name]['output_bytes'] / 2**20:9.1f} MiB out",
              flush=True)
    return {"stages": rows, "counts": counts(folder), "cpus": available_cpus()}


def merged_results(path: Path, results: dict[int, dict]) -> dict[int, dict]:
    """The results of an earlier run (``--json``), with this run's stages replacing theirs."""
    earlier = {int(size): row for size, row in json.loads(path.read_text())["sizes"].items()} if path.is_file() else {}
    for size, row in results.items():
        kept = earlier.get(size, {"stages": {}, "counts": {}})
        earlier[size] = {"stages": {**kept["stages"], **row["stages"]}, "counts": {**kept["counts"], **row["counts"]},
                         "cpus": row["cpus"]}
    return dict(sorted(earlier.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[456, 1369, 4562], help="train images per run")
    parser.add_argument("--work", type=Path, default=REPO / "build" / "scale")
    parser.add_argument("--stages", nargs="+", choices=STAGES, default=list(STAGES),
                        help="the stages to run (again); those left out must have run at each size before")
    parser.add_argument("--python", default=shlex.quote(sys.executable),
                        help="the command that runs a stage's python (default: this interpreter)")
    parser.add_argument("--report-only", action="store_true", help="run nothing: the report of --work's scale.json")
    args = parser.parse_args()
    stages = stage_definitions()
    names = [] if args.report_only else [name for name in STAGES if name in args.stages]
    python = shlex.split(args.python)
    results = {size: measure_size(args.work, size, stages, names, python) for size in sorted(args.sizes) if names}
    results = merged_results(args.work / "scale.json", results)
    if not results:
        raise SystemExit(f"{args.work / 'scale.json'}: no results to report")
    report = scale_report.report(results, REPO)
    (args.work / "scale.json").write_text(json.dumps({"sizes": results, "report": report}, indent=2))
    (args.work / "scale.md").write_text(scale_report.markdown(results, report), encoding="utf-8")
    scale_figure.draw(results, report, args.work / "scale.png")
    print(f"\n{(args.work / 'scale.md').read_text(encoding='utf-8')}\nfigure: {args.work / 'scale.png'}")


if __name__ == "__main__":
    main()
