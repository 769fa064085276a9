"""The UNet family: segmentation-models-pytorch's ``Unet`` (ResNet encoder, BatchNorm) as a detection model.

It predicts a category for every pixel; the connected components of each category are its
instances (``pipeline.models.components``), so it meets ``pipeline.models.contract`` and the
rest of the pipeline (TTA, tuning, evaluation, submission) runs on it unchanged. It predicts no
attributes: its ClassIds are the category alone.
"""

from __future__ import annotations

import logging
from collections import Counter

import segmentation_models_pytorch as smp
import torch
from torch import nn
from torch.nn import functional as torch_f

from pipeline.config.model import ModelParams, UNetParams
from pipeline.models.contract import MaskFormat
from pipeline.models.unet import components
from pipeline.models.weights import WeightsError, load_matching, read_state_dict

log = logging.getLogger(__name__)

IGNORE = -100  # the pixels a batch pads each image with: neither loss counts them
STRIDE = 32  # the encoder halves the image five times: sides are padded to a multiple of this
# ImageNet's statistics: what an ImageNet-trained encoder expects, harmless from scratch (BatchNorm follows).
_MEAN, _STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
# Where a ResNet's weights sit in the files accepted as encoder weights: a torchvision ResNet state dict,
# this family's checkpoint, or a Mask R-CNN checkpoint of this project (its ResNet body).
_ENCODER_PREFIXES = ("", "encoder.", "backbone.body.")
_CLASSIFIER = "fc."


def semantic_target(target: dict, size: tuple[int, int]) -> torch.Tensor:
    """The (h, w) class map of one image's instances: 0 background, else the instance's category.

    Where instances overlap, the smaller one is painted last and wins: in this data the overlaps
    are mostly parts lying on their garment (a pocket, a sleeve, a collar on a shirt) and
    garments on garments (a bag over a coat), and the larger instance stays visible around them.
    """
    canvas = torch.zeros(size, dtype=torch.int64, device=target["labels"].device)
    masks = target["masks"].bool()
    areas = masks.flatten(1).sum(1)
    for index in torch.argsort(areas, descending=True, stable=True).tolist():
        canvas[masks[index]] = target["labels"][index]
    return canvas


