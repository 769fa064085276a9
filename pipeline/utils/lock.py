"""One writer at a time for an output that is written in place over a long run (a prediction folder, the cache).

Two runs writing one resumable folder at once each take the other's parts for their own; the
second must stop at once and say who holds the folder. The lock is ``fcntl.flock`` on a file
beside the output, ``.<name>.lock``, which the kernel releases when its process ends however it
ends (a run killed with ``kill -9`` leaves no stale lock). The file holds who took it, for the
message, and is removed when the lock is given back.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pipeline.utils.errors import PipelineError


class BusyError(PipelineError):
    """Another process is writing the same output."""


def lock_path(target: Path | str) -> Path:
    target = Path(os.path.abspath(target))  # "." has no name of its own
    return target.with_name(f".{target.name}.lock")


def _holder(path: Path) -> str:
    try:
        who = json.loads(path.read_text(encoding="utf-8"))
        return (f"{who['command']} (process {who['pid']} on {who['host']}, since "
                f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(who['since']))})")
    except (OSError, ValueError, KeyError, TypeError):
        return "another process"


@contextmanager
def exclusive(target: Path | str, doing: str) -> Iterator[None]:
    """Hold the lock of ``target`` (a file or folder, which need not exist yet) while the block runs.

    Raises :class:`BusyError` naming the holder when another process has it. ``doing`` is what
    this process does, e.g. ``"stage predict"``, shown to a process that finds it busy.
    """
    path = lock_path(target)
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        handle = open(path, "a+", encoding="utf-8")  # noqa: SIM115 (held open for the lock's lifetime)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            raise BusyError(f"{target} is busy: {_holder(path)} is writing it; wait for it to finish or stop it"
                            ) from None
        try:
            same = os.stat(path).st_ino == os.fstat(handle.fileno()).st_ino
        except FileNotFoundError:
            same = False
        if same:  # else the holder removed the file as this process opened it: take the lock of the new one
            break
        handle.close()
    try:
        handle.truncate(0)
        handle.write(json.dumps({"command": doing, "pid": os.getpid(), "host": socket.gethostname(),
                                 "since": time.time()}))
        handle.flush()
        yield
    finally:
        path.unlink(missing_ok=True)
        handle.close()
