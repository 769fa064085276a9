"""Whether a run folder's checkpoint may be continued, and what happens to one that may not."""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

from pipeline.config.training import AugmentParams, TrainParams
from pipeline.data.dataset import InstanceDataset
from pipeline.models.registry import ModelConfig
from pipeline.training import distributed
from pipeline.utils import checkpoint
from pipeline.utils.checkpoint import BEST, LAST
from pipeline.utils.fingerprint import file_record, record_problem, source_digest

log = logging.getLogger(__name__)

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


def _best_problem(run_dir: Path, saved: dict) -> str | None:
    """Why ``best.pt`` is not the file ``last.pt`` recorded when it was written; None when it is, or none was."""
    state = saved.get("state", {})
    if state.get("best_step") is None:
        return None
    return record_problem(run_dir / BEST, state.get("best_file"))


def _newer_best(run_dir: Path, saved: dict) -> bool:
    """Whether ``best.pt`` is a sound checkpoint of a later step than ``last.pt``: a run cut off between writing
    a new ``best.pt`` and the ``last.pt`` that records it. It is kept; training resumes from ``last.pt``."""
    try:
        best = checkpoint.load(run_dir / BEST)
    except checkpoint.CheckpointError:
        return False
    return isinstance(best.get("step"), int) and best["step"] > saved["state"]["step"]


def _rewrite_best(run_dir: Path, saved: dict, problem: str, context: distributed.Context) -> bool:
    """Write ``best.pt`` again from ``last.pt`` when that holds the best weights (no step since the best validation,
    as at the end of a run whose last epoch was its best); False when no file holds them any more."""
    state = saved["state"]
    score = next((h for h in state.get("history", []) if h.get("step") == state["best_step"]), None)
    if state["best_step"] != state["step"] or score is None:
        return False
    if context.is_main:
        checkpoint.save(run_dir / BEST, {**{k: saved[k] for k in ("model", "params", "num_classes", "num_attributes")},
                                         "score": score, "step": state["step"]})
        state["best_file"] = file_record(run_dir / BEST)
        checkpoint.save(run_dir / LAST, saved)  # with the new record, so that the next run finds it sound
        log.warning("%s: %s; written again from %s, which holds the same weights (step %d)", run_dir / BEST,
                    problem, LAST, state["step"])
    distributed.barrier(context)
    return True


def _why_not(run_dir: Path, key: dict, resume: bool, context: distributed.Context) -> tuple[dict | None, str]:
    """``last.pt`` when it may be continued (with ``best.pt`` repaired if need be), else None and the reason."""
    if not resume:
        return None, "--no-resume"
    try:
        saved = checkpoint.load(run_dir / LAST)
    except checkpoint.CheckpointError as exc:
        return None, f"it cannot be read: {type(exc.__cause__).__name__ if exc.__cause__ else 'not a checkpoint'}"
    if saved.get("resume_key") != key:
        return None, "params, data or code changed: " + "; ".join(differences(saved.get("resume_key", {}), key))
    if not (problem := _best_problem(run_dir, saved)):
        return saved, ""
    if _newer_best(run_dir, saved):
        saved["state"]["best_file"] = file_record(run_dir / BEST)  # the next checkpoint records it
        return saved, ""
    if not _rewrite_best(run_dir, saved, problem, context):
        return None, (f"{BEST} failed its check ({problem}) and no other file holds the weights of step "
                      f"{saved['state']['best_step']}")
    return saved, ""


def restore(run_dir: Path, key: dict, resume: bool, context: distributed.Context) -> dict | None:
    """``run_dir/last.pt`` if it was made with ``key`` and its ``best.pt`` is sound or repaired; otherwise the
    folder's checkpoints move aside, saying why, and training starts fresh."""
    path = run_dir / LAST
    if not path.is_file():
        return None
    saved, why = _why_not(run_dir, key, resume, context)
    if saved is not None:
        return saved
    distributed.barrier(context)
    if context.is_main:
        previous = run_dir.with_name(run_dir.name + ".previous")
        log.warning("not resuming %s (%s); it moves to %s, training starts fresh", path, why, previous)
        shutil.rmtree(previous, ignore_errors=True)
        previous.mkdir()
        for name in (LAST, BEST, RESOLVED):
            if (run_dir / name).exists():
                os.replace(run_dir / name, previous / name)
    distributed.barrier(context)
    return None
