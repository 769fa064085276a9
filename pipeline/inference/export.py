"""A trained model as an ONNX file that runs without this project: exported, then checked against PyTorch.

The export traces the family's one-image module (``Family.onnx``) with torch's TorchScript-based
exporter (``dynamo=False``: the dynamo exporter stops at the data-dependent sizes of torchvision's
NMS). Height, width and the number of detections stay dynamic. The file is kept only when
onnxruntime, run on the given images, finds the detections PyTorch finds, within ``TOLERANCE``.
"""

from __future__ import annotations

import importlib.util
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from pipeline.config.model import ModelParams
from pipeline.data.labels import LabelSet
from pipeline.models.family import Family
from pipeline.utils.errors import PipelineError
from pipeline.utils.io import atomic_path

OPSET = 17
#: The largest difference allowed between onnxruntime's and PyTorch's outputs, per output (boxes in pixels,
#: the rest probabilities); labels and the number of detections must be equal.
TOLERANCE = {"boxes": 0.05, "scores": 1e-3, "masks": 1e-2, "attributes": 1e-3}
#: What tracing says of torchvision's detector, all of it expected: shapes become graph values, the exporter
#: is the TorchScript one.
_EXPECTED_WARNINGS = [(DeprecationWarning, ".*TorchScript-based ONNX export"), (DeprecationWarning, ".*removed"),
                      (FutureWarning, ".*deprecated"), (torch.jit.TracerWarning, ""), (UserWarning, ".*copy construct"),
                      (UserWarning, ".*Exporting aten::index"), (UserWarning, "Constant folding")]


class ExportError(PipelineError):
    """A family that cannot be exported, or an export that does not agree with PyTorch."""


def require_onnx(family: Family) -> None:
    """Refuse a family without an ONNX module, saying why, or a missing ``onnx`` or ``onnxruntime`` (checked before
    any model loads)."""
    if family.onnx is None:
        why = family.no_onnx or "it declares no ONNX module (Family.onnx)"
        raise ExportError(f"family {family.name} does not export to ONNX: {why} (docs/shop.md)")
    if missing := [name for name in ("onnx", "onnxruntime") if importlib.util.find_spec(name) is None]:
        raise ExportError(f"stage export needs {' and '.join(missing)}: pip install -e '.[export]' (make demo "
                          "installs them)")


def export_onnx(model: nn.Module, family: Family, path: Path, images: Sequence[torch.Tensor]) -> dict:
    """Write ``model`` (eval mode, CPU) to ``path`` as ONNX, traced on the first image; kept only when it agrees
    with PyTorch on every image. Returns the opset, the outputs (name: meaning) and the agreement measured."""
    require_onnx(family)
    if not images:
        raise ExportError("no image to trace the model with and check the export on")
    module, outputs = family.onnx(model)
    names = list(outputs)
    with atomic_path(path) as tmp, torch.no_grad(), warnings.catch_warnings():
        for category, message in _EXPECTED_WARNINGS:
            warnings.filterwarnings("ignore", message=message, category=category)
        try:
            dynamic = {"image": {1: "height", 2: "width"}, **{n: {0: "detections"} for n in names}}
            torch.onnx.export(module, (images[0],), str(tmp), dynamo=False, opset_version=OPSET,
                              input_names=["image"], output_names=names, dynamic_axes=dynamic)
            measured = agreement(tmp, module, names, images)
            if problems := disagreements(measured):
                raise ExportError(f"{path}: the export does not agree with PyTorch ({'; '.join(problems)}); "
                                  "not written")
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    return {"opset": OPSET, "outputs": outputs, "check": measured}


def agreement(path: Path, module: nn.Module, names: Sequence[str], images: Sequence[torch.Tensor]) -> dict:
    """onnxruntime's outputs against PyTorch's on ``images``: detections, and per output the largest difference."""
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    largest = dict.fromkeys((n for n in names if n != "labels"), 0.0)
    counts, same_labels, sizes = [], True, []
    with torch.no_grad():
        for image in images:
            sizes.append(list(image.shape[1:]))
            expected = [t.numpy() for t in module(image)]
            found = session.run(list(names), {"image": image.numpy()})
            by_name, theirs = dict(zip(names, expected, strict=True)), dict(zip(names, found, strict=True))
            counts.append((len(by_name["boxes"]), len(theirs["boxes"])))
            if counts[-1][0] != counts[-1][1]:
                continue
            same_labels &= bool((by_name["labels"] == theirs["labels"]).all())
            for name in largest:
                if by_name[name].size:
                    largest[name] = max(largest[name], float(np.abs(by_name[name] - theirs[name]).max()))
    return {"images": len(images), "sizes": sizes, "detections": sum(c[0] for c in counts),
            "per_image": [c[0] for c in counts],
            "same_detections": all(a == b for a, b in counts) and same_labels,
            "max_difference": largest, "tolerance": {n: TOLERANCE[n] for n in largest}}


def disagreements(measured: dict) -> list[str]:
    """What in an agreement is beyond tolerance."""
    problems = [] if measured["same_detections"] else ["other detections (count or labels)"]
    if measured["detections"] == 0:
        problems.append("PyTorch found nothing on the photos, so nothing was compared: give photos with items")
    return problems + [f"{name} differ by {value:.3g} (tolerance {measured['tolerance'][name]})"
                       for name, value in measured["max_difference"].items() if value > measured["tolerance"][name]]


def description(family: str, checkpoint: Path, written: dict, model: ModelParams, labels: LabelSet) -> dict:
    """What the ``.onnx.json`` beside an exported file says: what goes in and comes out, the names, the check."""
    return {"family": family, "checkpoint": str(checkpoint), **written,
            "input": {"image": "float32 (3, height, width), RGB in [0, 1], scaled so that the short side is "
                               f"{model.min_size} px unless the long side would pass {model.max_size}"},
            "detections": "the model's own, before this project's tuned post-processing (thresholds, NMS of "
                          "views, overlaps): pipeline.load applies it",
            "categories": [c.name for c in labels.categories], "attributes": [a.name for a in labels.attributes]}
