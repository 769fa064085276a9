"""The before/after table of ``benchmarks/gpu_check.sh``: every option's speed as a ratio to the plain path.

Reads the JSON files the check wrote (``train_*.json``, ``infer_*.json``) and prints, for
training, images/s, peak memory, fraction of peak and the ratio to ``train_baseline.json``; for
inference, images/s plain and with TTA, post-processing and encoding per image, and the
projected minutes for the 3,200 test images against ``infer_baseline.json``. It states whether
each target of docs/gpu.md is met: training at least twice the baseline, and the TTA submission
of the test images in at most two minutes. Writes the same as ``summary.json``.

  python benchmarks/gpu_summary.py benchmarks/results
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

TRAIN_TARGET = 2.0  # times the baseline's images/s
SUBMISSION_TARGET_MINUTES = 2.0  # 3,200 test images, flip x 2-scale TTA, post-processing and encoding


def _read(folder: Path, pattern: str) -> dict[str, dict]:
    return {path.stem: json.loads(path.read_text()) for path in sorted(folder.glob(pattern))}


def training_rows(runs: dict[str, dict]) -> list[dict]:
    base = runs.get("train_baseline", {}).get("images_per_second")
    return [{"run": name.removeprefix("train_"), "batch": r["batch"], "images_per_second": r["images_per_second"],
             "peak_memory_gib": r["peak_memory_gib"], "fraction_of_peak": r["fraction_of_peak"],
             "vs_baseline": round(r["images_per_second"] / base, 2) if base else None}
            for name, r in runs.items()]


def inference_rows(runs: dict[str, dict]) -> list[dict]:
    base = runs.get("infer_baseline", {}).get("projected_test_minutes_tta")
    return [{"run": name.removeprefix("infer_"), "plain_images_per_second": r["images_per_second_plain"],
             "tta_images_per_second": r["images_per_second_tta"],
             "post_seconds_per_image": r["postprocess_and_encode_seconds_per_image"],
             "projected_test_minutes_tta": r["projected_test_minutes_tta"],
             "speed_up": round(base / r["projected_test_minutes_tta"], 2) if base else None}
            for name, r in runs.items()]


def _table(rows: list[dict]) -> str:
    if not rows:
        return "(none)"
    keys = list(rows[0])
    lines = [" | ".join(keys), " | ".join("---" for _ in keys)]
    lines += [" | ".join(str(row[k]) for k in keys) for row in rows]
    return "\n".join(lines)


def main() -> None:
    cli = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    cli.add_argument("folder", type=Path)
    folder = cli.parse_args().folder
    train, infer = training_rows(_read(folder, "train_*.json")), inference_rows(_read(folder, "infer_*.json"))
    best_train = max((r["vs_baseline"] or 0 for r in train), default=0)
    best_minutes = min((r["projected_test_minutes_tta"] for r in infer), default=None)
    targets = {"training_at_least_2x": best_train >= TRAIN_TARGET,
               "best_training_ratio": best_train,
               "submission_within_2_minutes": best_minutes is not None and best_minutes <= SUBMISSION_TARGET_MINUTES,
               "best_projected_test_minutes_tta": best_minutes}
    print("training\n" + _table(train) + "\n\ninference\n" + _table(infer) + "\n\ntargets " + json.dumps(targets))
    (folder / "summary.json").write_text(json.dumps({"training": train, "inference": infer, "targets": targets},
                                                    indent=2) + "\n")


if __name__ == "__main__":
    main()
