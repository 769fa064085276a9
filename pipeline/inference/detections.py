"""The raw output of inference, per image: what ``pipeline.inference.predict`` produces and everything after it reads.

Plain numpy, so that post-processing, tuning and the submission do not depend on the model code.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from pipeline.models.contract import MaskKind

#: The index of the plain view (scale 1, no flip): ``predict.make_views`` puts it first.
PLAIN_VIEW = 0


@dataclass
class Detections:
    """The detections of one image, all views together; boxes in original-image pixel coordinates."""

    boxes: np.ndarray  # (N, 4) float32, x1 y1 x2 y2 (pixel edges)
    scores: np.ndarray  # (N,) float32
    categories: np.ndarray  # (N,) int16, 0-based competition category ids
    views: np.ndarray  # (N,) int8, index into the list of views
    masks: np.ndarray  # (N, M, M) uint8, mask probability x 255 on the box (pipeline.models.contract)
    attributes: np.ndarray  # (N, A) uint8, attribute probability x 255; A = 0 for a model without attributes
    mask_kind: MaskKind  # how the masks lie on their boxes
    n_views: int  # how many views the image was predicted in: a detection missing from one scores 0 there

    @classmethod
    def empty(cls, mask_size: int, num_attributes: int, mask_kind: MaskKind, n_views: int) -> Detections:
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int16),
                   np.zeros(0, np.int8), np.zeros((0, mask_size, mask_size), np.uint8),
                   np.zeros((0, num_attributes), np.uint8), mask_kind, n_views)

    def __len__(self) -> int:
        return len(self.scores)

    def select(self, keep: np.ndarray) -> Detections:
        return Detections(self.boxes[keep], self.scores[keep], self.categories[keep], self.views[keep],
                          self.masks[keep], self.attributes[keep], self.mask_kind, self.n_views)

    def plain_view(self) -> Detections:
        """The detections of the plain view alone, as if it were the only one."""
        return replace(self.select(self.views == PLAIN_VIEW), n_views=1)

    @classmethod
    def concat(cls, parts: list[Detections], mask_size: int, num_attributes: int, mask_kind: MaskKind,
               n_views: int) -> Detections:
        if not parts:
            return cls.empty(mask_size, num_attributes, mask_kind, n_views)
        return cls(*(np.concatenate([getattr(p, f) for p in parts]) for f in
                     ("boxes", "scores", "categories", "views", "masks", "attributes")), mask_kind, n_views)


@dataclass(frozen=True)
class ImageRecord:
    image_id: str
    height: int
    width: int


@dataclass
class Instance:
    """One submitted mask: the output of post-processing, the input of the submission file."""

    class_id: str
    score: float
    mask: np.ndarray  # bool (height, width) on the submission grid
