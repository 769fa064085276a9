"""Initial weights for any model family: a state dict read from a file, loaded where names and shapes match."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from pipeline.utils.errors import PipelineError


class WeightsError(PipelineError):
    """Initial weights that cannot be found, read or downloaded."""


@dataclass
class LoadReport:
    """What ``load_matching`` took from a state dict, by parameter group."""

    loaded: dict[str, int]
    reinitialised: dict[str, list[str]]  # group -> "key (shape there vs here)" or "key (absent)"
    unused: int  # tensors in the source that the model has no place for

    def lines(self) -> list[str]:
        out = [f"loaded {group}: {count} tensors" for group, count in self.loaded.items() if count]
        for group, keys in self.reinitialised.items():
            if keys:
                shown = "; ".join(keys[:3]) + (f"; ... {len(keys) - 3} more" if len(keys) > 3 else "")
                out.append(f"re-initialised {group}: {len(keys)} tensors ({shown})")
        if self.unused:
            out.append(f"ignored {self.unused} tensors of the source that this model does not have")
        return out


def _group(key: str, groups: tuple[str, ...]) -> str:
    return next((group for group in groups if key.startswith(group + ".")), key.split(".")[0])


def load_matching(model: nn.Module, source: Mapping[str, torch.Tensor], groups: tuple[str, ...] = ()) -> LoadReport:
    """Load every tensor of ``source`` whose name and shape match the model; keep the model's own init elsewhere.

    The report counts by parameter group: the first of ``groups`` (most specific first) that a name
    starts with, else the name's first component.
    """
    own = model.state_dict()
    take, loaded, reinitialised = {}, {}, {}
    for key, tensor in own.items():
        group = _group(key, groups)
        loaded.setdefault(group, 0)
        reinitialised.setdefault(group, [])
        theirs = source.get(key)
        if theirs is None:
            reinitialised[group].append(f"{key} (absent)")
        elif tuple(theirs.shape) != tuple(tensor.shape):
            reinitialised[group].append(f"{key} ({list(theirs.shape)} there, {list(tensor.shape)} here)")
        else:
            take[key] = theirs
            loaded[group] += 1
    model.load_state_dict(take, strict=False)
    return LoadReport(loaded, reinitialised, unused=len(set(source) - set(own)))


def read_state_dict(path: Path | str) -> dict[str, torch.Tensor]:
    """A state dict from a file: a bare state dict, or a dict holding one under ``model`` (our checkpoints)."""
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError as exc:
        raise WeightsError(f"{path}: weights file not found") from exc
    except Exception as exc:  # torch raises many types for truncated or foreign files
        raise WeightsError(f"{path}: cannot read weights ({type(exc).__name__}: {exc})") from exc
    state = data.get("model", data) if isinstance(data, dict) else data
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsError(f"{path}: not a state dict (expected a mapping of names to tensors)")
    return state


# Where a ResNet's weights sit in the files accepted for a family's ResNet: a torchvision ResNet state dict
# (ImageNet's), a UNet checkpoint (its encoder, ``net.encoder``), a bare smp encoder, or a detector checkpoint
# of this project (Mask R-CNN, YOLACT) or torchvision's (its backbone's body).
RESNET_PREFIXES = ("", "net.encoder.", "encoder.", "backbone.body.")
_CLASSIFIER = "fc."
_STEP_COUNTER = "num_batches_tracked"


def load_resnet(resnet: nn.Module, path: Path | str, role: str) -> int:
    """A ResNet's weights from a local file into ``resnet``; every one of its tensors must be found.

    Returns the number of tensors loaded; ``role`` (e.g. ``unet.encoder``) names the model in the error.
    The families build their ResNets without weights, so that nothing is ever downloaded; the user's
    file is read here instead.
    """
    return load_resnet_state(resnet, read_state_dict(path), path, role)


def load_resnet_state(resnet: nn.Module, state: Mapping[str, torch.Tensor], path: Path | str, role: str) -> int:
    """``load_resnet`` of a state dict already read from ``path``."""
    own = resnet.state_dict()
    prefix = max(RESNET_PREFIXES, key=lambda p: sum(p + k in state for k in own))
    theirs = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    report = load_matching(resnet, theirs)
    # A BatchNorm's step counter is absent from a file saved with frozen BatchNorm (torchvision's COCO detectors,
    # a run with freeze_batchnorm): it takes no part in normalising.
    missing = [entry for entries in report.reinitialised.values() for entry in entries
               if not entry.split(" ")[0].endswith(_STEP_COUNTER)]
    # A deeper ResNet holds every tensor of a shallower one (resnet34's layer1.0 is resnet18's): its extra
    # blocks tell them apart. The classifier (fc) of an ImageNet file is expected and left out.
    missing += [f"{k} (not in the ResNet)" for k in theirs if k not in own and not k.startswith(_CLASSIFIER)]
    if missing:
        raise WeightsError(f"{path}: not the weights of a ResNet like {role}'s: {len(missing)} tensors absent, "
                           f"of another shape or extra (the ResNet has {len(own)}), e.g. {', '.join(missing[:3])}")
    return len(own)
