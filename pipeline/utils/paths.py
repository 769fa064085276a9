"""File names that come from data (an ImageId of ``train.csv``, a catalogue's items) and the paths built from them.

A name read from a file a user did not write must never reach outside the folder it is
joined to: ``/srv/photos/v.jpg`` or ``../../victim.jpg`` as an ImageId would make the cache
overwrite that file. Every such name must be a plain file name, and every path built from
one is checked to lie directly in its folder (by the path's text, so that a folder or file
reached through a symbolic link, as ``data.source: dir`` makes them, is still read in place).
"""

from __future__ import annotations

import os
from pathlib import Path

from pipeline.utils.errors import PipelineError

_SEPARATORS = ("/", "\\")  # a backslash too: a Windows path in a CSV names a folder, not a character


class UnsafePathError(PipelineError, ValueError):
    """A name from data that is not a plain file name, or a path built from one that leaves its folder."""


def name_problem(name: str) -> str | None:
    """Why ``name`` is not a plain file name (no folder, no ``..``, not absolute, no control character), or None."""
    if not name:
        return "it is empty"
    if name in (".", ".."):
        return f"{name!r} is a folder, not a file"
    if any(separator in name for separator in _SEPARATORS):
        return "it holds a path separator"
    if "\x00" in name:
        return "it holds a NUL character"
    if any(ord(character) < 32 for character in name):
        return "it holds a control character"
    return None


def inside(folder: Path | str, name: str, what: str = "file name") -> Path:
    """``folder / name``, refused with :class:`UnsafePathError` unless ``name`` is a plain file name in ``folder``.

    ``what`` says where the name comes from, for the message (e.g. ``"ImageId of train.csv, line 7"``).
    """
    folder = Path(folder)
    if (problem := name_problem(str(name))) is None:
        path = folder / name
        if os.path.dirname(os.path.abspath(path)) == os.path.abspath(folder):
            return path
        problem = "it leaves the folder"
    raise UnsafePathError(f"{what} {name!r} is not a plain file name ({problem}); nothing is read or written "
                          f"outside {folder}")
