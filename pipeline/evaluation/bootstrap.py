"""A 95 % bootstrap interval of the competition score over validation images.

The score is the mean of per-image scores (``pipeline.evaluation.metric``), so resampling the
images with replacement and taking the mean is the bootstrap of the score itself; scipy's
``stats.bootstrap`` does that (percentile method, seeded).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import stats

CONFIDENCE = 0.95


def interval(scores: Sequence[float], resamples: int, seed: int) -> tuple[float, float]:
    """The (low, high) 95 % percentile interval of the mean of ``scores``; a single image gives (s, s)."""
    values = np.asarray(scores, dtype=np.float64)
    if len(values) < 2 or np.all(values == values[0]):
        mean = float(values.mean()) if len(values) else 0.0
        return mean, mean
    found = stats.bootstrap((values,), np.mean, n_resamples=resamples, confidence_level=CONFIDENCE,
                            method="percentile", vectorized=True, rng=np.random.default_rng(seed))
    return float(found.confidence_interval.low), float(found.confidence_interval.high)