class FashionUNet(nn.Module):
    """A UNet whose eval-mode output is instances (``pipeline.models.contract``)."""

    num_attributes = 0

    def __init__(self, net: smp.Unet, num_classes: int, spec: UNetParams) -> None:
        super().__init__()
        self.net = net
        self.num_classes = num_classes
        self.spec = spec
        self.dice = smp.losses.DiceLoss(mode="multiclass", from_logits=True, ignore_index=IGNORE)
        self.register_buffer("mean", torch.tensor(_MEAN).view(3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(_STD).view(3, 1, 1), persistent=False)
        #: components kept and dropped (under ``unet.min_area``) since the model was built
        self.inference_counts: Counter = Counter()

    @property
    def mask_format(self) -> MaskFormat:
        return MaskFormat("crop", self.spec.mask_size)

    def logits(self, images: list[torch.Tensor]) -> torch.Tensor:
        """(B, C, H, W) class logits of images batched top-left and padded to a multiple of ``STRIDE``."""
        height = -(-max(i.shape[-2] for i in images) // STRIDE) * STRIDE
        width = -(-max(i.shape[-1] for i in images) // STRIDE) * STRIDE
        batch = torch.stack([torch_f.pad((i - self.mean) / self.std, (0, width - i.shape[-1], 0, height - i.shape[-2]))
                             for i in images])
        return self.net(batch)

    def forward(self, images: list[torch.Tensor], targets: list[dict] | None = None) -> dict | list[dict]:
        logits = self.logits(images)
        if self.training:
            if targets is None:
                raise ValueError("in train mode the UNet needs targets")
            truth = torch.full((len(images), *logits.shape[-2:]), IGNORE, dtype=torch.int64, device=logits.device)
            for k, (image, target) in enumerate(zip(images, targets, strict=True)):
                truth[k, : image.shape[-2], : image.shape[-1]] = semantic_target(target, tuple(image.shape[-2:]))
            logits = logits.float()
            return {"loss_ce": torch_f.cross_entropy(logits, truth, ignore_index=IGNORE),
                    "loss_dice": self.spec.dice_weight * self._dice(logits, truth)}
        probabilities = logits.float().softmax(1)
        outputs = []
        for k, image in enumerate(images):
            found = components.instances(probabilities[k, :, : image.shape[-2], : image.shape[-1]],
                                         self.spec.min_area, self.spec.mask_size)
            self.inference_counts.update(kept=len(found.labels), dropped=found.dropped)
            outputs.append({key: value.to(logits.device) for key, value in found.as_output().items()})
        return outputs

    def _dice(self, logits: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
        """The mean Dice loss over the classes present in the truth.

        smp's loss zeroes the classes absent from the truth and then averages over all of them,
        which with 47 classes and a handful per image shrinks the loss (and its weight) about tenfold.
        """
        present = torch.unique(truth[truth != IGNORE]).numel()
        return self.dice(logits, truth) * (self.num_classes / max(present, 1))

    @torch.no_grad()
    def confusion(self, images: list[torch.Tensor], targets: list[dict]) -> torch.Tensor:
        """(C, C) pixel counts, true class by predicted class, over the images' own pixels (eval mode)."""
        predicted = self.logits(images).argmax(1)
        counts = torch.zeros((self.num_classes, self.num_classes), dtype=torch.int64, device=predicted.device)
        for k, (image, target) in enumerate(zip(images, targets, strict=True)):
            h, w = image.shape[-2:]
            pairs = semantic_target(target, (h, w)).flatten() * self.num_classes + predicted[k, :h, :w].flatten()
            counts += torch.bincount(pairs, minlength=self.num_classes**2).view(self.num_classes, self.num_classes)
        return counts


def _load_encoder(net: smp.Unet, path: str) -> None:
    """A ResNet's weights from a local file into the encoder; every encoder tensor must be found.

    smp would download ImageNet weights itself (``encoder_weights="imagenet"``); this project never
    reaches the network, so the user's file is read here instead.
    """
    state = read_state_dict(path)
    own = net.encoder.state_dict()
    prefix = max(_ENCODER_PREFIXES, key=lambda p: sum(p + k in state for k in own))
    theirs = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    report = load_matching(net.encoder, theirs)
    missing = [entry for entries in report.reinitialised.values() for entry in entries]
    # A deeper ResNet holds every tensor of a shallower one (resnet34's layer1.0 is resnet18's): its extra
    # blocks tell them apart. The classifier (fc) of an ImageNet file is expected and left out.
    missing += [f"{k} (not in the encoder)" for k in theirs if k not in own and not k.startswith(_CLASSIFIER)]
    if missing:
        raise WeightsError(f"{path}: not the weights of a {net.encoder.__class__.__name__} like unet.encoder's: "
                           f"{len(missing)} tensors absent, of another shape or extra (the encoder has "
                           f"{len(own)}), e.g. {', '.join(missing[:3])}")
    log.info("encoder weights from %s: %d tensors%s", path, len(own), f" under {prefix!r}" if prefix else "")


def build(spec: UNetParams, model: ModelParams, num_classes: int, num_attributes: int,
          initial_weights: bool = True) -> FashionUNet:
    """A UNet for ``num_classes`` classes (background included); ``spec.encoder_weights`` loaded if asked.

    ``encoder_weights=None`` for smp: it must never download anything (the file is loaded here).
    ``model`` (the input size) and ``num_attributes`` do not change the network.
    """
    net = smp.Unet(encoder_name=spec.encoder, encoder_weights=None, decoder_channels=tuple(spec.decoder_channels),
                   decoder_use_norm="batchnorm", classes=num_classes)
    if initial_weights and spec.encoder_weights != "none":
        _load_encoder(net, spec.encoder_weights)
    return FashionUNet(net, num_classes, spec)
