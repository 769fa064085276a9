"""Kaggle RLE codec: round trips, parity with pycocotools, edge cases, and every malformed input."""

from __future__ import annotations

import numpy as np
import pycocotools.mask as coco_mask
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from pipeline.data import rle

masks = st.tuples(st.integers(1, 40), st.integers(1, 40)).flatmap(
    lambda shape: arrays(np.bool_, shape, elements=st.booleans())
)


def blob_masks():
    """Masks with runs long and short (thresholded smooth noise), all-empty and all-full among them."""
    return st.builds(
        lambda shape, seed, level: np.random.default_rng(seed).random(shape).cumsum(axis=0) % 1.0 < level,
        st.tuples(st.integers(1, 60), st.integers(1, 60)), st.integers(0, 2**32 - 1), st.floats(0.0, 1.0),
    )


@given(st.one_of(masks, blob_masks()))
def test_round_trip(mask):
    text = rle.encode(mask)
    decoded = rle.decode(text, *mask.shape)
    assert decoded.shape == mask.shape and decoded.dtype == np.bool_
    assert np.array_equal(decoded, mask)


@given(st.one_of(masks, blob_masks()), st.integers(0, 5), st.integers(0, 5), st.integers(0, 5), st.integers(0, 5))
def test_a_window_encodes_as_the_whole_mask_it_lies_in(window, above, below, left, right):
    """Placed anywhere (full height included, where runs join across columns), with empty pixels around it."""
    whole = np.pad(window, ((above, below), (left, right)))
    assert rle.encode_window(window, above, left, *whole.shape) == rle.encode(whole)


def test_a_window_taller_than_its_image_is_refused():
    with pytest.raises(ValueError, match="does not fit"):
        rle.encode_window(np.ones((4, 2), bool), 1, 0, 4, 2)


@given(st.one_of(masks, blob_masks()))
def test_same_area_and_bbox_as_pycocotools(mask):
    height, width = mask.shape
    text = rle.encode(mask)
    reference = coco_mask.encode(np.asfortranarray(mask.astype(np.uint8)))
    summary = rle.summarize([text], [height], [width])
    assert summary.errors == [None]
    assert summary.area[0] == coco_mask.area(reference) == mask.sum()
    if mask.any():
        assert summary.bbox[0].tolist() == coco_mask.toBbox(reference).astype(int).tolist()


@given(st.one_of(masks, blob_masks()))
def test_encoding_is_canonical(mask):
    """Starts strictly increase and runs neither touch nor overlap."""
    tokens = np.array(rle.encode(mask).split(), dtype=np.int64)
    starts, lengths = tokens[0::2], tokens[1::2]
    assert (lengths > 0).all()
    assert (starts[1:] > starts[:-1] + lengths[:-1]).all()


@pytest.mark.parametrize(
    ("shape", "pixels", "expected"),
    [
        ((3, 4), [], ""),
        ((3, 4), "all", "1 12"),
        ((3, 4), [(0, 0)], "1 1"),
        ((3, 4), [(2, 3)], "12 1"),
        ((3, 4), [(1, 0)], "2 1"),
        ((3, 4), [(0, 1)], "4 1"),
        ((3, 4), [(2, 0), (0, 1)], "3 2"),  # column-major: a run continues into the next column
        ((1, 5), [(0, 1), (0, 2), (0, 4)], "2 2 5 1"),
        ((5, 1), [(1, 0), (2, 0), (4, 0)], "2 2 5 1"),
        ((1, 1), [(0, 0)], "1 1"),
    ],
)
def test_edge_cases(shape, pixels, expected):
    mask = np.zeros(shape, dtype=bool)
    if pixels == "all":
        mask[:] = True
    else:
        for y, x in pixels:
            mask[y, x] = True
    assert rle.encode(mask) == expected
    assert np.array_equal(rle.decode(expected, *shape), mask)


