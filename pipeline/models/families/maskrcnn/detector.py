"""The Mask R-CNN family: torchvision's Mask R-CNN with an attribute head, built from the ``maskrcnn`` section.

Imports torch and torchvision only (no pydantic, no pipeline data code), so that
``benchmarks/train_throughput.py`` runs on a bare GPU box.
"""

from __future__ import annotations

import logging
import urllib.error

import torch
from torch import nn
from torchvision.models import ResNet18_Weights
from torchvision.models.detection import (
    MaskRCNN,
    MaskRCNN_ResNet50_FPN_V2_Weights,
    MaskRCNN_ResNet50_FPN_Weights,
    maskrcnn_resnet50_fpn,
    maskrcnn_resnet50_fpn_v2,
)
from torchvision.models.detection.backbone_utils import resnet_fpn_backbone
from torchvision.models.detection.generalized_rcnn import GeneralizedRCNN
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
from torchvision.models.detection.rpn import RPNHead
from torchvision.models.detection.transform import GeneralizedRCNNTransform, resize_boxes
from torchvision.ops import roi_align
from torchvision.ops.poolers import initLevelMapper

from pipeline.config.model import ModelParams
from pipeline.models.anchors import StridedAnchorGenerator
from pipeline.models.batchnorm import freeze_batchnorm, require_weights
from pipeline.models.contract import MaskFormat
from pipeline.models.families.maskrcnn.attribute_head import AttributeRoIHeads
from pipeline.models.families.maskrcnn.params import DEFAULT_MASK_HEAD, FPN_LEVELS, MaskRCNNParams
from pipeline.models.weights import WeightsError, load_matching, load_resnet_state, read_state_dict

log = logging.getLogger(__name__)

# Parameter groups named in the weight-loading log, most specific first.
PARAMETER_GROUPS = ("backbone.body", "backbone.fpn", "rpn", "roi_heads.box_head", "roi_heads.box_predictor",
                    "roi_heads.mask_head", "roi_heads.mask_predictor", "roi_heads.attribute_predictor")
_ATTRIBUTE_HEAD = "roi_heads.attribute_predictor."
_FPN = "backbone.fpn."
FPN_STRIDES = tuple(2 ** (2 + level) for level in range(FPN_LEVELS))  # P2-P6: 4 to 64 pixels
_BACKBONE_STAGES = ("layer4", "layer3", "layer2", "layer1", "conv1")  # trainable from the top down


class PresizedTransform(GeneralizedRCNNTransform):
    """Normalises and batches, and keeps what the contract wants: no resize, masks left as RoI maps.

    The contract hands a family its images at their size: ``pipeline.data.dataset`` resizes (and
    scale-jitters) the training images, and each TTA view is made at its own scale. torchvision's
    transform would resize them back to ``min_size``, undoing both. Its ``postprocess`` would paste
    each M x M mask into a full image, which the prediction store does not want (M*M bytes instead
    of h*w); boxes are still mapped as torchvision does (by a factor of 1, images not being resized).
    """

    def resize(self, image, target=None):
        return image, target

    def postprocess(self, result, image_shapes, original_image_sizes):
        if self.training:
            return result
        for found, size, original in zip(result, image_shapes, original_image_sizes, strict=True):
            found["boxes"] = resize_boxes(found["boxes"], size, original)
        return result


