"""Atomic writes: the previous version survives any failure, debris of a killed writer goes, a full disk says so."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from pipeline.utils.io import DiskFullError, as_json, atomic_path, atomic_write, write_json

from small_disk import needs_tmpfs, on_small_disk

REPO = Path(__file__).resolve().parents[2]


def dead_pid() -> int:
    """The id of a process that has ended."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_killed_writers_temporary_is_removed_by_the_next_write_and_a_live_ones_kept(tmp_path):
    stale = tmp_path / f".last.pt.tmp-{dead_pid()}"
    stale.write_bytes(b"half a checkpoint")
    other_stale = tmp_path / f".submission.csv.tmp-{dead_pid()}"
    other_stale.mkdir()
    alive = tmp_path / f".last.pt.tmp-{os.getppid()}"  # the test runner's parent is running
    alive.write_bytes(b"being written")
    atomic_write(tmp_path / "last.pt", b"new")
    assert sorted(p.name for p in tmp_path.iterdir()) == [alive.name, "last.pt"]


def test_a_failed_write_leaves_the_previous_file_and_no_temporary(tmp_path):
    target = tmp_path / "report.json"
    write_json(target, {"version": 1})
    with pytest.raises(RuntimeError, match="writer broke"), atomic_path(target) as tmp:
        tmp.write_text("partial")
        raise RuntimeError("writer broke")
    assert target.read_text() == '{\n  "version": 1\n}\n'
    assert list(tmp_path.iterdir()) == [target]


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT])
def test_a_full_disk_names_the_file_and_the_space_it_needed(tmp_path, code):
    target = tmp_path / "predictions.parquet"
    atomic_write(target, b"old")
    with pytest.raises(DiskFullError) as caught, atomic_path(target, size=12_300_000) as tmp:
        tmp.write_bytes(b"x" * 1000)
        raise OSError(code, os.strerror(code))
    assert str(caught.value).startswith(f"no space left on device while writing {target} (12.3 MB needed, ")
    assert target.read_bytes() == b"old" and list(tmp_path.iterdir()) == [target]


def test_without_a_known_size_the_message_says_how_much_was_written(tmp_path):
    with pytest.raises(DiskFullError, match=r"\(0.5 MB written when it filled, "), atomic_path(tmp_path / "x") as tmp:
        tmp.write_bytes(b"x" * 500_000)
        raise OSError(errno.ENOSPC, "No space left on device")


def test_other_os_errors_pass_unchanged(tmp_path):
    with pytest.raises(PermissionError), atomic_path(tmp_path / "x"):
        raise PermissionError(errno.EACCES, "Permission denied")


def test_a_key_compares_equal_to_its_stored_json_form():
    key = {"model": {"anchor_sizes": (8, 16), "ratios": (0.5, 1.0)}, "views": ["x1"]}
    assert as_json(key) == {"model": {"anchor_sizes": [8, 16], "ratios": [0.5, 1.0]}, "views": ["x1"]}
    assert as_json(as_json(key)) == as_json(key) != key


# --- a real full disk: a tmpfs in a private mount namespace ------------------------------------------------------

KINDS = ("bytes", "checkpoint", "torch_path", "parquet")
WRITERS = textwrap.dedent("""
    import sys, numpy as np, pandas as pd, torch
    from pathlib import Path
    from pipeline.utils import checkpoint
    from pipeline.utils import io
    disk = Path(sys.argv[1])
    big = np.random.default_rng(0).random(300_000)  # 2.4 MB of float64: more than the disk holds
    for kind in sys.argv[2:]:
        target = disk / f"out.{kind}"
        io.atomic_write(target, b"previous")
        try:
            if kind == "bytes":
                io.atomic_write(target, big.tobytes())
            elif kind == "checkpoint":
                checkpoint.save(target, {"model": {"w": torch.from_numpy(big)}})
            elif kind == "torch_path":  # torch writing to a path itself: its C++ stream error carries no errno
                with io.atomic_path(target) as tmp:
                    torch.save({"w": torch.from_numpy(big)}, tmp)
            else:
                with io.atomic_path(target) as tmp:
                    pd.DataFrame({"x": big}).to_parquet(tmp)
        except io.DiskFullError as exc:
            print(f"{kind} error: {exc}")
        print(f"{kind} previous intact:", target.read_bytes() == b"previous", sorted(p.name for p in disk.iterdir()))
        target.unlink()
""")


@pytest.fixture(scope="module")
def full_disk_writes(tmp_path_factory) -> tuple[Path, str]:
    """Each kind of output written to a 1 MB disk, once, in one process (torch imports once)."""
    disk = tmp_path_factory.mktemp("full") / "disk"
    disk.mkdir()
    done = on_small_disk(disk, 1, sys.executable, "-c", WRITERS, str(disk), *KINDS)
    assert done.returncode == 0, done.stderr
    return disk, done.stdout


@needs_tmpfs
@pytest.mark.parametrize("kind", KINDS)
def test_a_really_full_disk_is_reported_for_every_kind_of_output(full_disk_writes, kind):
    disk, said = full_disk_writes
    assert f"{kind} error: no space left on device while writing {disk}/out.{kind} (" in said, said
    if kind in ("bytes", "checkpoint"):
        assert f"{kind} error: no space left on device while writing {disk}/out.{kind} (2.4 MB needed, " in said, \
            "the size is known in advance"
    assert f"{kind} previous intact: True ['out.{kind}']" in said, "no temporary is left"
