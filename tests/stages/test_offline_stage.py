"""``tests/offline_stage.py``, the runner of the stage runs that must reach no network, refuses it for sure."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from stage_runs import REPO

#: A module that tries the network as telemetry would: quietly, its failures swallowed.
QUIET_ATTEMPT = """
import socket
try:
    {call}
except Exception:
    pass
print("carried on")
"""
#: A Unix socket (how DataLoader workers hand over tensors) still connects.
UNIX_SOCKET = """
import os, socket
path = os.path.join(os.environ["SCRATCH"], "s")
server = socket.socket(socket.AF_UNIX)
server.bind(path)
server.listen()
socket.socket(socket.AF_UNIX).connect(path)
print("carried on")
"""


def _offline(tmp_path: Path, code: str) -> subprocess.CompletedProcess:
    (tmp_path / "attempt.py").write_text(code)
    return subprocess.run([sys.executable, str(REPO / "tests" / "offline_stage.py"), "-m", "attempt"], cwd=REPO,
                          capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{tmp_path}", "SCRATCH": str(tmp_path)})


@pytest.mark.parametrize(("call", "said"), [
    ('socket.create_connection(("example.com", 80), timeout=1)', "socket.create_connection(('example.com', 80),)"),
    ('socket.getaddrinfo("example.com", 80)', "socket.getaddrinfo('example.com', 80)"),
    ('socket.socket().connect(("93.184.215.14", 80))', "socket.connect(('93.184.215.14', 80),)"),
    ('socket.socket(socket.AF_INET6).connect_ex(("::1", 80))', "socket.connect_ex(('::1', 80),)"),
])
def test_a_swallowed_network_attempt_still_ends_the_run(tmp_path, call, said):
    done = _offline(tmp_path, QUIET_ATTEMPT.format(call=call))
    assert done.returncode == 86 and "carried on" not in done.stdout
    assert done.stderr.startswith(f"network access refused: {said}, at\n"), done.stderr


def test_unix_sockets_stay_open(tmp_path):
    done = _offline(tmp_path, UNIX_SOCKET)
    assert done.returncode == 0 and done.stdout == "carried on\n", done.stderr
