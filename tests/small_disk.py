"""A small file system for one command: a tmpfs mounted in a private mount namespace (unshare -rm).

Nothing outside the command sees the mount, and no privileges are needed where Linux allows user
namespaces (as on the development and CI machines); elsewhere the tests that need it are skipped.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def can_mount_tmpfs() -> bool:
    unshare = shutil.which("unshare")
    return bool(unshare) and subprocess.run([unshare, "-rm", "sh", "-c", "mount -t tmpfs -o size=1m tmpfs /mnt"],
                                            capture_output=True).returncode == 0


needs_tmpfs = pytest.mark.skipif(not can_mount_tmpfs(), reason="needs unshare -rm and a tmpfs mount (Linux)")


def on_small_disk(mount: Path, megabytes: float, *command: str, timeout: int = 300) -> subprocess.CompletedProcess:
    """Run ``command`` with a ``megabytes`` tmpfs mounted at ``mount`` (an existing folder), seen by it alone."""
    script = f'mount -t tmpfs -o size={int(megabytes * 1024)}k tmpfs "{mount}" && exec "$@"'
    return subprocess.run(["unshare", "-rm", "sh", "-c", script, "sh", *command], capture_output=True, text=True,
                          timeout=timeout, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})


