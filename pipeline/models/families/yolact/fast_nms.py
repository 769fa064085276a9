"""Fast NMS (YOLACT, section 3.4): every class's suppression at once, as matrix operations.

Per class the top-k boxes by score are sorted and their IoU matrix taken; its upper triangle
(``i < j``: box ``i`` scores higher) holds, for each box, its overlap with every better box. A box is
kept when the largest of those is at most the threshold. Unlike standard NMS, a box that was
itself removed still removes the boxes below it: slightly fewer detections, no sequential loop.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


def pairwise_iou(boxes: torch.Tensor) -> torch.Tensor:
    """(C, k, k) IoU of every pair of boxes within each of C sets of k (x0, y0, x1, y1) boxes.

    Written here because ``torchvision.ops.box_iou`` takes one set against another, not a batch of sets.
    """
    x0, y0, x1, y1 = (side[:, :, None] for side in boxes.unbind(-1))  # each (C, k, 1)
    x0t, y0t, x1t, y1t = (side.transpose(1, 2) for side in (x0, y0, x1, y1))  # each (C, 1, k)
    inter = ((torch.minimum(x1, x1t) - torch.maximum(x0, x0t)).clamp_(min=0)
             * (torch.minimum(y1, y1t) - torch.maximum(y0, y0t)).clamp_(min=0))
    area = (x1 - x0) * (y1 - y0)
    return inter / (area + area.transpose(1, 2) - inter).clamp_(min=1e-9)


@dataclass(frozen=True)
class Kept:
    """What Fast NMS keeps, best first: which box (row of the input), its class (0-based) and score."""

    index: torch.Tensor
    label: torch.Tensor
    score: torch.Tensor


def fast_nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float, top_k: int, score_threshold: float,
             max_detections: int) -> Kept:
    """Fast NMS of (N, 4) boxes with (N, C) class scores (background excluded).

    As the paper's implementation: only boxes whose best class scores above ``score_threshold`` take
    part; per class the ``top_k`` best enter the IoU matrix; a box is kept when no better box of its
    class overlaps it above ``iou_threshold`` and its own score is above ``score_threshold``; the
    ``max_detections`` best over all classes are returned. A box may be kept for several classes.
    """
    empty = Kept(*(torch.zeros(0, dtype=t, device=boxes.device) for t in (torch.int64, torch.int64, scores.dtype)))
    candidates = torch.nonzero(scores.max(1).values > score_threshold).squeeze(1)
    if not len(candidates):
        return empty
    # Only the classes and ranks that can keep a box: a box at or under the threshold is never kept, and
    # it can only remove boxes ranked below it, which are under the threshold too. The same result as the
    # paper's (C, top_k, top_k) matrix, a fraction of its size once a trained model is confident.
    above = (scores[candidates] > score_threshold).sum(0)
    classes = torch.nonzero(above).squeeze(1)
    depth = min(top_k, int(above.max()))
    ranked, order = torch.topk(scores[candidates][:, classes].t(), depth, dim=1)  # (c, depth): best first
    iou = pairwise_iou(boxes[candidates][order]).triu_(diagonal=1)
    keep = (iou.max(1).values <= iou_threshold) & (ranked > score_threshold)
    labels = classes[:, None].expand_as(keep)[keep]
    index, score = candidates[order[keep]], ranked[keep]
    best = score.argsort(descending=True, stable=True)[:max_detections]
    return Kept(index[best], labels[best], score[best])
