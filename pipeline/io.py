"""Atomic writes: a reader never sees a half-written output, an interrupted run leaves no debris."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def remove(path: Path) -> None:
    """Delete a file, link or folder if there is one; a link is removed, not what it points to."""
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.is_dir():
        shutil.rmtree(path)


@contextmanager
def atomic_path(path: Path | str) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` (file or directory); rename it over ``path`` on success.

    A directory already at ``path`` is replaced. Symbolic links inside it are removed, never
    followed, so data read in place through links is never touched.
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".{final.name}.tmp-{os.getpid()}")
    remove(tmp)
    try:
        yield tmp
        if final.is_dir() and not final.is_symlink():
            remove(final)
        os.replace(tmp, final)
    finally:
        remove(tmp)


def write_json(path: Path | str, data: Any) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
