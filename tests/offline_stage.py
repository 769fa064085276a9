"""Run a stage as ``dvc.yaml`` does, with the network refused: the ``offline`` fixture of a stage subprocess.

``python tests/offline_stage.py -m stages.NAME ARGS...`` (or ``-c CODE``, as ``python -c``). Any attempt to
resolve a host name or to connect an internet socket ends the process at once with status ``REFUSED`` and
``network access refused: ...`` on stderr: no ``except`` in the stage can swallow it, and the test sees a
failed run. Unix sockets stay open (DataLoader workers hand tensors over them: not the network).
"""

from __future__ import annotations

import os
import runpy
import socket
import sys
import traceback

REFUSED = 86  # the exit status of a refused stage: no stage exits with it otherwise


def _refuse(what: str, args: tuple) -> None:
    sys.stderr.write(f"network access refused: {what}{args}, at\n")
    traceback.print_stack(file=sys.stderr)
    sys.stderr.flush()
    os._exit(REFUSED)


def refuse_network() -> None:
    """Patch ``socket`` so that this process reaches no other machine."""
    connect, connect_ex = socket.socket.connect, socket.socket.connect_ex

    def guarded(method, name: str):
        def call(self, *args):
            if self.family in (socket.AF_INET, socket.AF_INET6):
                _refuse(name, args)
            return method(self, *args)

        return call

    socket.socket.connect = guarded(connect, "socket.connect")
    socket.socket.connect_ex = guarded(connect_ex, "socket.connect_ex")
    socket.create_connection = lambda *args, **kwargs: _refuse("socket.create_connection", args)
    socket.getaddrinfo = lambda *args, **kwargs: _refuse("socket.getaddrinfo", args)


if __name__ == "__main__":
    flag, target, *rest = sys.argv[1:]
    assert flag in ("-m", "-c"), "usage: offline_stage.py -m MODULE ARGS... | -c CODE"
    refuse_network()
    sys.argv = [target if flag == "-m" else "-c", *rest]
    if flag == "-m":
        runpy.run_module(target, run_name="__main__", alter_sys=True)
    else:
        sys.path.insert(0, "")  # as python -c: the working folder first
        exec(compile(target, "<string>", "exec"), {"__name__": "__main__"})