def test_encode_accepts_uint8_and_decode_accepts_lenient_whitespace():
    mask = np.array([[0, 255], [1, 0]], dtype=np.uint8)
    assert rle.encode(mask) == "2 2"
    assert np.array_equal(rle.decode("  2   2 ", 2, 2), mask > 0)


def test_touching_runs_decode():
    assert rle.decode("1 2 3 2", 2, 2).all()


@pytest.mark.parametrize(
    ("text", "kind", "says"),
    [
        ("1 2 3", "odd_tokens", "odd number of tokens (3)"),
        ("1 2 x 4", "non_integer", "'x'"),
        ("1 2.5", "non_integer", "'2.5'"),
        ("1 -", "non_integer", "'-'"),
        ("1 0", "nonpositive_length", "run 1 (1 0)"),
        ("1 -3", "nonpositive_length", "run 1 (1 -3)"),
        ("0 2", "start_below_one", "numbered from 1"),
        ("5 2 3 1", "not_increasing", "run 2 (3 1)"),
        ("5 2 6 1", "not_increasing", "ends at pixel 6"),
        ("5 2 5 1", "not_increasing", "run 2 (5 1)"),
        ("11 3", "past_end", "past the last pixel 12"),
        ("5 99999999999999999999", "past_end", "a number outside the 64-bit integer range"),
        ("99999999999999999999 1", "past_end", "a number outside the 64-bit integer range"),
        ("1 9223372036854775807", "past_end", "a number outside the 64-bit integer range"),
        ("5 -99999999999999999999", "past_end", "a number outside the 64-bit integer range"),
        ("3 9223372036854775800", "past_end", "ends at pixel 9223372036854775802"),
    ],
)
def test_malformed_input_is_one_error_type_saying_what_is_wrong(text, kind, says):
    with pytest.raises(rle.RLEError, match=None) as caught:
        rle.decode(text, 3, 4)
    assert caught.value.kind == kind
    assert says in str(caught.value)
    batch = rle.summarize(["1 1", text], [3, 3], [4, 4])
    assert batch.errors[0] is None
    assert batch.errors[1].kind == kind and str(batch.errors[1]) == str(caught.value)
    assert batch.area[1] == 0


def test_bad_size_is_an_error():
    with pytest.raises(rle.RLEError, match="not positive"):
        rle.decode("1 1", 0, 4)


# beside small runs, numbers whose sum overflows int64 (an end that wraps around to a negative pixel)
tokens = st.lists(st.integers(-3, 30) | st.sampled_from([2**62, 2**63 - 1, 10**20, -(10**20)]), max_size=8)
texts = st.one_of(
    tokens.map(lambda t: " ".join(map(str, t))),
    st.text(alphabet=" 0123456789-x", max_size=16),
)


@settings(max_examples=300)
@given(st.lists(texts, min_size=1, max_size=6), st.integers(1, 5), st.integers(1, 5))
def test_batch_validation_agrees_with_parse(items, height, width):
    """The vectorised path and the one-string path apply the same rules to the same strings."""
    batch = rle.summarize(items, [height] * len(items), [width] * len(items))
    for text, error, area in zip(items, batch.errors, batch.area, strict=True):
        try:
            starts, lengths = rle.parse(text, height, width)
        except rle.RLEError as expected:
            assert error is not None and (error.kind, str(error)) == (expected.kind, str(expected))
        else:
            assert error is None
            assert area == lengths.sum()


def test_batches_are_split_into_chunks_without_changing_the_result(monkeypatch):
    rng = np.random.default_rng(0)
    items = [rle.encode(rng.random((6, 5)) < 0.3) for _ in range(10)] + ["1 0", "x", ""]
    whole = rle.summarize(items, [6] * len(items), [5] * len(items))
    monkeypatch.setattr(rle, "_CHUNK", 4)
    chunked = rle.summarize(items, [6] * len(items), [5] * len(items))
    assert [str(e) for e in chunked.errors] == [str(e) for e in whole.errors]
    assert np.array_equal(chunked.area, whole.area) and np.array_equal(chunked.bbox, whole.bbox)
