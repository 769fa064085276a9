"""The photos a command was given: files, folders and patterns, in a stable order."""

from __future__ import annotations

import glob
from pathlib import Path

from PIL import Image

from pipeline.utils.errors import PipelineError

#: What PIL may open a photo as: photo formats only (no PostScript, whose reader would run Ghostscript; PIL's JPEG
#: reader also opens phones' multi-picture JPEGs).
PHOTO_FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "GIF", "TIFF")
#: What a folder given as photos is read for (compared without case): the suffixes PIL gives ``PHOTO_FORMATS``.
PHOTO_SUFFIXES = (".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".apng", ".webp", ".bmp", ".gif", ".tif", ".tiff")
#: What PIL raises for a damaged photo, while opening or decoding it, whatever the reader (a TIFF with a broken
#: tag raises KeyError or TypeError; PIL's own pixel limit, DecompressionBombError).
DECODE_ERRORS = (OSError, SyntaxError, ValueError, TypeError, KeyError, Image.DecompressionBombError)


def names_many(given: str | Path) -> bool:
    """Whether ``given`` is a folder or a pattern (``*``, ``?``, ``[``) rather than one photo's file."""
    return not Path(given).is_file() and (Path(given).is_dir() or glob.has_magic(str(given)))


def photo_paths(inputs: list[str]) -> list[Path]:
    """The photos ``inputs`` name, in order: a folder gives its images (``PHOTO_SUFFIXES``, sorted), a pattern
    (``*``, ``?``, ``[``) its matches (sorted), a file itself (a missing one is reported when it is read)."""
    paths: list[Path] = []
    for given in inputs:
        if Path(given).is_file():
            found, what = [Path(given)], ""
        elif Path(given).is_dir():
            found = sorted(p for p in Path(given).iterdir() if p.is_file() and p.suffix.lower() in PHOTO_SUFFIXES)
            what = f"{given}: a folder with no images ({', '.join(PHOTO_SUFFIXES)})"
        elif glob.has_magic(given):
            found = sorted(Path(p) for p in glob.glob(given, recursive=True) if Path(p).is_file())
            what = f"{given}: no file matches this pattern"
        else:
            found, what = [Path(given)], ""
        if not found:
            raise PipelineError(what)
        paths += found
    return paths
