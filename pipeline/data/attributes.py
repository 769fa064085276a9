"""Attributes: training targets, the groups of the label taxonomy, choosing an instance's set, and F1.

A garment's ClassId is its category plus a set of attribute ids, and the metric matches the
whole string. The model gives one probability per attribute; :func:`choose` turns those into a
set, group by group. The groups are the ``supercategory`` of ``label_descriptions.json``
(length, opening type, silhouette, ...), except that the four "(fit)" attributes of silhouette
form their own group: a garment is tight or regular or loose, whatever its other silhouette
attributes. In an exclusive group at most one attribute is chosen (the likeliest, if it clears
the group's threshold); in the others every attribute above the threshold is.

An instance of the training data without attributes is *unannotated*, not "no attribute":
about 80% of the competition's images carry no attributes on any garment. Such instances
give the attribute head no target (see ``pipeline.models.families.maskrcnn``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch

from pipeline.data.labels import LabelSet

FIT_GROUP = "fit"


def multi_hot(attribute_lists: Iterable[Sequence[int]], size: int) -> torch.Tensor:
    """(N, size) float targets, one row per instance; an unannotated instance is a row of zeros."""
    rows = list(attribute_lists)
    target = torch.zeros((len(rows), size), dtype=torch.float32)
    for row, ids in enumerate(rows):
        target[row, list(ids)] = 1.0
    return target


@dataclass(frozen=True)
class Groups:
    """The attribute groups of a label set: name -> attribute ids, in label order."""

    members: dict[str, tuple[int, ...]]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self.members)


@lru_cache(maxsize=8)
def groups_of(labels: LabelSet) -> Groups:
    """Supercategories of the attributes, with the "(fit)" attributes split off as :data:`FIT_GROUP`."""
    members: dict[str, list[int]] = {}
    for attribute in labels.attributes:
        name = FIT_GROUP if attribute.name.endswith("(fit)") else attribute.supercategory
        members.setdefault(name, []).append(attribute.id)
    return Groups({name: tuple(ids) for name, ids in members.items()})


def choose(probabilities: np.ndarray, groups: Groups, thresholds: Mapping[str, float], default: float,
           exclusive: Iterable[str]) -> tuple[int, ...]:
    """The attribute ids chosen from one instance's probabilities (one per attribute), sorted."""
    exclusive = set(exclusive)
    chosen: list[int] = []
    for name, ids in groups.members.items():
        threshold = thresholds.get(name, default)
        values = probabilities[list(ids)]
        if name in exclusive:
            best = int(np.argmax(values))
            if values[best] >= threshold:
                chosen.append(ids[best])
        else:
            chosen += [a for a, p in zip(ids, values, strict=True) if p >= threshold]
    return tuple(sorted(chosen))


def group_f1(pairs: Sequence[tuple[Sequence[int], Sequence[int]]], groups: Groups) -> dict[str, dict[str, float]]:
    """Micro and macro F1 per group over (true set, predicted set) pairs of matched instances.

    Micro counts every (instance, attribute) decision of the group together; macro averages the
    F1 of each attribute of the group that occurs in the truth or the predictions. A group that
    never occurs is left out.
    """
    report: dict[str, dict[str, float]] = {}
    for name, ids in groups.members.items():
        counts = {a: [0, 0, 0] for a in ids}  # true positives, false positives, false negatives
        for truth, predicted in pairs:
            for a in ids:
                hit, said = a in truth, a in predicted
                if hit or said:
                    counts[a][0 if hit and said else 1 if said else 2] += 1
        seen = {a: c for a, c in counts.items() if sum(c)}
        if not seen:
            continue
        tp, fp, fn = (sum(c[k] for c in seen.values()) for k in range(3))
        per_attribute = [2 * c[0] / (2 * c[0] + c[1] + c[2]) for c in seen.values()]
        report[name] = {"micro_f1": round(2 * tp / (2 * tp + fp + fn), 4),
                        "macro_f1": round(float(np.mean(per_attribute)), 4), "instances": len(pairs),
                        "attributes_seen": len(seen)}
    return report
