"""What every stage shares: the --params argument and turning pipeline errors into one clear line."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

from pipeline.config.model import ModelParams
from pipeline.config.params import load_section
from pipeline.utils.errors import PipelineError


def parser(description: str) -> argparse.ArgumentParser:
    cli = argparse.ArgumentParser(description=description)
    cli.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    return cli


def positive(text: str) -> int:
    """An argparse type: an integer of at least 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of at least 1")
    return value


def add_family(cli: argparse.ArgumentParser) -> None:
    """--family: the model family to run (dvc.yaml's per-family stages pass it); default ``model.family``."""
    cli.add_argument("--family", help="model family (a params section, e.g. maskrcnn or unet); default: model.family")


def require_inputs(args: argparse.Namespace, made_by: Mapping[str, str]) -> None:
    """Each path argument of ``made_by`` (by its dest, e.g. ``"instances"``) must exist; otherwise an error that
    names the stage of dvc.yaml that makes it. Checked before anything heavy is imported or read."""
    for dest, stage in made_by.items():
        path = getattr(args, dest)
        if path is not None and not Path(path).exists():
            option = "--" + dest.replace("_", "-")
            raise PipelineError(f"{path} ({option}) does not exist: run stage {stage} first (dvc repro {stage})")


def tuned_postprocess(params: str, tuned: Path | None, family: str | None = None) -> Path:
    """``--tuned`` if given, else the tuning of ``family`` (default the submission's, ``model.family``):
    ``tuning/<family>/postprocess.yaml``."""
    return tuned or Path("tuning") / (family or load_section(params, "model", ModelParams).family) / "postprocess.yaml"


def run(main: Callable[[], None]) -> None:
    """Run a stage; bad input or set-up exits with status 1 and the error's message, no traceback.

    The library's log (INFO and above) goes to standard error, one line a message, beside the progress bars;
    other libraries keep their own settings.
    """
    logger = logging.getLogger("pipeline")
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
    try:
        main()
    except PipelineError as exc:
        sys.exit(f"error: {exc}")
