"""Whether a run folder's checkpoint may be continued, and what happens to one that may not."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from pipeline.config.training import AugmentParams, TrainParams
from pipeline.data.dataset import InstanceDataset
from pipeline.models.registry import ModelConfig
from pipeline.training import distributed
from pipeline.utils import checkpoint
from pipeline.utils.checkpoint import BEST, LAST
from pipeline.utils.fingerprint import source_digest

RESOLVED = "params.yaml"
# Settings that change neither the result nor the data order: a checkpoint made with other values resumes.
_RUNTIME_ONLY = {"launcher", "workers", "checkpoint_every", "log_every"}


def resume_key(config: ModelConfig, train: TrainParams, augment: AugmentParams, train_set: InstanceDataset,
               world_size: int, code: tuple[str, ...]) -> dict:
    """What a checkpoint must share with this run to be continued by it: params, training images, process
    count and the training code (a code change reruns the DVC stage; it must not just resume a finished run).
    """
    return {**config.key(), "augment": augment.model_dump(mode="json"),
            "train": train.model_dump(mode="json", exclude=_RUNTIME_ONLY),
            "train_images": {"count": len(train_set), "hash": train_set.fingerprint()}, "world_size": world_size,
            "code": source_digest(*code)}


def differences(old: dict, new: dict, prefix: str = "") -> list[str]:
    out = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += differences(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append(f"{prefix}{key}: {a} -> {b}")
    return out


def restore(run_dir: Path, key: dict, resume: bool, context: distributed.Context) -> dict | None:
    """``run_dir/last.pt`` if it was made with ``key``; otherwise the folder's checkpoints move aside."""
    path = run_dir / LAST
    if not path.is_file():
        return None
    saved = checkpoint.load(path) if resume else None
    if saved is not None and saved.get("resume_key") == key:
        return saved
    distributed.barrier(context)
    if context.is_main:
        why = ("--no-resume" if not resume else
               "params, data or code changed: " + "; ".join(differences(saved.get("resume_key", {}), key)))
        previous = run_dir.with_name(run_dir.name + ".previous")
        print(f"not resuming {path} ({why}); it moves to {previous}, training starts fresh")
        shutil.rmtree(previous, ignore_errors=True)
        previous.mkdir()
        for name in (LAST, BEST, RESOLVED):
            if (run_dir / name).exists():
                os.replace(run_dir / name, previous / name)
    distributed.barrier(context)
    return None
