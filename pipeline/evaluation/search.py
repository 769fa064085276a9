"""The search of the best post-processing params, scored on saved raw predictions (``pipeline.evaluation.scoring``).

The search is coordinate ascent: each setting in turn takes the candidate value that scores
best with the others held, for a few rounds. Every evaluation re-runs post-processing only
(no model), so it costs milliseconds per image. Because thresholds tuned on a fold flatter
that same fold, :func:`held_out_score` also tunes on one half of the images and scores the
other half, both ways: the number to expect on unseen images.

It runs in two phases. The mask and detection thresholds are tuned on all images. Then the
attribute settings, the threshold of each attribute group and the policy (full, category,
drop) of each attribute category, are tuned on ``tune.policy_images``: by default the images
whose ground truth carries attributes, the regime of the competition's test set (docs/attributes.md).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from pipeline.config.inference import PostprocessParams, TuneParams
from pipeline.data.attributes import groups_of
from pipeline.data.labels import LabelSet
from pipeline.evaluation.scoring import Scorer, attributed
from pipeline.inference.detections import ImageRecord


@dataclass(frozen=True)
class SearchResult:
    params: PostprocessParams
    score: float  # on all images; below start_score when the attribute settings trade it for policy_score
    start_score: float
    thresholds_score: float  # on all images after the first phase: never below start_score
    policy_images: int  # images the attribute settings were tuned on
    policy_score: float | None  # on those images; None when there are none
    policy_start_score: float | None
    evaluations: int


# A coordinate: from the current params, the updates (model_copy) to try, one per candidate value.
Coordinate = Callable[[PostprocessParams], list[dict]]


def _coordinates(tune: TuneParams, start: PostprocessParams, labels: LabelSet,
                 ) -> tuple[list[Coordinate], list[Coordinate]]:
    """The coordinates of the two phases: single settings; attribute group thresholds and category policies."""
    general = [lambda p, name=name: [{name: value} for value in getattr(tune, name)] for name in tune.searched()]
    groups = [lambda p, g=g: [{"group_thresh": {**p.group_thresh, g: v}} for v in tune.attribute_thresh]
              for g in groups_of(labels).names]
    policies = [lambda p, c=c: [{"category_policy": {**p.category_policy, c: v}} for v in tune.attribute_policy]
                for c in start.attribute_categories]
    return general, groups + policies


def search(scorer: Scorer, records: Sequence[ImageRecord], start: PostprocessParams, tune: TuneParams,
           labels: LabelSet) -> SearchResult:
    """Coordinate ascent from ``start``: thresholds on ``records``, then attribute settings on the policy images.

    Ties keep the current value. Each phase only accepts gains on its own images; the second may
    lower the score on all images (a ClassId with attributes loses where the truth has none).
    """
    truth = scorer.truth
    subsets = {"all": list(records),
               "policy": list(records) if tune.policy_images == "all" else attributed(records, truth)}
    seen: dict[tuple[str, str], float] = {}

    def value(params: PostprocessParams, subset: str) -> float:
        key = (params.key(), subset)
        if key not in seen:
            seen[key] = scorer(params, subsets[subset], tune.match_on).score
        return seen[key]

    def ascend(params: PostprocessParams, coordinates: list[Coordinate], subset: str) -> PostprocessParams:
        best_score = value(params, subset)
        for _ in range(tune.rounds):
            before = params.key()
            for coordinate in coordinates:
                for update in coordinate(params):
                    trial = params.model_copy(update=update)
                    if value(trial, subset) > best_score:
                        params, best_score = trial, value(trial, subset)
            if params.key() == before:
                break
        return params

    general, attribute = _coordinates(tune, start, labels)
    best = ascend(start, general, "all")
    thresholds_score = value(best, "all")
    policy_start = policy_score = None
    if subsets["policy"]:
        policy_start = value(best, "policy")
        best = ascend(best, attribute, "policy")
        policy_score = value(best, "policy")
    return SearchResult(best, value(best, "all"), value(start, "all"), thresholds_score, len(subsets["policy"]),
                        policy_score, policy_start, len(seen))


def sample(records: Sequence[ImageRecord], limit: int, seed: int) -> list[ImageRecord]:
    """At most ``limit`` records, a seeded sample in the original order."""
    if len(records) <= limit:
        return list(records)
    keep = np.sort(np.random.default_rng(seed).choice(len(records), size=limit, replace=False))
    return [records[i] for i in keep]


def held_out_score(scorer: Scorer, records: Sequence[ImageRecord], start: PostprocessParams, tune: TuneParams,
                   labels: LabelSet) -> tuple[float, float | None]:
    """Tune on a random half, score the other half, and the reverse.

    Returns the mean over all images and the mean over the policy images (None when there are none).
    """
    order = np.random.default_rng(tune.seed).permutation(len(records))
    halves = [[records[i] for i in sorted(part)] for part in np.array_split(order, 2)]
    truth = scorer.truth
    per_image: dict[str, float] = {}
    for tune_on, score_on in ((halves[0], halves[1]), (halves[1], halves[0])):
        if not tune_on or not score_on:
            continue
        tuned = search(scorer, tune_on, start, tune, labels).params
        per_image.update(scorer(tuned, score_on, tune.match_on).per_image)
    policy_ids = {r.image_id for r in (records if tune.policy_images == "all" else attributed(records, truth))}
    policy = [v for k, v in per_image.items() if k in policy_ids]
    return (float(np.mean(list(per_image.values()))) if per_image else float("nan"),
            float(np.mean(policy)) if policy else None)


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 5)


def report(found: SearchResult, held_out: float, held_out_policy: float | None, images: int, tune: TuneParams,
           seconds: float) -> dict:
    """Stage tune's report: the score before, after the thresholds and after the attribute settings, the held-out
    estimate, the attribute settings' own images and scores, and the search's cost."""
    return {"images": images, "match_on": tune.match_on, "default": round(found.start_score, 5),
            "tuned_thresholds": round(found.thresholds_score, 5), "tuned": round(found.score, 5),
            "tuned_held_out": round(held_out, 5),
            "policy_images": {"which": tune.policy_images, "images": found.policy_images,
                              "before_attribute_tuning": _rounded(found.policy_start_score),
                              "tuned": _rounded(found.policy_score), "tuned_held_out": _rounded(held_out_policy)},
            "evaluations": found.evaluations, "seconds": round(seconds, 1)}
