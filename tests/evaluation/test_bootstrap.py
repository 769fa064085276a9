"""The score's bootstrap interval: around the mean, seeded, narrower with more images."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.evaluation.bootstrap import interval


@given(st.lists(st.floats(0, 1), min_size=2, max_size=60), st.integers(0, 5))
def test_the_interval_holds_the_mean_and_stays_within_the_scores(scores, seed):
    low, high = interval(scores, 300, seed)
    mean = float(np.mean(scores))
    assert min(scores) - 1e-9 <= low <= mean + 1e-9 and mean - 1e-9 <= high <= max(scores) + 1e-9
    assert interval(scores, 300, seed) == (low, high), "seeded: the same interval every run"


def test_more_images_narrow_the_interval_as_one_over_their_root():
    rng = np.random.default_rng(0)
    few, many = rng.random(12), rng.random(300)
    width = [b - a for a, b in (interval(few, 4000, 0), interval(many, 4000, 0))]
    assert width[1] < width[0] / 3  # sqrt(300 / 12) = 5, less the noise of two draws
    assert width[0] == pytest.approx(2 * 1.96 * few.std() / np.sqrt(12), rel=0.25)


def test_one_image_or_equal_scores_give_a_point():
    assert interval([0.4], 1000, 0) == (0.4, 0.4)
    assert interval([1.0, 1.0, 1.0], 1000, 0) == (1.0, 1.0)
