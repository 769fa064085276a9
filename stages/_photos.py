"""What stages segment and similar share: the model arguments, the API's model they open, the loop over photos."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.config.model import ModelParams
from pipeline.config.params import load_section
from pipeline.data.labels import BUNDLED_LABELS
from pipeline.utils.errors import PipelineError
from stages._cli import tuned_postprocess

if TYPE_CHECKING:
    from pipeline.shop.model import FashionModel



def add_arguments(cli: argparse.ArgumentParser) -> None:
    """The photos, then the model's arguments."""
    cli.add_argument("photos", nargs="+", help="photos of any size: files, folders (every image inside, sorted) "
                                               "or quoted patterns such as 'shop/*.jpg'")
    add_model_arguments(cli)


def add_model_arguments(cli: argparse.ArgumentParser) -> None:
    """The run folder, its tuned post-processing and the label set."""
    cli.add_argument("--run-dir", type=Path, help="training run folder (default: models/<family>)")
    cli.add_argument("--tuned", type=Path, help="tuned post-processing (default: tuning/<family>/postprocess.yaml)")
    cli.add_argument("--labels", type=Path, default=BUNDLED_LABELS,
                     help="label_descriptions.json (default: the competition's label set, shipped in the package)")


def open_model(args: argparse.Namespace, family: str | None, index: Path | None = None) -> FashionModel:
    """The Python API's model of ``--run-dir`` (default ``models/<family>``, the family ``model.family`` unless
    given) with ``--params``, ``--tuned`` (default ``tuning/<family>/postprocess.yaml``) and ``--labels``."""
    from pipeline import load

    family = family or load_section(args.params, "model", ModelParams).family
    return load(args.run_dir or Path("models") / family, params=args.params,
                tuned=tuned_postprocess(args.params, args.tuned, family), index=index, labels=args.labels,
                family=family, project=Path("."))  # the working folder, where every stage runs


def for_each_photo(paths: list[Path], work: Callable[[Path, str], str], doing: str) -> None:
    """``work(path, output name)`` for each photo, printing what it returns and its milliseconds; a photo that
    fails is reported and skipped, and the exit status is 1 when any failed."""
    failed = 0
    for path, name in zip(paths, output_names(paths), strict=True):
        try:
            started = time.perf_counter()
            said = work(path, name)
            print(f"{path}: {said} ({(time.perf_counter() - started) * 1000:.0f} ms)")
        except PipelineError as exc:
            failed += 1
            print(f"error: {exc}", file=sys.stderr)
    if failed:
        sys.exit(f"{failed} of {len(paths)} photo(s) could not be {doing} (errors above)")


def output_names(paths: list[Path]) -> list[str]:
    """A distinct output name for each photo: its file stem, numbered (``-2``, ``-3``, ...) when an earlier photo
    took it, whatever the folders and extensions; compared without case, as macOS and Windows do."""
    taken: set[str] = set()
    names = []
    for path in paths:
        name, number = path.stem, 1
        while name.casefold() in taken:
            number += 1
            name = f"{path.stem}-{number}"
        taken.add(name.casefold())
        names.append(name)
    return names


def output_folder(path: Path, make: bool = True) -> Path:
    """``--out``, made if ``make``; a clear error when it is a file (checked first, before any model loads, and
    made only when there is something to write into it)."""
    if path.exists() and not path.is_dir():
        raise PipelineError(f"{path}: --out must be a folder, and this is a file")
    try:
        if make:
            path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise PipelineError(f"{path}: cannot make the output folder ({exc.strerror or exc})") from exc
    return path