class FashionMaskRCNN(MaskRCNN):
    """torchvision's Mask R-CNN as a family of ``pipeline.models.contract``: RoI masks, optional attributes."""

    def __init__(self, built: MaskRCNN) -> None:
        # Adopt the parts of a model that torchvision's builders made (no copy of their code).
        GeneralizedRCNN.__init__(self, built.backbone, built.rpn, built.roi_heads, built.transform)

    @property
    def backbone(self) -> nn.Module:
        """The ResNet and FPN (the contract's ``HasBackbone``). A property: Python 3.12's protocol check sees class
        attributes, not a submodule that ``nn.Module`` keeps in ``_modules``; the submodule, and so the
        checkpoints' keys, are unchanged."""
        return self._modules["backbone"]

    @property
    def mask_format(self) -> MaskFormat:
        size = self.roi_heads.mask_roi_pool.output_size  # the mask head doubles its RoI pooling size
        return MaskFormat("roi", 2 * (size if isinstance(size, int) else size[0]))

    @property
    def num_attributes(self) -> int:
        heads = self.roi_heads
        return heads.attribute_predictor.out_features if isinstance(heads, AttributeRoIHeads) else 0

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        """As ``nn.Module``'s, but a checkpoint made without the attribute head (before it existed, or with it
        off) loads too: the head keeps its initial weights and a warning says so (its predictions are then
        uninformed, and tuning will choose the category-only or drop policy).
        """
        head = {k for k in self.state_dict() if k.startswith(_ATTRIBUTE_HEAD)}
        if strict and head and not head & set(state_dict):
            log.warning("the weights have no attribute head (%s): it is initialised, not trained; retrain for "
                        "attribute predictions", ", ".join(sorted(head)))
            state_dict = {**state_dict, **{k: v for k, v in self.state_dict().items() if k in head}}
        return super().load_state_dict(state_dict, strict, assign)

    def attributes_of_boxes(self, images: list[torch.Tensor], boxes: list[torch.Tensor]) -> list[torch.Tensor]:
        """The attribute head's probabilities for given boxes (pixels of ``images``), e.g. the true ones.

        Judges the head alone, without the detector's misses and misplaced boxes. Eval mode.
        """
        image_list, targets = self.transform(images, [{"boxes": b} for b in boxes])
        features = self.backbone(image_list.tensors)
        return self.roi_heads.attribute_probabilities(features, [t["boxes"] for t in targets],
                                                      image_list.image_sizes)

    def instance_features(self, images: list[torch.Tensor], boxes: list[torch.Tensor], masks: list[torch.Tensor],
                          ) -> dict[str, torch.Tensor]:
        """Three descriptors of given instances (boxes and masks in pixels of ``images``), eval mode.

        ``fpn_mask``: the FPN features of the box's level (the one the box head reads), mask-weighted
        mean over the box, so that background inside the box counts little. ``box_head``: the box
        head's representation of the same pooled features. ``texture``: the mask-weighted mean and
        spread of the finest features, FPN level P2 (stride 4) and the ResNet stem (stride 2), each
        part unit length: where a textile pattern, a few pixels across, still shows.
        """
        image_list, targets = self.transform(images, [{"boxes": b} for b in boxes])
        boxes = [t["boxes"] for t in targets]
        stem: list[torch.Tensor] = []
        hook = self.backbone.body.relu.register_forward_hook(lambda module, inputs, output: stem.append(output))
        try:
            features = self.backbone(image_list.tensors)
        finally:
            hook.remove()
        pooler = self.roi_heads.box_roi_pool
        pooled = pooler(features, boxes, image_list.image_sizes)
        fine = [(features[pooler.featmap_names[0]], pooler.scales[0]), (stem[0], pooler.scales[0] * 2)]
        texture = [part for grid, scale in fine for part in _masked_moments(
            roi_align(grid, boxes, _TEXTURE_GRID, scale, sampling_ratio=2, aligned=True), masks, boxes)]
        return {"fpn_mask": _masked_moments(pooled, masks, boxes)[0], "box_head": self.roi_heads.box_head(pooled),
                "texture": torch.cat([torch.nn.functional.normalize(p, dim=1) for p in texture], 1)}


_TEXTURE_GRID = (14, 14)  # samples per box side for the texture statistics (twice the box head's 7)


