"""What stages segment and similar share: the model arguments and the segmenter they build from params."""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import torch

from pipeline.config.inference import PostprocessParams, PredictParams
from pipeline.config.model import ModelParams
from pipeline.config.params import load_section
from pipeline.config.shop import SegmentParams
from pipeline.data.labels import load_labels
from pipeline.inference.predict import checkpoint_path, load_model, make_views
from pipeline.models import registry
from pipeline.shop.segment import Segmenter
from pipeline.utils.device import use_cuda
from pipeline.utils.errors import PipelineError
from stages._cli import tuned_postprocess


def add_model_arguments(cli: argparse.ArgumentParser) -> None:
    cli.add_argument("--run-dir", type=Path, help="training run folder (default: models/<family>)")
    cli.add_argument("--tuned", type=Path, help="tuned post-processing (default: tuning/<family>/postprocess.yaml)")
    cli.add_argument("--labels", type=Path, default=Path("data/raw/label_descriptions.json"),
                     help="label_descriptions.json (default: data/raw/label_descriptions.json)")


def open_segmenter(args: argparse.Namespace, family: str | None) -> tuple[Segmenter, dict]:
    """The segmenter of ``family`` (default ``model.family``) and a description of its model for the JSON."""
    family = family or load_section(args.params, "model", ModelParams).family
    config = registry.load(args.params, family)
    segment = load_section(args.params, "segment", SegmentParams)
    predict = load_section(args.params, "predict", PredictParams)
    postprocess = load_section(tuned_postprocess(args.params, args.tuned, family), "postprocess", PostprocessParams)
    labels = load_labels(args.labels)
    device = torch.device("cuda" if use_cuda(segment.device, "segment") else "cpu")
    checkpoint = checkpoint_path(args.run_dir or Path("models") / family, "best", doing="segmenting")
    model = load_model(checkpoint, config, device, len(labels.attributes))
    views = make_views(predict.scales, predict.hflip)
    segmenter = Segmenter(model, config.model, views, postprocess, labels, segment.max_side, device,
                          segment.precision if device.type == "cuda" else "fp32")
    return segmenter, {"family": family, "checkpoint": str(checkpoint), "views": [v.name for v in views]}


def for_each_photo(paths: list[Path], work: Callable[[Path, str], str], doing: str) -> None:
    """``work(path, output name)`` for each photo, printing what it returns; a photo that fails is reported and
    skipped, and the exit status is 1 when any failed."""
    failed = 0
    for path, name in zip(paths, output_names(paths), strict=True):
        try:
            print(f"{path}: {work(path, name)}")
        except PipelineError as exc:
            failed += 1
            print(f"error: {exc}", file=sys.stderr)
    if failed:
        sys.exit(f"{failed} of {len(paths)} photo(s) could not be {doing} (errors above)")


def output_names(paths: list[Path]) -> list[str]:
    """Each photo's file stem, numbered where two photos share one."""
    seen: Counter = Counter()
    names = []
    for path in paths:
        seen[path.stem] += 1
        names.append(path.stem if seen[path.stem] == 1 else f"{path.stem}-{seen[path.stem]}")
    return names
