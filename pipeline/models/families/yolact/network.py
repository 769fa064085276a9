"""The YOLACT family (Bolya et al., ICCV 2019) from torchvision parts and plain torch: no compiled ops.

A ResNet with an FPN on C3-C5 and two stride-2 convolutions above it (P3-P7, torchvision's
``resnet_fpn_backbone`` with ``LastLevelP6P7``), the protonet on P3, one prediction head shared by
all levels, Fast NMS, and masks assembled from the prototypes and each detection's coefficients,
sigmoid, stored on its box (``crop`` kind). docs/models.md ("YOLACT") says where it departs from
the paper: torchvision's FPN upsamples by nearest neighbour (the paper's bilinear), and anchors
keep their aspect ratios (``pipeline.models.families.yolact.anchors``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as torch_f
from torchvision.models.detection.backbone_utils import BackboneWithFPN, resnet_fpn_backbone
from torchvision.ops import box_iou, clip_boxes_to_image, roi_align
from torchvision.ops.feature_pyramid_network import LastLevelP6P7

from pipeline.config.model import ModelParams
from pipeline.models.batching import padded_batch
from pipeline.models.batchnorm import freeze_batchnorm, require_weights
from pipeline.models.contract import MaskFormat
from pipeline.models.families.yolact import losses
from pipeline.models.families.yolact.anchors import BOX_CODER, anchor_generator, anchors_of, match_anchors
from pipeline.models.families.yolact.fast_nms import fast_nms
from pipeline.models.families.yolact.heads import CHANNELS, PredictionHead, protonet
from pipeline.models.families.yolact.params import YOLACTParams
from pipeline.models.targets import category_union
from pipeline.models.weights import load_resnet

log = logging.getLogger(__name__)

STRIDE = 32  # sides are padded to a multiple of C5's stride
PROTOTYPE_STRIDE = 4  # the protonet doubles P3 (stride 8)


@dataclass
class _Forward:
    """One batch through the network: the padded batch, the head's outputs, prototypes and P3's semantic logits."""

    batch: torch.Tensor
    head: dict[str, torch.Tensor]  # (B, N, width) per branch
    prototypes: torch.Tensor  # (B, H/4, W/4, k)
    semantic: torch.Tensor | None  # (B, C - 1, H/8, W/8), in train mode
    anchors: torch.Tensor  # (N, 4) in the batch's pixels


class FashionYOLACT(nn.Module):
    """YOLACT as a family of ``pipeline.models.contract``: box-cropped masks, attributes if asked."""

    def __init__(self, backbone: BackboneWithFPN, settings: YOLACTParams, num_classes: int,
                 num_attributes: int) -> None:
        super().__init__()
        self.settings = settings
        self.backbone = backbone
        self.protonet = protonet(settings.prototypes)
        self.head = PredictionHead(len(settings.aspect_ratios), num_classes, settings.prototypes, num_attributes)
        self.semantic = nn.Conv2d(CHANNELS, num_classes - 1, 1)  # the auxiliary loss's, unused in eval mode
        self.anchor_generator = anchor_generator(tuple(settings.anchor_sizes), tuple(settings.aspect_ratios))
        self.num_attributes = num_attributes

    @property
    def backbone(self) -> nn.Module:
        """The ResNet and FPN, P3 to P7 (the contract's ``HasBackbone``). A property: Python 3.12's protocol check
        sees class attributes, not a submodule that ``nn.Module`` keeps in ``_modules``; the submodule, and so the
        checkpoints' keys, are unchanged."""
        return self._modules["backbone"]

    @property
    def mask_format(self) -> MaskFormat:
        return MaskFormat("crop", self.settings.mask_size)

    def run(self, images: list[torch.Tensor]) -> _Forward:
        batch = padded_batch(images, STRIDE)
        levels = list(self.backbone(batch).values())  # P3-P7
        head = self.head(levels)
        prototypes = self.protonet(levels[0]).permute(0, 2, 3, 1)
        semantic = self.semantic(levels[0]) if self.training else None
        anchors = anchors_of(self.anchor_generator, levels)
        return _Forward(batch, head, prototypes, semantic, anchors)

    def forward(self, images: list[torch.Tensor], targets: list[dict] | None = None) -> dict | list[dict]:
        out = self.run(images)
        if self.training:
            if targets is None:
                raise ValueError("in train mode YOLACT needs targets")
            return self._losses(out, images, targets)
        return [self._detect(out, k, tuple(image.shape[-2:])) for k, image in enumerate(images)]

    def _losses(self, out: _Forward, images: list[torch.Tensor], targets: list[dict]) -> dict[str, torch.Tensor]:
        settings, sums = self.settings, dict.fromkeys(("classifier", "box_reg", "mask"), 0.0)
        positives, semantic, attributes = 0, [], []
        for k, (image, target) in enumerate(zip(images, targets, strict=True)):
            target = _trainable(target, tuple(image.shape[-2:]), settings.min_box_fraction)
            match = match_anchors(out.anchors, target["boxes"], target["labels"], settings.positive_iou,
                                  settings.negative_iou)
            positive = torch.nonzero(match.positive).squeeze(1)
            positives += len(positive)
            sums["classifier"] = sums["classifier"] + losses.classification_loss(
                out.head["classes"][k], match.labels, settings.negatives_per_positive)
            instance = match.instance[positive]
            wanted = BOX_CODER.encode_single(target["boxes"][instance], out.anchors[positive])
            sums["box_reg"] = sums["box_reg"] + torch_f.smooth_l1_loss(
                out.head["boxes"][k][positive].float(), wanted, reduction="sum", beta=1.0)
            truth = _downsampled(target["masks"], out.batch.shape[-2:], out.prototypes.shape[1:3])
            sums["mask"] = sums["mask"] + self._mask_loss(out, k, positive, instance, target, truth)
            at_p3 = _downsampled(target["masks"], out.batch.shape[-2:], out.semantic.shape[-2:])
            semantic.append(category_union(at_p3, target["labels"], out.semantic.shape[1]))
            if "attributes" in out.head:
                attributes.append((out.head["attributes"][k][positive], target["attributes"][instance]))
        # As the reference implementation: box, class and mask losses per positive of the batch, the rest per image.
        scale = 1.0 / max(positives, 1)
        found = {"loss_classifier": settings.class_weight * scale * sums["classifier"],
                 "loss_box_reg": settings.box_weight * scale * sums["box_reg"],
                 "loss_mask": settings.mask_weight * scale * sums["mask"] + 0.0 * out.prototypes.sum(),
                 "loss_semantic": settings.semantic_weight * losses.semantic_loss(
                     out.semantic, torch.stack(semantic))}
        if attributes:
            found["loss_attributes"] = settings.attribute_weight * self._attribute_loss(attributes)
        return found

    def _mask_loss(self, out: _Forward, k: int, positive: torch.Tensor, instance: torch.Tensor, target: dict,
                   truth: torch.Tensor) -> torch.Tensor | float:
        """The mask loss of image ``k``'s positives: at most ``masks_to_train`` of them, chosen at random, and
        scaled up to stand for all of them, as the reference implementation does."""
        if not len(positive):
            return 0.0
        scale = 1.0
        if len(positive) > self.settings.masks_to_train:
            scale = len(positive) / self.settings.masks_to_train
            chosen = torch.randperm(len(positive), device=positive.device)[: self.settings.masks_to_train]
            positive, instance = positive[chosen], instance[chosen]
        logits = losses.assemble_masks(out.prototypes[k], out.head["coefficients"][k][positive])
        return scale * losses.mask_loss(logits, truth[instance], target["boxes"][instance] / PROTOTYPE_STRIDE)

    def _attribute_loss(self, pairs: list[tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
        """Mean BCE over the positives of instances with attributes; 0 (with a gradient) when there are none."""
        logits, wanted = torch.cat([p for p, _ in pairs]), torch.cat([w for _, w in pairs])
        keep = wanted.sum(1) > 0
        if not bool(keep.any()):  # every parameter takes part (DistributedDataParallel waits for each gradient)
            return logits.sum() * 0.0
        return torch_f.binary_cross_entropy_with_logits(logits[keep].float(), wanted[keep].float())

    def _detect(self, out: _Forward, k: int, size: tuple[int, int]) -> dict[str, torch.Tensor]:
        """Image ``k``'s detections: Fast NMS of its decoded boxes, then its masks on their boxes."""
        settings = self.settings
        scores = out.head["classes"][k].float().softmax(1)[:, 1:]
        boxes = clip_boxes_to_image(BOX_CODER.decode_single(out.head["boxes"][k].float(), out.anchors), size)
        kept = fast_nms(boxes, scores, settings.nms_iou, settings.nms_top_k, settings.score_threshold,
                        settings.max_detections)
        boxes = boxes[kept.index]
        if not len(boxes):
            empty = boxes.new_zeros((0, 1, settings.mask_size, settings.mask_size))
            return {"boxes": boxes, "labels": kept.label, "scores": kept.score, "masks": empty,
                    **({"attributes": boxes.new_zeros((0, self.num_attributes))} if self.num_attributes else {})}
        masks = box_masks(out.prototypes[k].float(), out.head["coefficients"][k][kept.index].float(), boxes,
                          settings.mask_size)
        found = {"boxes": boxes, "labels": kept.label + 1, "scores": kept.score, "masks": masks}
        if self.num_attributes:
            found["attributes"] = out.head["attributes"][k][kept.index].float().sigmoid()
        return found

    @torch.no_grad()
    def attributes_of_boxes(self, images: list[torch.Tensor], boxes: list[torch.Tensor]) -> list[torch.Tensor]:
        """The attribute probabilities of given boxes: those of the anchor each overlaps most (eval mode)."""
        out = self.run(images)
        return [out.head["attributes"][k][box_iou(b, out.anchors).argmax(1)].float().sigmoid() if len(b)
                else b.new_zeros((0, self.num_attributes)) for k, b in enumerate(boxes)]


def box_masks(prototypes: torch.Tensor, coefficients: torch.Tensor, boxes: torch.Tensor, size: int) -> torch.Tensor:
    """(n, 1, size, size) ``crop`` masks: each detection's sigmoid(prototypes x coefficients), sampled on its box.

    ``prototypes`` (H, W, k) at stride 4 of the input, ``coefficients`` (n, k), ``boxes`` (n, 4) in input pixels.
    Sampling on the box is the paper's crop: nothing outside the box is stored. Each of the size x size bins
    averages as many bilinear samples as it spans prototype pixels (``sampling_ratio=0``): one, an exact
    interpolation, for a box under ``size`` prototype pixels, the usual case; more, so none is skipped, above.
    """
    probabilities = losses.assemble_masks(prototypes, coefficients).sigmoid()[:, None]
    rois = torch.cat([torch.arange(len(boxes), device=boxes.device, dtype=boxes.dtype)[:, None], boxes], 1)
    return roi_align(probabilities, rois, size, spatial_scale=1.0 / PROTOTYPE_STRIDE, sampling_ratio=0, aligned=True)


def _trainable(target: dict, size: tuple[int, int], min_fraction: float) -> dict:
    """The target without the instances whose box is narrower or lower than ``min_fraction`` of the image."""
    boxes = target["boxes"]
    wide = (boxes[:, 2] - boxes[:, 0]) >= min_fraction * size[1]
    keep = wide & ((boxes[:, 3] - boxes[:, 1]) >= min_fraction * size[0])
    return {key: value[keep] if key in ("boxes", "labels", "masks", "attributes") else value
            for key, value in target.items()}


def _downsampled(masks: torch.Tensor, padded: tuple[int, int], size: tuple[int, int]) -> torch.Tensor:
    """(G, h, w) masks, padded to the batch's size, resampled to ``size`` and binarised, as the paper's targets."""
    if not len(masks):
        return masks.new_zeros((0, *size), dtype=torch.float32)
    grid = torch_f.pad(masks.float(), (0, padded[1] - masks.shape[-1], 0, padded[0] - masks.shape[-2]))
    return (torch_f.interpolate(grid[None], size=size, mode="bilinear", align_corners=False)[0] > 0.5).float()


def build(settings: YOLACTParams, model_params: ModelParams, num_classes: int, num_attributes: int,
          initial_weights: bool = True) -> FashionYOLACT:
    """A YOLACT for ``num_classes`` classes (background included); ``settings.weights`` loaded if ``initial_weights``.

    The ResNet is built without weights (nothing is downloaded) and with BatchNorm: torchvision's
    default FrozenBatchNorm2d keeps a random init's statistics, and such a network does not learn.
    ``settings.freeze_batchnorm`` freezes it once the weights are loaded (fine-tuning with a few images per GPU).
    ``model_params`` (the input size) does not change the network.
    """
    if settings.freeze_batchnorm and initial_weights:
        require_weights("yolact", "weights", settings.weights)
    backbone = resnet_fpn_backbone(backbone_name=settings.backbone, weights=None, norm_layer=nn.BatchNorm2d,
                                   trainable_layers=5, returned_layers=[2, 3, 4],
                                   extra_blocks=LastLevelP6P7(CHANNELS, CHANNELS))
    if initial_weights and settings.weights != "none":
        count = load_resnet(backbone.body, settings.weights, "yolact.backbone")
        log.info("backbone weights from %s: %d tensors", settings.weights, count)
    if settings.freeze_batchnorm:
        freeze_batchnorm(backbone.body)
    return FashionYOLACT(backbone, settings, num_classes, num_attributes if settings.attribute_branch else 0)