def _masked_moments(pooled: torch.Tensor, masks: list[torch.Tensor], boxes: list[torch.Tensor],
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """The mask-weighted mean and standard deviation over each box of ``pooled`` (N, C, h, w): (N, C) each."""
    size = tuple(pooled.shape[-2:])
    weights = torch.cat([_mask_in_box(m, b, size) for m, b in zip(masks, boxes, strict=True)]).to(pooled.dtype)
    weights = weights / weights.sum((2, 3), keepdim=True).clamp_min(1e-6)
    mean = (pooled * weights).sum((2, 3))
    spread = ((pooled - mean[..., None, None]) ** 2 * weights).sum((2, 3)).clamp_min(0).sqrt()
    return mean, spread


def _mask_in_box(masks: torch.Tensor, boxes: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(N, 1, *size): each (h, w) mask sampled on its own box's grid, as the features are pooled."""
    rois = torch.cat([torch.arange(len(boxes), dtype=boxes.dtype, device=boxes.device)[:, None], boxes], 1)
    return roi_align(masks[:, None].to(boxes.dtype), rois, size, aligned=True)


def _detector_kwargs(settings: MaskRCNNParams) -> dict:
    keys = ("rpn_pre_nms_top_n_train", "rpn_post_nms_top_n_train", "rpn_pre_nms_top_n_test",
            "rpn_post_nms_top_n_test", "rpn_batch_size_per_image", "box_batch_size_per_image",
            "box_detections_per_img", "box_score_thresh")
    return {key: getattr(settings, key) for key in keys}


def _set_anchors(model: MaskRCNN, settings: MaskRCNNParams, rpn_conv_depth: int) -> None:
    model.rpn.anchor_generator = StridedAnchorGenerator(tuple(settings.anchor_sizes), tuple(settings.aspect_ratios),
                                                        FPN_STRIDES)
    per_location = len(settings.aspect_ratios)
    if model.rpn.head.cls_logits.out_channels != per_location:
        model.rpn.head = RPNHead(model.backbone.out_channels, per_location, conv_depth=rpn_conv_depth)


def _set_mask_head(model: MaskRCNN, settings: MaskRCNNParams, num_classes: int,
                   norm_layer: type[nn.Module] | None) -> None:
    layers = tuple(settings.mask_head_layers)
    if layers == DEFAULT_MASK_HEAD:
        return
    model.roi_heads.mask_head = MaskRCNNHeads(model.backbone.out_channels, list(layers), 1, norm_layer=norm_layer)
    model.roi_heads.mask_predictor = MaskRCNNPredictor(layers[-1], layers[-1], num_classes)


def _fix_pooler_scales(model: MaskRCNN) -> None:
    """The FPN's strides (P2-P5: 4 to 32) for the RoI poolers, which torchvision lets guess them.

    ``MultiScaleRoIAlign`` infers each scale from its first batch and keeps it, outside the state
    dict; where padding is large next to the image (66 px padded to 96) it guesses 1/2 for 1/4, so a
    resumed run or prediction, whose first batch differs, gave other results than an uninterrupted one.
    """
    for pooler in (model.roi_heads.box_roi_pool, model.roi_heads.mask_roi_pool):
        levels = len(pooler.featmap_names)
        pooler.scales = [2.0 ** -(2 + k) for k in range(levels)]
        pooler.map_levels = initLevelMapper(2, 1 + levels, canonical_scale=pooler.canonical_scale,
                                            canonical_level=pooler.canonical_level)


def _limit_trainable(model: MaskRCNN, layers: int) -> None:
    frozen = _BACKBONE_STAGES[layers:]
    for name, parameter in model.backbone.body.named_parameters():
        if name.startswith(frozen) or (name.startswith("bn1") and "conv1" in frozen):
            parameter.requires_grad_(False)


def _torchvision_state_dict(architecture: str) -> dict[str, torch.Tensor]:
    """COCO Mask R-CNN weights, or ImageNet backbone weights for ResNet-18 (no COCO Mask R-CNN exists for it)."""
    weights = {"maskrcnn_resnet50_fpn_v2": MaskRCNN_ResNet50_FPN_V2_Weights.COCO_V1,
               "maskrcnn_resnet50_fpn": MaskRCNN_ResNet50_FPN_Weights.COCO_V1,
               "maskrcnn_resnet18_fpn": ResNet18_Weights.IMAGENET1K_V1}[architecture]
    try:
        state = weights.get_state_dict(progress=True, check_hash=True)
    except (urllib.error.URLError, OSError, RuntimeError) as exc:
        raise WeightsError(
            f"cannot download {weights} ({exc}). Offline? Download it where there is internet (it lands in "
            f"$TORCH_HOME/hub/checkpoints) and set maskrcnn.weights to the file's path") from exc
    if architecture == "maskrcnn_resnet18_fpn":
        state = {f"backbone.body.{k}": v for k, v in state.items() if not k.startswith("fc.")}
    return state


def _load_initial_weights(net: FashionMaskRCNN, state: dict[str, torch.Tensor], source: str) -> None:
    """A detector's state dict where names and shapes match; a file sharing no name with it holds a ResNet
    (ImageNet's, a UNet's encoder), which goes into the backbone's body whole or not at all."""
    log.info("initial weights from %s:", source)
    if not set(state) & set(net.state_dict()):
        count = load_resnet_state(net.backbone.body, state, source, "maskrcnn.backbone.body")
        log.info("  loaded backbone.body: %d tensors (a ResNet's)", count)
        return
    own = net.state_dict()
    fpn = [key for key in own if key.startswith(_FPN) and not key.endswith("num_batches_tracked")]
    if any(key.startswith(_FPN) for key in state) and not all(
            key in state and state[key].shape == own[key].shape for key in fpn):
        # Another FPN (YOLACT's is on C3-C5, this one on C2-C5): tensors of equal shape would land on other levels.
        state = {key: value for key, value in state.items() if not key.startswith(_FPN)}
        log.info("  the file's FPN has other levels than this one's: backbone.fpn keeps its initial weights")
    for line in load_matching(net, state, PARAMETER_GROUPS).lines():
        log.info("  %s", line)


def build(settings: MaskRCNNParams, model_params: ModelParams, num_classes: int, num_attributes: int,
          initial_weights: bool = True) -> FashionMaskRCNN:
    """A Mask R-CNN for ``num_classes`` classes (background included); ``settings.weights`` loaded if asked.

    With ``settings.attribute_head`` and ``num_attributes`` > 0 its RoI heads also predict attributes.
    A model about to receive a checkpoint's weights is built with ``initial_weights=False``.
    """
    if settings.freeze_batchnorm and initial_weights:
        require_weights("maskrcnn", "weights", settings.weights)
    kwargs = {**_detector_kwargs(settings), "min_size": model_params.min_size, "max_size": model_params.max_size}
    if settings.architecture == "maskrcnn_resnet50_fpn_v2":
        built, rpn_conv_depth = maskrcnn_resnet50_fpn_v2(weights=None, weights_backbone=None,
                                                         num_classes=num_classes, **kwargs), 2
    elif settings.architecture == "maskrcnn_resnet50_fpn":
        built, rpn_conv_depth = maskrcnn_resnet50_fpn(weights=None, weights_backbone=None,
                                                      num_classes=num_classes, **kwargs), 1
    else:
        # BatchNorm, not torchvision's default FrozenBatchNorm2d: frozen statistics of a random
        # init never change, and the network does not learn (measured on the synthetic data).
        backbone = resnet_fpn_backbone(backbone_name="resnet18", weights=None, norm_layer=nn.BatchNorm2d,
                                       trainable_layers=5)
        built, rpn_conv_depth = MaskRCNN(backbone, num_classes=num_classes, **kwargs), 1
    _set_anchors(built, settings, rpn_conv_depth)
    _set_mask_head(built, settings, num_classes, nn.BatchNorm2d if settings.architecture.endswith("_v2") else None)
    _fix_pooler_scales(built)
    if settings.attribute_head and num_attributes:
        built.roi_heads = AttributeRoIHeads(built.roi_heads, num_attributes, settings.attribute_loss_weight)
    built.transform = PresizedTransform(model_params.min_size, model_params.max_size, built.transform.image_mean,
                                        built.transform.image_std)
    net = FashionMaskRCNN(built)
    if initial_weights and settings.weights != "none":
        state = (_torchvision_state_dict(settings.architecture) if settings.weights == "torchvision"
                 else read_state_dict(settings.weights))
        _load_initial_weights(net, state, settings.weights)
    if settings.freeze_batchnorm:
        freeze_batchnorm(net.backbone.body)
    _limit_trainable(net, settings.trainable_backbone_layers)
    return net
