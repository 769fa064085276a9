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
from pipeline.models.batching import padded_batch
from pipeline.models.contract import MaskFormat
from pipeline.models.unet import components
from pipeline.models.weights import load_resnet

log = logging.getLogger(__name__)

IGNORE = -100  # the pixels a batch pads each image with: neither loss counts them
STRIDE = 32  # the encoder halves the image five times: sides are padded to a multiple of this


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
        #: components kept and dropped (under ``unet.min_area``) since the model was built
        self.inference_counts: Counter = Counter()

    @property
    def backbone(self) -> nn.Module:
        """The whole encoder-decoder: a plain convolutional network, compiled in one graph."""
        return self.net

    @property
    def mask_format(self) -> MaskFormat:
        return MaskFormat("crop", self.spec.mask_size)

    def logits(self, images: list[torch.Tensor]) -> torch.Tensor:
        """(B, C, H, W) class logits of images batched top-left and padded to a multiple of ``STRIDE``."""
        return self.net(padded_batch(images, STRIDE))

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


def build(spec: UNetParams, model: ModelParams, num_classes: int, num_attributes: int,
          initial_weights: bool = True) -> FashionUNet:
    """A UNet for ``num_classes`` classes (background included); ``spec.encoder_weights`` loaded if asked.

    ``encoder_weights=None`` for smp: it must never download anything (``load_resnet`` reads the file).
    ``model`` (the input size) and ``num_attributes`` do not change the network.
    """
    net = smp.Unet(encoder_name=spec.encoder, encoder_weights=None, decoder_channels=tuple(spec.decoder_channels),
                   decoder_use_norm="batchnorm", classes=num_classes)
    if initial_weights and spec.encoder_weights != "none":
        count = load_resnet(net.encoder, spec.encoder_weights, "unet.encoder")
        log.info("encoder weights from %s: %d tensors", spec.encoder_weights, count)
    return FashionUNet(net, num_classes, spec)
