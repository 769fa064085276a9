"""A training batch that the model cannot take is reported with the images it held.

The families are built to take every valid input (``tests/models/test_contract.py``), but a real
run of 45,625 images can still meet one that none of the tests foresaw, hours in. A traceback from
inside torchvision says neither which images nor where in the run. The error keeps its type and
traceback (it may be a bug to report, or CUDA running out of memory on a large image) and gains a
note naming the batch's images, the epoch and the step.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

from pipeline.utils.errors import PipelineError

log = logging.getLogger(__name__)


@contextlib.contextmanager
def naming_images(metas: list[dict], epoch: int, step: int) -> Iterator[None]:
    """Add to any error of the block, other than the pipeline's own (whose message says all), the batch's images."""
    try:
        yield
    except PipelineError:
        raise
    except Exception as exc:
        images = ", ".join(str(meta["image_id"]) for meta in metas)
        note = (f"while training on the batch of images {images} (epoch {epoch + 1}, after {step} optimizer "
                "steps): look at these images and their rows of train.csv")
        if hasattr(exc, "add_note"):  # Python 3.11 and later
            exc.add_note(note)
        else:
            log.error("%s", note)
        raise
