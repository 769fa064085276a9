"""Initial Mask2Former weights from a local folder or file: a Hugging Face checkpoint, never downloaded.

A folder as ``save_pretrained`` writes it (``model.safetensors``, possibly sharded, or ``pytorch_model.bin``),
such as one of the public COCO instance checkpoints downloaded once; a ``.safetensors`` file; or a ``.pt``
state dict, this project's checkpoints included (their attribute head too). Tensors are taken where names and
shapes match: the category classifier of a COCO checkpoint (80 classes) is re-initialised for the 46 here, and
the log says so. A file whose backbone does not fit the configured one is refused: its features would be noise
to the decoder. The loss's class weights are not weights: they follow ``no_object_weight``, never a file.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn

from pipeline.models.weights import WeightsError, load_matching, read_state_dict

log = logging.getLogger(__name__)

NET = "net."  # where the family's model keeps Hugging Face's (its checkpoints' keys)
BACKBONE = NET + "model.pixel_level_module.encoder"  # the backbone's tensors
LOSS_BUFFERS = NET + "criterion"  # the class weights of the loss, set from params
GROUPS = (BACKBONE, NET + "model.pixel_level_module.decoder", NET + "model.transformer_module",
          NET + "class_predictor", LOSS_BUFFERS)
STEP_COUNTER = "num_batches_tracked"  # absent from a checkpoint saved with frozen BatchNorm; unused in normalising


def read_weights(path: Path) -> dict[str, torch.Tensor]:
    """The state dict of a local folder or file, named as in the family's model (Hugging Face's under ``net.``)."""
    if path.is_dir():
        files = sorted(path.glob("*.safetensors")) or sorted(path.glob("pytorch_model*.bin"))
        if not files:
            raise WeightsError(f"{path}: no *.safetensors or pytorch_model.bin in the folder (a Mask2Former "
                               "checkpoint as save_pretrained writes it)")
    elif path.exists():
        files = [path]
    else:
        raise WeightsError(f"{path}: weights file or folder not found")
    state: dict[str, torch.Tensor] = {}
    for file in files:
        if file.suffix == ".safetensors":
            try:
                state.update(load_file(file))
            except (SafetensorError, OSError) as exc:
                raise WeightsError(f"{file}: cannot read safetensors weights ({exc})") from exc
        else:
            state.update(read_state_dict(file))
    if not any(key.startswith(NET) for key in state):  # Hugging Face's checkpoint: the model alone
        state = {NET + key: value for key, value in state.items()}
    return {key: value for key, value in state.items() if not key.startswith(LOSS_BUFFERS)}


def load_pretrained(model: nn.Module, path: Path | str) -> None:
    """Load the matching tensors of ``path`` into the family's ``model``; refuse a foreign backbone."""
    own_loss = {key: value for key, value in model.state_dict().items() if key.startswith(LOSS_BUFFERS)}
    report = load_matching(model, {**read_weights(Path(path)), **own_loss}, GROUPS)
    for line in report.lines():
        log.info("mask2former weights from %s: %s", path, line)
    missing = [entry for entry in report.reinitialised.get(BACKBONE, [])
               if not entry.split(" ")[0].endswith(STEP_COUNTER)]
    if missing:
        raise WeightsError(f"{path}: {len(missing)} of the backbone's tensors are absent or of another shape "
                           f"(e.g. {missing[0]}): not the weights of mask2former.backbone's network")
