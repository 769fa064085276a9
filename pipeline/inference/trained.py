"""A trained model opened for inference: its checkpoint found in a run folder, built, loaded, on its device.

Stages predict, index, segment and similar, and the comparison's timing, all start here.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from pipeline.models.contract import DetectionModel
from pipeline.models.registry import ModelConfig
from pipeline.utils import checkpoint
from pipeline.utils.device import use_cuda

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainedModel:
    model: DetectionModel  # in eval mode, on ``device``
    config: ModelConfig  # the model sections it was built from
    checkpoint: Path  # the file its weights came from
    device: torch.device


def open_model(run_dir: Path | str, config: ModelConfig, num_attributes: int, device: str, *,
               checkpoint_name: str = "best", device_setting: str = "predict.device",
               doing: str = "predicting") -> TrainedModel:
    """The model of ``run_dir``'s checkpoint ``checkpoint_name`` (``best`` or ``last``), built as ``config`` says,
    on ``device`` (``auto``, ``cpu`` or ``cuda``: the value of the params key ``device_setting``)."""
    found = checkpoint_path(run_dir, checkpoint_name, doing)
    on = resolve_device(device, device_setting)
    return TrainedModel(load_model(found, config, on, num_attributes), config, found, on)


def resolve_device(name: str, setting: str = "predict.device") -> torch.device:
    """The device ``name`` (``auto``, ``cpu`` or ``cuda``) means here; an error naming ``setting`` for a missing GPU."""
    return torch.device("cuda" if use_cuda(name, setting.removesuffix(".device")) else "cpu")


def checkpoint_path(run_dir: Path | str, name: str, doing: str = "predicting") -> Path:
    """``run_dir/<name>.pt``; ``best`` falls back, with a note in the log, to ``last`` while no validation has run.

    A training session stopped by its time limit in the first epoch has only ``last.pt``: the
    submission is still made, from the best (the only) weights there are.
    """
    run_dir = Path(run_dir)
    path, last = run_dir / f"{name}.pt", run_dir / checkpoint.LAST
    if name == "best" and not path.is_file() and last.is_file():
        log.info("%s does not exist yet (training has not finished an epoch): %s with %s", path, doing, last)
        return last
    if not path.is_file():
        runs = existing_runs(run_dir.parent)
        found = (f"the runs in {run_dir.parent} are: {', '.join(str(r) for r in runs)}" if runs
                 else f"{run_dir.parent} holds no training run")
        raise checkpoint.CheckpointError(f"{path}: no such checkpoint ({found}); check --run-dir, or run stage "
                                         "train first")
    return path


def existing_runs(folder: Path) -> list[Path]:
    """The training run folders directly inside ``folder``: those that hold a ``best.pt`` or ``last.pt``."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir()
                  if p.is_dir() and ((p / checkpoint.BEST).is_file() or (p / checkpoint.LAST).is_file()))


def load_model(path: Path | str, config: ModelConfig, device: torch.device, num_attributes: int) -> DetectionModel:
    """The trained model of a checkpoint (``best.pt`` or ``last.pt``), built as ``config`` says, in eval mode."""
    saved = checkpoint.load(path)
    model = config.build(int(saved["num_classes"]), num_attributes, initial_weights=False)
    try:
        model.load_state_dict(saved["model"])
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[:2]
        raise checkpoint.CheckpointError(f"{path}: does not fit the model sections of params.yaml "
                                         f"({' '.join(first)}); retrain or restore the params it was made with",
                                         ) from exc
    return model.to(device).eval()
