"""The few numbers a user compares between runs: what each stage writes as its DVC metrics file.

``dvc metrics show`` prints one row per metrics file and one column per key of all of them together, so
the stages share their column names (``score`` is each stage's competition score) and keep the
breakdowns (per class, per attribute group, per problem kind, per feature set) in report files of their
own under ``reports/``. Keep the columns few: the table then fits a 120-column terminal.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

#: Every headline key, in the order ``dvc metrics show`` should meet them.
COLUMNS = ("score", "no_tta", "held_out", "mask_ap", "ap_f1", "epoch", "img_per_s", "precision")


def _rounded(values: Mapping[str, Any]) -> dict[str, Any]:
    return {k: round(v, 5) if isinstance(v, float) else v for k, v in values.items() if v is not None}


def training(best: Mapping[str, Any] | None, images_per_second: float | None) -> dict[str, Any]:
    """Stage train: the best epoch's validation score and mask AP, and the training throughput."""
    best = best or {}
    return _rounded({"score": best.get("score"), "mask_ap": best.get("mask_ap"), "epoch": best.get("epoch"),
                     "img_per_s": images_per_second})


def tuning(report: Mapping[str, Any]) -> dict[str, Any]:
    """Stage tune: the tuned score on the fold and the held-out estimate (tuned on one half, scored on the other)."""
    return _rounded({"score": report["tuned"], "held_out": report["tuned_held_out"]})


def evaluation(report: Mapping[str, Any]) -> dict[str, Any]:
    """Stage evaluate: the submitted score (tuned, with TTA), the same without TTA, and the Fashionpedia mask AP
    (COCO's, as train's ``mask_ap``, but of the tuned post-processing on the grid) and AP with attributes."""
    fashionpedia = report["fashionpedia"]
    return _rounded({"score": report["submitted"], "no_tta": report["tuned_no_tta"],
                     "mask_ap": fashionpedia["mask_ap"], "ap_f1": fashionpedia["ap_iou_f1"]})


def retrieval(report: Mapping[str, Any]) -> dict[str, Any]:
    """Stage index: precision@k of the category (its margin over a random catalogue is in the report)."""
    return _rounded({"precision": report["category"]["precision"]})
