"""The UNet family: segmentation-models-pytorch's ``Unet`` (ResNet encoder, BatchNorm) as a detection model.

It predicts, for every category, which pixels show one (a sigmoid channel per category), so a
garment keeps its whole area under the parts lying on it (a shirt under its sleeves, pockets and
collar): instances of different categories overlap, as the competition allows. Each category's
connected components are its instances (``pipeline.models.families.unet.components``), so it meets
``pipeline.models.contract`` and the rest of the pipeline (TTA, tuning, evaluation, submission)
runs on it unchanged. It predicts no attributes: its ClassIds are the category alone.
"""

from __future__ import annotations

import logging
import math
from collections import Counter

import segmentation_models_pytorch as smp
import torch
from torch import nn
from torch.nn import functional as torch_f

from pipeline.config.model import ModelParams
from pipeline.models.batching import padded_batch
from pipeline.models.batchnorm import freeze_batchnorm, require_weights
from pipeline.models.contract import MaskFormat
from pipeline.models.families.unet import components
from pipeline.models.families.unet.params import UNetParams
from pipeline.models.targets import category_union
from pipeline.models.weights import load_resnet

log = logging.getLogger(__name__)

PRIOR = 0.05  # each category channel starts at this probability: a category covers a few per cent of an image
STRIDE = 32  # the encoder halves the image five times: sides are padded to a multiple of this


def top_category(shown: torch.Tensor) -> torch.Tensor:
    """(h, w) int64 of a (K, h, w) boolean map of the categories each pixel shows: the one covering the fewest
    pixels of the image where several lie (a pocket on a shirt), the lower category on a tie, 0 where none.

    The pixel scores (``FashionUNet.confusion``) compare one class a pixel, chosen so on both sides.
    """
    area = shown.flatten(1).sum(1)
    rank = torch.where(shown, (shown[0].numel() + 1 - area)[:, None, None], 0)  # larger for smaller areas
    best, category = rank.max(0)
    return torch.where(best > 0, category + 1, 0)


def category_targets(target: dict, size: tuple[int, int], categories: int) -> torch.Tensor:
    """(categories, h, w): channel c is 1 where an instance of category c + 1 lies, whatever lies on it."""
    if tuple(target["masks"].shape[-2:]) != tuple(size):
        raise ValueError(f"masks of {tuple(target['masks'].shape[-2:])} pixels for an image of {tuple(size)}")
    return category_union(target["masks"], target["labels"], categories)


