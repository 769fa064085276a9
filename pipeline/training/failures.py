"""A training batch that the model cannot take is reported with the images it held.

The families are built to take every valid input (``tests/models/test_contract.py``), but a real
run of 45,625 images can still meet one that none of the tests foresaw, hours in. A bare traceback
from inside torchvision says neither which images nor where in the run; this error says both, so
the user can look at the images (and leave them out of ``train.csv`` to go on).
"""

from __future__ import annotations

import contextlib
import traceback
from collections.abc import Iterator
from pathlib import Path

from pipeline.utils.errors import PipelineError


class BatchError(PipelineError):
    """The model's forward or backward pass failed on a training batch."""


@contextlib.contextmanager
def naming_images(metas: list[dict], epoch: int, step: int) -> Iterator[None]:
    """Raise any error of the block, other than the pipeline's own, as a ``BatchError`` naming the batch's images."""
    try:
        yield
    except PipelineError:
        raise
    except Exception as exc:
        frame = traceback.extract_tb(exc.__traceback__)[-1]
        images = ", ".join(str(meta["image_id"]) for meta in metas)
        raise BatchError(
            f"training failed on the batch of images {images} (epoch {epoch + 1}, after {step} optimizer steps): "
            f"{type(exc).__name__}: {exc} (in {Path(frame.filename).name}, line {frame.lineno}). Look at these "
            "images and their rows of train.csv; leaving them out lets the run go on.") from exc
