"""One checkpoint dict per save, written atomically and read back with ``weights_only=True``."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch

from pipeline.utils.errors import PipelineError
from pipeline.utils.io import atomic_path

#: What a training run folder holds: the latest, resumable state and the best-validated weights.
LAST, BEST = "last.pt", "best.pt"


class CheckpointError(PipelineError):
    """A checkpoint that cannot be read."""


def rng_state() -> dict:
    """The state of every generator training draws from (python, numpy, torch CPU and CUDA)."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    return {
        "python": random.getstate(),
        # numpy arrays are not allowed by weights_only loading; a tensor of the same words is.
        "numpy": (kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _tensor_bytes(data: object) -> int:
    """The bytes of every distinct tensor storage in ``data``: what ``torch.save`` writes, less its small pickle."""
    storages: dict[tuple, int] = {}

    def visit(item: object) -> None:
        if isinstance(item, torch.Tensor):
            storage = item.untyped_storage()
            storages[(item.device.type, storage.data_ptr())] = storage.nbytes()
        elif isinstance(item, dict):
            for value in item.values():
                visit(value)
        elif isinstance(item, (list, tuple)):
            for value in item:
                visit(value)

    visit(data)
    return sum(storages.values())


def save(path: Path | str, checkpoint: dict) -> None:
    """Write atomically. torch writes into a Python file object, not a path: a full disk then raises
    ``OSError(ENOSPC)``, which :mod:`pipeline.utils.io` reports, instead of a C++ stream error without errno."""
    with atomic_path(path, size=_tensor_bytes(checkpoint)) as tmp, open(tmp, "wb") as handle:
        torch.save(checkpoint, handle)


def load(path: Path | str, remedy: str = "rerun stage train (dvc repro) to write it again") -> dict:
    """The checkpoint dict at ``path``; an unreadable file is a :class:`CheckpointError` ending in ``remedy``."""
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated files raise RuntimeError, foreign pickles UnpicklingError, ...
        raise CheckpointError(f"{path}: cannot read checkpoint ({type(exc).__name__}: {exc}); {remedy}") from exc
    if not isinstance(checkpoint, dict) or "model" not in checkpoint:
        raise CheckpointError(f"{path}: not a training checkpoint of this pipeline")
    return checkpoint
