"""Ordered maps over a pool of processes, or in-process when the work is too small to pay for one."""

from __future__ import annotations

import contextlib
import multiprocessing
import os
from collections.abc import Callable, Iterator
from typing import Any


def available_cpus() -> int:
    """The CPUs this process may run on (a container's or a job's limit, not the machine's count)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def worker_count(workers: int, tasks: int, pool_from: int) -> int:
    """``workers`` when set; else one per available CPU from ``pool_from`` tasks, and none (1) below."""
    if workers:
        return workers
    return available_cpus() if tasks >= pool_from else 1


@contextlib.contextmanager
def ordered_map(workers: int, initializer: Callable[..., Any] | None = None,
                initargs: tuple = ()) -> Iterator[Callable[..., Iterator]]:
    """``imap(function, tasks, chunksize)`` over ``workers`` processes, results in the tasks' order; the
    built-in ``map`` in this process for one worker. Spawned, not forked: a forked child of a process
    that has run torch's OpenMP threads can hang."""
    if workers <= 1:
        yield lambda function, tasks, chunksize=1: map(function, tasks)
        return
    with multiprocessing.get_context("spawn").Pool(workers, initializer, initargs) as pool:
        yield pool.imap
