"""The attribute head: torchvision's box and mask RoI heads plus a classifier of the 92 attributes."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as torch_f
from torchvision.models.detection.roi_heads import RoIHeads

GEOMETRY_FEATURES = 3


def box_geometry(boxes: list[torch.Tensor], image_shapes: list[tuple[int, int]]) -> torch.Tensor:
    """(N, 3) for the boxes of all images: log aspect ratio, and width and height relative to the image."""
    parts = []
    for found, (height, width) in zip(boxes, image_shapes, strict=True):
        box_w = (found[:, 2] - found[:, 0]).float().clamp(min=1.0)
        box_h = (found[:, 3] - found[:, 1]).float().clamp(min=1.0)
        parts.append(torch.stack([torch.log(box_w / box_h), box_w / width, box_h / height], 1))
    return torch.cat(parts) if parts else torch.zeros((0, GEOMETRY_FEATURES))


def _matched_attributes(attributes: torch.Tensor, matched: torch.Tensor) -> torch.Tensor:
    """The attributes of the true instance each sampled RoI is matched to.

    An image without instances has every RoI "matched" to index 0 of nothing (torchvision's
    convention; all of them are background): its RoIs get no attributes, so no target.
    """
    if not len(attributes):
        return attributes.new_zeros((len(matched), attributes.shape[-1]))
    return attributes[matched]


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
        wanted = torch.cat([_matched_attributes(target["attributes"], idxs)
                            for idxs, target in zip(matched_idxs, targets, strict=True)])
        keep = (torch.cat(labels) > 0) & (wanted.sum(1) > 0)
        if not bool(keep.any()):
            # Every parameter must take part in the graph (DistributedDataParallel waits for its gradient).
            return sum(p.sum() for p in self.attribute_predictor.parameters()) * 0.0
        logits = self.attribute_predictor(represented[keep])
        return torch_f.binary_cross_entropy_with_logits(logits, wanted[keep].to(logits.dtype))
