"""Mask2Former (Cheng et al., CVPR 2022) as a family of ``pipeline.models.contract``, on Hugging Face's model.

Hugging Face's ``Mask2FormerForUniversalSegmentation`` is pure PyTorch (its multi-scale deformable attention
has a PyTorch path; its Hungarian matching runs on scipy): no compiled ops. Around it, this module batches the
images, names the losses, adds an attribute head on each query's final embedding (Fashionformer's idea: the
query that segments an item also describes it), trained with binary cross-entropy on the queries the Hungarian
matching assigned to an instance with attributes, and turns the queries into detections: the best (query,
category) pairs by class probability times mask score, boxes from the masks, masks cropped to their boxes.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
from torch import distributed as dist
from torch import nn
from torch.nn import functional as torch_f
from torchvision.ops import box_iou, roi_align

from pipeline.config.model import ModelParams
from pipeline.models.batching import padded_batch
from pipeline.models.batchnorm import freeze_batchnorm, require_weights
from pipeline.models.contract import MaskFormat
from pipeline.models.families.mask2former.configuration import mask2former_config
from pipeline.models.families.mask2former.params import Mask2FormerParams
from pipeline.models.families.mask2former.pretrained import load_pretrained

from transformers import Mask2FormerForUniversalSegmentation  # isort: skip (after the hub is set offline)

log = logging.getLogger(__name__)

STRIDE = 32  # sides are padded to a multiple of the backbone's coarsest stride
MASK_STRIDE = 4  # the queries' masks are predicted at a quarter of the input's resolution
MASK_THRESHOLD = 0.5  # a mask's pixels: the sigmoid above this (its box, its mask score)


@dataclass
class _Forward:
    """One batch through the network: per decoder layer, class logits (B, Q, C + 1) and mask logits
    (B, Q, H/4, W/4); the final layer's query embeddings (B, Q, D)."""

    classes: list[torch.Tensor]
    masks: list[torch.Tensor]
    queries: torch.Tensor


