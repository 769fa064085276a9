"""One writer per output: a second process is refused with the holder's name; a killed holder leaves no lock."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from pipeline.utils.lock import BusyError, exclusive, lock_path

REPO = Path(__file__).resolve().parents[2]
HOLD = """
import sys, time
from pipeline.utils.lock import exclusive
with exclusive(sys.argv[1], "stage predict"):
    print("held", flush=True)
    time.sleep(60)
"""


@contextmanager
def holder(target: Path) -> Iterator[subprocess.Popen]:
    """Another process holding ``target``'s lock until it is killed (at the latest when the block ends)."""
    with subprocess.Popen([sys.executable, "-c", HOLD, str(target)], cwd=REPO, stdout=subprocess.PIPE, text=True,
                          env={**os.environ, "PYTHONPATH": str(REPO)}) as process:
        try:
            assert process.stdout.readline().strip() == "held"
            yield process
        finally:
            process.kill()


def test_a_second_writer_is_told_who_holds_the_output(tmp_path):
    target = tmp_path / "predictions" / "val"
    with holder(target) as process, pytest.raises(BusyError, match=(
            rf"{target} is busy: stage predict \(process {process.pid} on .*, since "
            r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\) is writing it")), exclusive(target, "x"):
        pytest.fail("the lock was taken twice")


def test_a_killed_holder_leaves_the_output_free(tmp_path):
    target = tmp_path / "cache"
    with holder(target) as process:
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
    with exclusive(target, "stage cache"):
        assert lock_path(target).is_file()
    assert not lock_path(target).exists(), "given back, the lock file is removed"


def test_the_lock_is_given_back_when_the_work_fails(tmp_path):
    with pytest.raises(RuntimeError), exclusive(tmp_path / "out", "stage train"):
        raise RuntimeError("the work failed")
    started = time.monotonic()
    with exclusive(tmp_path / "out", "stage train"):
        pass
    assert time.monotonic() - started < 1
