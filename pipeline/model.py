"""Mask R-CNN builders and initial weights.

Imports torch and torchvision only (no pydantic, no pipeline data code), so that
``benchmarks/train_throughput.py`` runs on a bare GPU box. ``ModelSpec`` is a plain
dataclass; ``pipeline.params`` validates the ``model`` section of params.yaml into it.
"""

from __future__ import annotations

import logging
import urllib.error
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import torch
from torch import nn
from torch.nn import functional as torch_f
from torchvision.models import ResNet18_Weights
from torchvision.models.detection import (
    MaskRCNN,
    MaskRCNN_ResNet50_FPN_V2_Weights,
    MaskRCNN_ResNet50_FPN_Weights,
    maskrcnn_resnet50_fpn,
    maskrcnn_resnet50_fpn_v2,
)
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.backbone_utils import resnet_fpn_backbone
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
from torchvision.models.detection.roi_heads import RoIHeads
from torchvision.models.detection.rpn import RPNHead
from torchvision.models.detection.transform import GeneralizedRCNNTransform
from torchvision.ops.misc import FrozenBatchNorm2d
from torchvision.ops.poolers import initLevelMapper

from pipeline.errors import PipelineError

log = logging.getLogger(__name__)

Architecture = Literal["maskrcnn_resnet50_fpn_v2", "maskrcnn_resnet50_fpn", "maskrcnn_resnet18_fpn"]
ARCHITECTURES: tuple[str, ...] = Architecture.__args__

# Parameter groups named in the weight-loading log, most specific first.
PARAMETER_GROUPS = ("backbone.body", "backbone.fpn", "rpn", "roi_heads.box_head", "roi_heads.box_predictor",
                    "roi_heads.mask_head", "roi_heads.mask_predictor", "roi_heads.attribute_predictor")
_FPN_LEVELS = 5  # P2-P5 and the max-pooled P6 of torchvision's FPN
_DEFAULT_MASK_HEAD = (256, 256, 256, 256)
_BACKBONE_STAGES = ("layer4", "layer3", "layer2", "layer1", "conv1")  # trainable from the top down


class WeightsError(PipelineError):
    """Initial weights that cannot be found, read or downloaded."""


@dataclass(frozen=True)
class ModelSpec:
    """The ``model`` section of params.yaml: architecture, initial weights, resolution and RoI budgets."""

    __pydantic_config__ = {"extra": "forbid"}  # a misspelt key in params.yaml is an error

    architecture: Architecture
    weights: str = "none"  # none | torchvision | path to a checkpoint or state dict
    trainable_backbone_layers: int = 5
    freeze_batchnorm: bool = False  # backbone BatchNorm -> FrozenBatchNorm2d (fine-tuning with small batches)
    min_size: int = 800
    max_size: int = 1333
    anchor_sizes: tuple[int, ...] = (32, 64, 128, 256, 512)
    aspect_ratios: tuple[float, ...] = (0.5, 1.0, 2.0)
    rpn_pre_nms_top_n_train: int = 2000
    rpn_post_nms_top_n_train: int = 2000
    rpn_pre_nms_top_n_test: int = 1000
    rpn_post_nms_top_n_test: int = 1000
    rpn_batch_size_per_image: int = 256
    box_batch_size_per_image: int = 512
    box_detections_per_img: int = 100
    box_score_thresh: float = 0.05
    # Conv channels of the mask head; torchvision's is four of 256. On a CPU a lighter head pays:
    # each positive RoI costs 0.9 GFLOPs forward in the default head, 0.17 in two of 128.
    mask_head_layers: tuple[int, ...] = _DEFAULT_MASK_HEAD
    attribute_head: bool = True  # predict the attributes (pipeline.model.AttributeRoIHeads)
    attribute_loss_weight: float = 5.0  # on the mean binary cross-entropy over attributes

    def __post_init__(self) -> None:
        if not 0 <= self.trainable_backbone_layers <= 5:
            raise ValueError(f"trainable_backbone_layers must be 0-5, got {self.trainable_backbone_layers}")
        if not 0 < self.min_size <= self.max_size:
            raise ValueError(f"need 0 < min_size <= max_size, got {self.min_size} and {self.max_size}")
        if len(self.anchor_sizes) != _FPN_LEVELS or min(self.anchor_sizes) <= 0:
            raise ValueError(f"anchor_sizes needs {_FPN_LEVELS} positive sizes (one per FPN level), "
                             f"got {list(self.anchor_sizes)}")
        if not self.mask_head_layers or min(self.mask_head_layers) <= 0:
            raise ValueError(f"mask_head_layers must be positive channel counts, got {list(self.mask_head_layers)}")
        if self.attribute_loss_weight < 0:
            raise ValueError(f"attribute_loss_weight must be >= 0, got {self.attribute_loss_weight}")
        if not self.aspect_ratios or min(self.aspect_ratios) <= 0:
            raise ValueError(f"aspect_ratios must be positive, got {list(self.aspect_ratios)}")
        counts = {k: v for k, v in asdict(self).items() if k.startswith(("rpn_", "box_")) and k != "box_score_thresh"}
        if bad := [k for k, v in counts.items() if v <= 0]:
            raise ValueError(f"must be positive: {', '.join(bad)}")