class FashionMask2Former(nn.Module):
    """Mask2Former with box-cropped masks and, if asked, attributes per query."""

    def __init__(self, net: Mask2FormerForUniversalSegmentation, settings: Mask2FormerParams,
                 num_attributes: int) -> None:
        super().__init__()
        self.net = net
        self.settings = settings
        self.num_attributes = num_attributes
        self.attribute_classifier = nn.Linear(settings.hidden_dim, num_attributes) if num_attributes else None

    @property
    def backbone(self) -> nn.Module:
        """The ResNet or Swin (the contract's ``HasBackbone``; a property, as the contract says why)."""
        return self.net.model.pixel_level_module.encoder

    @property
    def mask_format(self) -> MaskFormat:
        return MaskFormat("crop", self.settings.mask_size)

    def run(self, images: list[torch.Tensor]) -> _Forward:
        out = self.net.model(pixel_values=padded_batch(images, STRIDE), output_hidden_states=True)
        states = out.transformer_decoder_intermediate_states  # (Q, B, D) per layer, layer-normed
        classes = [self.net.class_predictor(state.transpose(0, 1)) for state in states]
        return _Forward(classes, list(out.masks_queries_logits), states[-1].transpose(0, 1))

    def forward(self, images: list[torch.Tensor], targets: list[dict] | None = None) -> dict | list[dict]:
        out = self.run(images)
        if self.training:
            if targets is None:
                raise ValueError("in train mode Mask2Former needs targets")
            return self._losses(out, targets)
        return [self._detect(out, k, tuple(image.shape[-2:])) for k, image in enumerate(images)]

    def _losses(self, out: _Forward, targets: list[dict]) -> dict[str, torch.Tensor]:
        """The criterion of every decoder layer summed by kind (as the reference's deep supervision), and the
        attribute loss on the final layer's matched queries."""
        criterion, settings = self.net.criterion, self.settings
        size = out.masks[-1].shape[-2:]
        padded = (size[0] * MASK_STRIDE, size[1] * MASK_STRIDE)
        mask_labels = [torch_f.pad(t["masks"].float(), (0, padded[1] - t["masks"].shape[-1],
                                                         0, padded[0] - t["masks"].shape[-2])) for t in targets]
        class_labels = [t["labels"] - 1 for t in targets]  # the model's categories are 0-based
        count = _mask_count(class_labels, out.queries.device)
        sums = {"loss_classifier": 0.0, "loss_mask": 0.0, "loss_dice": 0.0}
        for classes, masks in zip(out.classes, out.masks, strict=True):
            indices = criterion.matcher(masks, classes, mask_labels, class_labels)
            mask_losses = criterion.loss_masks(masks, mask_labels, indices, count)
            sums["loss_mask"] = sums["loss_mask"] + settings.mask_weight * mask_losses["loss_mask"]
            sums["loss_dice"] = sums["loss_dice"] + settings.dice_weight * mask_losses["loss_dice"]
            sums["loss_classifier"] = sums["loss_classifier"] + settings.class_weight * criterion.loss_labels(
                classes, class_labels, indices)["loss_cross_entropy"]
        if self.attribute_classifier is not None:  # ``indices`` are the final layer's now
            sums["loss_attributes"] = settings.attribute_weight * self._attribute_loss(out.queries, targets, indices)
        return sums

    def _attribute_loss(self, queries: torch.Tensor, targets: list[dict],
                        indices: list[tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
        """Mean BCE over the matched queries of instances with attributes; 0 (with a gradient) when none."""
        logits = self.attribute_classifier(queries)  # (B, Q, A)
        chosen, wanted = [], []
        for k, (query, instance) in enumerate(indices):
            truth = targets[k]["attributes"][instance.to(queries.device)]
            keep = truth.sum(1) > 0
            chosen.append(logits[k][query.to(queries.device)][keep])
            wanted.append(truth[keep])
        chosen_logits, wanted_truth = torch.cat(chosen), torch.cat(wanted)
        if not len(chosen_logits):  # every parameter takes part (DistributedDataParallel waits for each gradient)
            return logits.sum() * 0.0
        return torch_f.binary_cross_entropy_with_logits(chosen_logits.float(), wanted_truth.float())

    def _detect(self, out: _Forward, k: int, size: tuple[int, int]) -> dict[str, torch.Tensor]:
        """Image ``k``'s detections: the best (query, category) pairs, scored by class probability x mask score."""
        settings = self.settings
        probabilities = out.classes[-1][k].float().softmax(-1)[:, :-1]  # (Q, C): the no-object class apart
        categories = probabilities.shape[1]
        top, flat = probabilities.flatten().topk(min(settings.max_detections, probabilities.numel()))
        query, label = flat // categories, flat % categories
        height, width = -(-size[0] // MASK_STRIDE), -(-size[1] // MASK_STRIDE)  # the image's part of the map
        maps = out.masks[-1][k, query, :height, :width].float().sigmoid()
        boxes, mask_score = _boxes_and_scores(maps, size)
        score = top * mask_score
        keep = (score > settings.score_threshold) & (mask_score > 0)
        query, label, score, boxes, maps = query[keep], label[keep], score[keep], boxes[keep], maps[keep]
        order = score.argsort(descending=True)
        query, label, score, boxes, maps = query[order], label[order], score[order], boxes[order], maps[order]
        found = {"boxes": boxes, "labels": label + 1, "scores": score,
                 "masks": _crop(maps, boxes, settings.mask_size)}
        if self.num_attributes:
            found["attributes"] = self.attribute_classifier(out.queries[k][query]).float().sigmoid()
        return found

    @torch.no_grad()
    def attributes_of_boxes(self, images: list[torch.Tensor], boxes: list[torch.Tensor]) -> list[torch.Tensor]:
        """The attribute probabilities of given boxes: those of the query whose mask's box overlaps each most,
        the overlap weighted by the query's probability of being an object (a "no object" query's embedding
        never learnt attributes)."""
        out = self.run(images)
        found = []
        for k, (image, given) in enumerate(zip(images, boxes, strict=True)):
            if not len(given):
                found.append(given.new_zeros((0, self.num_attributes)))
                continue
            height, width = -(-image.shape[-2] // MASK_STRIDE), -(-image.shape[-1] // MASK_STRIDE)
            query_boxes, _ = _boxes_and_scores(out.masks[-1][k, :, :height, :width].float().sigmoid(),
                                               tuple(image.shape[-2:]))
            objectness = 1 - out.classes[-1][k].float().softmax(-1)[:, -1]
            nearest = (box_iou(given.float(), query_boxes) * objectness[None]).argmax(1)
            found.append(self.attribute_classifier(out.queries[k][nearest]).float().sigmoid())
        return found


def _mask_count(class_labels: list[torch.Tensor], device: torch.device) -> torch.Tensor:
    """The mean number of true masks per process, at least 1: what the mask losses are divided by. Averaged over
    the processes of a distributed run, as the reference does (Hugging Face averages only under accelerate)."""
    count = torch.as_tensor(float(sum(len(labels) for labels in class_labels)), device=device)
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(count)
        count = count / dist.get_world_size()
    return count.clamp(min=1)


def _boxes_and_scores(maps: torch.Tensor, size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Each (n, h/4, w/4) probability map's box in input pixels and its mask score (mean probability over its
    pixels above the threshold, 0 for an empty mask). A box spans the whole footprint of its map's pixels above
    the threshold, so that the mask cropped to it loses none of them."""
    binary = maps > MASK_THRESHOLD
    area = binary.sum((1, 2))
    mask_score = (maps * binary).sum((1, 2)) / area.clamp(min=1)
    rows, columns = binary.any(2), binary.any(1)
    boxes = torch.zeros((len(maps), 4), device=maps.device)
    if len(maps):
        row_index = torch.arange(maps.shape[1], device=maps.device)
        column_index = torch.arange(maps.shape[2], device=maps.device)
        big = max(maps.shape[1:])
        boxes[:, 0] = torch.where(columns, column_index, big).amin(1)
        boxes[:, 1] = torch.where(rows, row_index, big).amin(1)
        boxes[:, 2] = torch.where(columns, column_index, -1).amax(1) + 1
        boxes[:, 3] = torch.where(rows, row_index, -1).amax(1) + 1
        boxes = boxes * MASK_STRIDE
        boxes[:, 0::2] = boxes[:, 0::2].clamp(0, size[1])
        boxes[:, 1::2] = boxes[:, 1::2].clamp(0, size[0])
        boxes[area == 0] = 0
    return boxes, mask_score


def _crop(maps: torch.Tensor, boxes: torch.Tensor, size: int) -> torch.Tensor:
    """(n, 1, size, size) ``crop`` masks: each map sampled on its box, every map pixel the box spans averaged
    into the bins it falls in (``sampling_ratio=0``), so a box under ``size`` map pixels a side loses nothing."""
    if not len(maps):
        return maps.new_zeros((0, 1, size, size))
    rois = torch.cat([torch.arange(len(boxes), device=boxes.device, dtype=boxes.dtype)[:, None], boxes], 1)
    return roi_align(maps[:, None], rois, size, spatial_scale=1.0 / MASK_STRIDE, sampling_ratio=0, aligned=True)


def build(settings: Mask2FormerParams, model_params: ModelParams, num_classes: int, num_attributes: int,
          initial_weights: bool = True) -> FashionMask2Former:
    """A Mask2Former for ``num_classes`` classes (background included); ``settings.weights`` loaded if
    ``initial_weights``. The configuration is built in code: nothing is fetched."""
    if settings.freeze_batchnorm and initial_weights:
        require_weights("mask2former", "weights", settings.weights)
    net = Mask2FormerForUniversalSegmentation(mask2former_config(settings, num_classes - 1))
    model = FashionMask2Former(net, settings, num_attributes if settings.attribute_head else 0)
    if initial_weights and settings.weights != "none":
        load_pretrained(model, settings.weights)
    if settings.freeze_batchnorm:
        freeze_batchnorm(model.backbone)
    if settings.mask_size * MASK_STRIDE < model_params.max_size:
        log.info("mask2former.mask_size %d stores boxes wider than %d px at less than the model's resolution "
                 "(model.max_size is %d)", settings.mask_size, settings.mask_size * MASK_STRIDE, model_params.max_size)
    return model