def dice_loss(probabilities: torch.Tensor, truth: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """The mean soft Dice loss over the categories the batch's truth shows, each over the valid pixels.

    A category absent from the truth has no overlap to gain: the binary cross-entropy alone keeps it down.
    """
    def per_category(values: torch.Tensor) -> torch.Tensor:
        return (values * valid).sum((0, 2, 3))

    overlap, predicted, true = per_category(probabilities * truth), per_category(probabilities), per_category(truth)
    shown = true > 0
    if not bool(shown.any()):
        return probabilities.sum() * 0.0
    return (1 - 2 * overlap[shown] / (predicted[shown] + true[shown]).clamp(min=1e-6)).mean()


class FashionUNet(nn.Module):
    """A UNet with a sigmoid channel per category; its eval-mode output is instances (``pipeline.models.contract``)."""

    num_attributes = 0

    def __init__(self, net: smp.Unet, num_classes: int, settings: UNetParams) -> None:
        super().__init__()
        self.net = net
        self.num_classes = num_classes
        self.settings = settings
        #: components kept and dropped (under ``unet.min_area``) since the model was built
        self.inference_counts: Counter = Counter()

    @property
    def backbone(self) -> nn.Module:
        """The whole encoder-decoder: a plain convolutional network, compiled in one graph."""
        return self.net

    @property
    def mask_format(self) -> MaskFormat:
        return MaskFormat("crop", self.settings.mask_size)

    def logits(self, images: list[torch.Tensor]) -> torch.Tensor:
        """(B, C - 1, H, W) category logits of images batched top-left and padded to a multiple of ``STRIDE``."""
        return self.net(padded_batch(images, STRIDE))

    def forward(self, images: list[torch.Tensor], targets: list[dict] | None = None) -> dict | list[dict]:
        logits = self.logits(images).float()
        if self.training:
            if targets is None:
                raise ValueError("in train mode the UNet needs targets")
            return self._losses(logits, images, targets)
        probabilities = logits.sigmoid()
        outputs = []
        for k, image in enumerate(images):
            found = components.instances(probabilities[k, :, : image.shape[-2], : image.shape[-1]],
                                         self.settings.pixel_threshold, self.settings.min_area, self.settings.mask_size)
            self.inference_counts.update(kept=len(found.labels), dropped=found.dropped)
            outputs.append({key: value.to(logits.device) for key, value in found.as_output().items()})
        return outputs

    def _losses(self, logits: torch.Tensor, images: list[torch.Tensor], targets: list[dict]) -> dict:
        """Binary cross-entropy over every category and valid pixel, and the Dice loss of the categories shown."""
        truth, valid = torch.zeros_like(logits), torch.zeros_like(logits[:, :1])
        for k, (image, target) in enumerate(zip(images, targets, strict=True)):
            h, w = image.shape[-2:]
            truth[k, :, :h, :w] = category_targets(target, (h, w), logits.shape[1])
            valid[k, :, :h, :w] = 1
        pixels = torch_f.binary_cross_entropy_with_logits(logits, truth, reduction="none") * valid
        return {"loss_bce": pixels.sum() / (valid.sum() * logits.shape[1]),
                "loss_dice": self.settings.dice_weight * dice_loss(logits.sigmoid(), truth, valid)}

    @torch.no_grad()
    def confusion(self, images: list[torch.Tensor], targets: list[dict]) -> torch.Tensor:
        """(C, C) pixel counts, true class by predicted class, over the images' own pixels (eval mode).

        Each side is one class a pixel (``top_category``): of the true categories, and of those predicted
        above ``unet.pixel_threshold``.
        """
        shown = self.logits(images).float().sigmoid() > self.settings.pixel_threshold
        counts = torch.zeros((self.num_classes, self.num_classes), dtype=torch.int64, device=shown.device)
        for k, (image, target) in enumerate(zip(images, targets, strict=True)):
            h, w = image.shape[-2:]
            truth = top_category(category_targets(target, (h, w), self.num_classes - 1).to(shown.device) > 0)
            pairs = truth.flatten() * self.num_classes + top_category(shown[k, :, :h, :w]).flatten()
            counts += torch.bincount(pairs, minlength=self.num_classes**2).view(self.num_classes, self.num_classes)
        return counts


def build(settings: UNetParams, model_params: ModelParams, num_classes: int, num_attributes: int,
          initial_weights: bool = True) -> FashionUNet:
    """A UNet with a channel for each of the ``num_classes - 1`` categories; ``settings.encoder_weights`` if asked.

    ``encoder_weights=None`` for smp: it must never download anything (``load_resnet`` reads the file).
    ``model_params`` (the input size) and ``num_attributes`` do not change the network.
    """
    if settings.freeze_batchnorm and initial_weights:
        require_weights("unet", "encoder_weights", settings.encoder_weights)
    net = smp.Unet(encoder_name=settings.encoder, encoder_weights=None,
                   decoder_channels=tuple(settings.decoder_channels), decoder_use_norm="batchnorm",
                   classes=num_classes - 1)
    nn.init.constant_(net.segmentation_head[0].bias, -math.log((1 - PRIOR) / PRIOR))
    if initial_weights and settings.encoder_weights != "none":
        count = load_resnet(net.encoder, settings.encoder_weights, "unet.encoder")
        log.info("encoder weights from %s: %d tensors", settings.encoder_weights, count)
    if settings.freeze_batchnorm:
        freeze_batchnorm(net.encoder)
    return FashionUNet(net, num_classes, settings)