class PresizedTransform(GeneralizedRCNNTransform):
    """Skips the second resize in training: ``pipeline.dataset`` already resized (and scale-jittered) each image.

    torchvision's transform would otherwise resize every training image back to ``min_size``,
    undoing the scale jitter and costing one more interpolation per image. In eval mode it
    resizes as usual, so inference on images of any size is unchanged.
    """

    def resize(self, image, target=None):
        if self.training:
            return image, target
        return super().resize(image, target)


GEOMETRY_FEATURES = 3


def box_geometry(boxes: list[torch.Tensor], image_shapes: list[tuple[int, int]]) -> torch.Tensor:
    """(N, 3) for the boxes of all images: log aspect ratio, and width and height relative to the image."""
    parts = []
    for found, (height, width) in zip(boxes, image_shapes, strict=True):
        box_w = (found[:, 2] - found[:, 0]).float().clamp(min=1.0)
        box_h = (found[:, 3] - found[:, 1]).float().clamp(min=1.0)
        parts.append(torch.stack([torch.log(box_w / box_h), box_w / width, box_h / height], 1))
    return torch.cat(parts) if parts else torch.zeros((0, GEOMETRY_FEATURES))


class AttributeRoIHeads(RoIHeads):
    """torchvision's box and mask RoI heads plus an attribute classifier on the box head's features.

    The classifier takes the box head's representation of a RoI and the RoI's shape
    (:func:`box_geometry`): RoIAlign resamples every box to the same grid and so discards its
    aspect ratio, which carries much of a garment's length (a mini and a maxi skirt differ in
    little else inside their boxes).

    Training: the classifier sees the positive RoIs that the box branch sampled (matched to a true
    instance with IoU >= 0.5), and only those whose instance carries attributes; background RoIs
    and instances without attributes (other categories, or garments of an image annotated without
    attributes) give no target. The loss is the mean binary cross-entropy over attributes times
    ``loss_weight``, reported as ``loss_attributes``. Inference: each detection gets
    ``attributes``, one sigmoid probability per attribute, from its final box.

    torchvision's ``forward`` runs box sampling and the box head inside one method. Rather than
    copy it, this class records what it needs on the way: the sampled RoIs (from
    ``select_training_samples``) and the box head's output (a forward hook), both dropped at the
    end of the step.
    """

    def __init__(self, heads: RoIHeads, num_attributes: int, loss_weight: float) -> None:
        super().__init__(
            heads.box_roi_pool, heads.box_head, heads.box_predictor,
            heads.proposal_matcher.high_threshold, heads.proposal_matcher.low_threshold,
            heads.fg_bg_sampler.batch_size_per_image, heads.fg_bg_sampler.positive_fraction,
            heads.box_coder.weights, heads.score_thresh, heads.nms_thresh, heads.detections_per_img,
            heads.mask_roi_pool, heads.mask_head, heads.mask_predictor)
        self.attribute_predictor = nn.Linear(heads.box_predictor.cls_score.in_features + GEOMETRY_FEATURES,
                                             num_attributes)
        # Attributes are rare (a garment has about 6 of 92): start at a prior of 5% instead of 50%,
        # so that the first steps do not spend themselves on pushing every logit down.
        nn.init.normal_(self.attribute_predictor.weight, std=0.01)
        nn.init.constant_(self.attribute_predictor.bias, -3.0)
        self.loss_weight = loss_weight
        self._sampled: tuple[list[torch.Tensor], ...] | None = None
        self._box_features: torch.Tensor | None = None
        self.box_head.register_forward_hook(self._remember_box_features)

    def _remember_box_features(self, module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        if self.training:
            self._box_features = output

    def select_training_samples(self, proposals, targets):
        sampled = super().select_training_samples(proposals, targets)
        self._sampled = sampled[:3]  # the sampled RoIs, the true instance each is matched to, its label
        return sampled

    def forward(self, features, proposals, image_shapes, targets=None):
        result, losses = super().forward(features, proposals, image_shapes, targets)
        if self.training:
            (rois, matched_idxs, labels), box_features = self._sampled, self._box_features
            self._sampled = self._box_features = None
            represented = self._with_geometry(box_features, rois, image_shapes)
            losses["loss_attributes"] = self.loss_weight * self.attribute_loss(represented, matched_idxs, labels,
                                                                               targets)
        else:
            boxes = [found["boxes"] for found in result]
            for found, values in zip(result, self.attribute_probabilities(features, boxes, image_shapes), strict=True):
                found["attributes"] = values
        return result, losses

    def attribute_probabilities(self, features: dict[str, torch.Tensor], boxes: list[torch.Tensor],
                                image_shapes: list[tuple[int, int]]) -> list[torch.Tensor]:
        """One (N, num_attributes) tensor of probabilities per image, for its boxes."""
        pooled = self.box_head(self.box_roi_pool(features, boxes, image_shapes))
        represented = self._with_geometry(pooled, boxes, image_shapes)
        return list(self.attribute_predictor(represented).sigmoid().split([len(b) for b in boxes]))

    @staticmethod
    def _with_geometry(box_features: torch.Tensor, boxes: list[torch.Tensor],
                       image_shapes: list[tuple[int, int]]) -> torch.Tensor:
        """The classifier's input: the box head's representation of each box, then the box's shape."""
        return torch.cat([box_features, box_geometry(boxes, image_shapes).to(box_features.dtype)], 1)

    def attribute_loss(self, represented: torch.Tensor, matched_idxs: list[torch.Tensor],
                       labels: list[torch.Tensor], targets: list[dict[str, torch.Tensor]]) -> torch.Tensor:
        """Mean BCE over the positive RoIs of instances with attributes; 0 (with a gradient) when there are none.

        ``represented`` holds each sampled RoI's input to the classifier (all images, in order).
        """
        wanted = [target["attributes"][idxs] for idxs, target in zip(matched_idxs, targets, strict=True)]
        wanted = torch.cat(wanted) if wanted else represented.new_zeros((0, self.attribute_predictor.out_features))
        keep = (torch.cat(labels) > 0) & (wanted.sum(1) > 0)
        if not bool(keep.any()):
            # Every parameter must take part in the graph (DistributedDataParallel waits for its gradient).
            return sum(p.sum() for p in self.attribute_predictor.parameters()) * 0.0
        logits = self.attribute_predictor(represented[keep])
        return torch_f.binary_cross_entropy_with_logits(logits, wanted[keep].to(logits.dtype))


def attributes_of_boxes(model: MaskRCNN, images: list[torch.Tensor], boxes: list[torch.Tensor],
                        ) -> list[torch.Tensor]:
    """The attribute head's probabilities for given boxes (pixels of ``images``), e.g. the true ones.

    Judges the head alone, without the detector's misses and misplaced boxes. Eval mode.
    """
    image_list, targets = model.transform(images, [{"boxes": b} for b in boxes])
    features = model.backbone(image_list.tensors)
    return model.roi_heads.attribute_probabilities(features, [t["boxes"] for t in targets], image_list.image_sizes)


def _detector_kwargs(spec: ModelSpec) -> dict:
    keys = ("min_size", "max_size", "rpn_pre_nms_top_n_train", "rpn_post_nms_top_n_train", "rpn_pre_nms_top_n_test",
            "rpn_post_nms_top_n_test", "rpn_batch_size_per_image", "box_batch_size_per_image",
            "box_detections_per_img", "box_score_thresh")
    return {key: getattr(spec, key) for key in keys}


def _set_anchors(model: MaskRCNN, spec: ModelSpec, rpn_conv_depth: int) -> None:
    model.rpn.anchor_generator = AnchorGenerator(tuple((size,) for size in spec.anchor_sizes),
                                                 (tuple(spec.aspect_ratios),) * _FPN_LEVELS)
    per_location = len(spec.aspect_ratios)
    if model.rpn.head.cls_logits.out_channels != per_location:
        model.rpn.head = RPNHead(model.backbone.out_channels, per_location, conv_depth=rpn_conv_depth)


def _set_mask_head(model: MaskRCNN, spec: ModelSpec, num_classes: int, norm_layer: type[nn.Module] | None) -> None:
    layers = tuple(spec.mask_head_layers)
    if layers == _DEFAULT_MASK_HEAD:
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


def _freeze_batchnorm(module: nn.Module) -> None:
    """Replace every BatchNorm2d under ``module`` by a FrozenBatchNorm2d with the same statistics.

    torchvision has no public helper for this; its builders choose the norm layer at construction,
    before the weights (loaded afterwards here) are known.
    """
    for name, child in module.named_children():
        if isinstance(child, nn.BatchNorm2d):
            frozen = FrozenBatchNorm2d(child.num_features, eps=child.eps)
            for key in ("weight", "bias", "running_mean", "running_var"):
                getattr(frozen, key).copy_(getattr(child, key).detach())
            setattr(module, name, frozen)
        else:
            _freeze_batchnorm(child)


def _limit_trainable(model: MaskRCNN, layers: int) -> None:
    frozen = _BACKBONE_STAGES[layers:]
    for name, parameter in model.backbone.body.named_parameters():
        if name.startswith(frozen) or (name.startswith("bn1") and "conv1" in frozen):
            parameter.requires_grad_(False)


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


def _group(key: str) -> str:
    return next((group for group in PARAMETER_GROUPS if key.startswith(group + ".")), key.split(".")[0])


def load_matching(model: nn.Module, source: Mapping[str, torch.Tensor]) -> LoadReport:
    """Load every tensor of ``source`` whose name and shape match the model; keep the model's own init elsewhere."""
    own = model.state_dict()
    take, loaded, reinitialised = {}, {}, {}
    for key, tensor in own.items():
        group = _group(key)
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
            f"$TORCH_HOME/hub/checkpoints) and set model.weights to the file's path") from exc
    if architecture == "maskrcnn_resnet18_fpn":
        state = {f"backbone.body.{k}": v for k, v in state.items() if not k.startswith("fc.")}
    return state


