"""Run a stage as ``dvc.yaml`` does, with one hook that kills it at an exact point or counts its work.

``python tests/hooked_stage.py HOOK VALUE -m stages.NAME ARGS...``. Hooks:

- ``kill-after-part FOLDER``: SIGKILL right after the first part file of prediction folder FOLDER is written;
- ``kill-after-checkpoint STEP``: SIGKILL right after ``last.pt`` of optimizer step STEP is written;
- ``count-predictions -``: on exit, print ``predicted images: N`` (images the model ran on) and
  ``part files: {folder: count}``.

A real kill at a chosen moment, not a timed one: the test does not depend on how fast the machine is.
"""

from __future__ import annotations

import atexit
import collections
import os
import runpy
import signal
import sys


def kill_after_part(folder: str) -> None:
    from pipeline.inference import store

    write_part = store._write_part

    def hooked(parts, number, records, detections, manifest):
        write_part(parts, number, records, detections, manifest)
        if parts.parent.name == folder:
            os.kill(os.getpid(), signal.SIGKILL)

    store._write_part = hooked


def kill_after_checkpoint(step: str) -> None:
    from pipeline.utils import checkpoint

    save = checkpoint.save

    def hooked(path, data):
        save(path, data)
        if path.name == checkpoint.LAST and data["state"]["step"] == int(step):
            os.kill(os.getpid(), signal.SIGKILL)

    checkpoint.save = hooked


def count_predictions(_: str) -> None:
    from pipeline.inference import predict, store

    images, parts = [0], collections.Counter()
    predict_batch, write_part = predict.predict_batch, store._write_part

    def counted_batch(inference, batch, *args, **kwargs):
        images[0] += len(batch)
        return predict_batch(inference, batch, *args, **kwargs)

    def counted_part(folder, *args):
        parts[folder.parent.name] += 1
        write_part(folder, *args)

    predict.predict_batch, store._write_part = counted_batch, counted_part
    atexit.register(lambda: print(f"predicted images: {images[0]}\npart files: {dict(parts)}"))


HOOKS = {"kill-after-part": kill_after_part, "kill-after-checkpoint": kill_after_checkpoint,
         "count-predictions": count_predictions}

if __name__ == "__main__":
    hook, value, flag, module, *rest = sys.argv[1:]
    assert flag == "-m", "usage: hooked_stage.py HOOK VALUE -m MODULE ARGS..."
    HOOKS[hook](value)
    sys.argv = [module, *rest]
    runpy.run_module(module, run_name="__main__", alter_sys=True)
