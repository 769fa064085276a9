"""Atomic writes: a reader never sees a half-written output, an interrupted run leaves no debris, a full disk
says so.

Every output is written to a temporary sibling ``.<name>.tmp-<pid>`` and renamed over the target
only when complete, so the previous version stays intact whatever happens. A process killed
mid-write leaves its temporary behind; the next write of the same target removes it. A disk
that fills up mid-write ends in :class:`DiskFullError`, naming the target and the space needed.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pipeline.utils.errors import PipelineError

_DISK_FULL = {errno.ENOSPC, errno.EDQUOT}
# torch.save to a path writes through C++ streams, which lose errno: a full disk reads as one of these.
_TORCH_WRITE_FAILURES = ("iostream error", "unexpected pos", "file write failed")
_TEMPORARY = re.compile(r"\..+\.tmp-(\d+)")
_swept: set[tuple[Path, int]] = set()  # (folder, process) pairs already cleared of stale temporaries


class DiskFullError(PipelineError):
    """The file system ran out of space while an output was written; the previous output is intact."""


def remove(path: Path) -> None:
    """Delete a file, link or folder if there is one; a link is removed, not what it points to."""
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.is_dir():
        shutil.rmtree(path)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def _remove_stale(folder: Path) -> None:
    """Temporaries in ``folder`` left by processes that no longer run (killed mid-write).

    Once per folder and process: a folder of many outputs (the image cache) is listed once, not
    once per file written into it.
    """
    if (folder, os.getpid()) in _swept:
        return
    for path in folder.iterdir():
        found = _TEMPORARY.fullmatch(path.name)
        if found and not _running(int(found[1])):
            remove(path)
    _swept.add((folder, os.getpid()))


def _size_on_disk(path: Path) -> int:
    if path.is_symlink() or not path.exists():
        return 0
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def _is_disk_full(exc: BaseException, folder: Path) -> bool:
    for link in _chain(exc):
        if isinstance(link, OSError) and link.errno in _DISK_FULL:
            return True
    torch_failure = any(isinstance(link, RuntimeError) and any(s in str(link) for s in _TORCH_WRITE_FAILURES)
                        for link in _chain(exc))
    return torch_failure and shutil.disk_usage(folder).free < 1 << 20


@contextmanager
def atomic_path(path: Path | str, size: int | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` (file or directory); rename it over ``path`` on success.

    A directory already at ``path`` is replaced. Symbolic links inside it are removed, never
    followed, so data read in place through links is never touched. ``size`` (bytes, when the
    caller knows it) is what a :class:`DiskFullError` reports as needed; otherwise it reports
    how much had been written when the disk filled.
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale(final.parent.resolve())
    tmp = final.with_name(f".{final.name}.tmp-{os.getpid()}")
    remove(tmp)
    try:
        yield tmp
        if final.is_dir() and not final.is_symlink():
            remove(final)
        os.replace(tmp, final)
    except Exception as exc:
        if not _is_disk_full(exc, final.parent):
            raise
        written = _size_on_disk(tmp)
        remove(tmp)
        needed = f"{size / 1e6:.1f} MB needed" if size else f"{written / 1e6:.1f} MB written when it filled"
        free = shutil.disk_usage(final.parent).free
        raise DiskFullError(f"no space left on device while writing {final} ({needed}, "
                            f"{free / 1e6:.1f} MB free)") from exc
    finally:
        remove(tmp)


def atomic_write(path: Path | str, data: bytes | str) -> None:
    """Write ``data`` (text as UTF-8) to ``path`` atomically."""
    content = data.encode("utf-8") if isinstance(data, str) else data
    with atomic_path(path, size=len(content)) as tmp:
        tmp.write_bytes(content)


def write_json(path: Path | str, data: Any) -> None:
    atomic_write(path, json.dumps(data, indent=2) + "\n")


def as_json(data: Any) -> Any:
    """``data`` as it reads back from JSON (tuples become lists, keys strings): a key stored in a JSON
    file compares equal to this form of the key that made it, never to the original."""
    return json.loads(json.dumps(data))