def build_model(spec: ModelSpec, num_classes: int, num_attributes: int) -> MaskRCNN:
    """A Mask R-CNN for ``num_classes`` classes (background included), initialised as ``spec.weights`` says.

    With ``spec.attribute_head`` and ``num_attributes`` > 0 its RoI heads also predict attributes.
    """
    kwargs = _detector_kwargs(spec)
    if spec.architecture == "maskrcnn_resnet50_fpn_v2":
        model, rpn_conv_depth = maskrcnn_resnet50_fpn_v2(weights=None, weights_backbone=None,
                                                         num_classes=num_classes, **kwargs), 2
    elif spec.architecture == "maskrcnn_resnet50_fpn":
        model, rpn_conv_depth = maskrcnn_resnet50_fpn(weights=None, weights_backbone=None,
                                                      num_classes=num_classes, **kwargs), 1
    else:
        # BatchNorm, not torchvision's default FrozenBatchNorm2d: frozen statistics of a random
        # init never change, and the network does not learn (measured on the synthetic data).
        backbone = resnet_fpn_backbone(backbone_name="resnet18", weights=None, norm_layer=nn.BatchNorm2d,
                                       trainable_layers=5)
        model, rpn_conv_depth = MaskRCNN(backbone, num_classes=num_classes, **kwargs), 1
    _set_anchors(model, spec, rpn_conv_depth)
    _set_mask_head(model, spec, num_classes, nn.BatchNorm2d if spec.architecture.endswith("_v2") else None)
    _fix_pooler_scales(model)
    if spec.attribute_head and num_attributes:
        model.roi_heads = AttributeRoIHeads(model.roi_heads, num_attributes, spec.attribute_loss_weight)
    model.transform = PresizedTransform(spec.min_size, spec.max_size, model.transform.image_mean,
                                        model.transform.image_std)
    if spec.weights != "none":
        state = (_torchvision_state_dict(spec.architecture) if spec.weights == "torchvision"
                 else read_state_dict(spec.weights))
        report = load_matching(model, state)
        log.info("initial weights from %s:", spec.weights)
        for line in report.lines():
            log.info("  %s", line)
    if spec.freeze_batchnorm:
        _freeze_batchnorm(model.backbone.body)
    _limit_trainable(model, spec.trainable_backbone_layers)
    return model
