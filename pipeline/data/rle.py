"""Kaggle run-length encoding of binary masks, and conversion to COCO RLE.

Kaggle's format (docs/competition.md): pixels are numbered column-major (top to bottom,
then left to right) starting at 1, and the string is space-separated ``start length``
pairs with starts increasing and runs not overlapping. COCO's RLE (pycocotools) is a
different format; pycocotools does not read Kaggle strings, so the codec is written
here, vectorised with numpy, and tested against pycocotools.

One set of rules checks every string, whether one string is decoded (:func:`parse`,
:func:`decode`) or a whole ``train.csv`` column is validated at once (:func:`summarize`).
Touching runs (``1 2 3 2``) describe a mask unambiguously and are accepted; :func:`encode`
never writes them.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from pipeline.utils.errors import PipelineError


class RLEError(PipelineError, ValueError):
    """A run-length string that does not follow Kaggle's rules; ``kind`` names the rule."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


_LENIENT = re.compile(r"\s*-?\d+(?:\s+-?\d+)*\s*")
_INTEGER = re.compile(r"-?\d+")

# Problem codes of a run, and the kind of RLEError each one raises.
_OK, _NONPOSITIVE_LENGTH, _START_BELOW_ONE, _NOT_INCREASING, _PAST_END = range(5)
_RUN_KINDS = {
    _NONPOSITIVE_LENGTH: "nonpositive_length",
    _START_BELOW_ONE: "start_below_one",
    _NOT_INCREASING: "not_increasing",
    _PAST_END: "past_end",
}
_DIGITS_AND_SPACE = b"0123456789 "
# What numpy's parser returns for a token outside int64 (no pixel index comes near it).
_CLAMPED = {int(np.iinfo(np.int64).max), int(np.iinfo(np.int64).min)}


def _canonical(texts: Sequence[str]) -> np.ndarray:
    """Which non-empty strings are integers separated by single spaces, checked for all at once.

    Works on the bytes of the joined strings, so a whole ``train.csv`` column costs a few
    passes in C instead of a regular expression per row. Valid columns take the first
    branch; the per-byte numpy pass runs only when something is off, to find the rows.
    """
    lengths = np.fromiter(map(len, texts), dtype=np.int64, count=len(texts))
    offsets = np.cumsum(lengths + 1) - lengths - 1
    raw = " ".join(texts).encode("ascii", errors="replace")
    data = np.frombuffer(raw, dtype=np.uint8)
    space = ord(" ")
    ok = (data[offsets] != space) & (data[offsets + lengths - 1] != space)
    if not raw.translate(None, _DIGITS_AND_SPACE) and b"  " not in raw:
        return ok
    digit = (data >= ord("0")) & (data <= ord("9"))
    is_space = data == space
    minus = data == ord("-")
    bad = ~(digit | is_space | minus)
    bad[:-1] |= is_space[:-1] & is_space[1:]
    after_space = np.concatenate(([True], is_space[:-1]))
    before_digit = np.concatenate((digit[1:], [False]))
    bad |= minus & ~(after_space & before_digit)
    ok[np.searchsorted(offsets, np.flatnonzero(bad), side="right") - 1] = False
    return ok


def _normalise(rle: str) -> str | None:
    """The string with single spaces between integer tokens, or None if a token is not an integer."""
    if _LENIENT.fullmatch(rle):
        return " ".join(rle.split())
    if not rle.strip():
        return ""
    return None


def _non_integer(rle: str) -> RLEError:
    bad = next((t for t in rle.split() if not _INTEGER.fullmatch(t)), rle)
    return RLEError("non_integer", f"token {bad[:20]!r} is not an integer")


def _odd(count: int) -> RLEError:
    return RLEError("odd_tokens", f"odd number of tokens ({count}): expected start/length pairs")


def _run_codes(
    starts: np.ndarray, lengths: np.ndarray, first_of_row: np.ndarray, n_pixels: np.ndarray
) -> np.ndarray:
    """A problem code per run (1-based starts) of one or more concatenated strings."""
    codes = np.full(starts.shape, _OK, dtype=np.int8)
    # Tokens past int64 arrive clamped to its maximum: ``starts + lengths`` could wrap around to a
    # negative end, so the end is checked without adding them.
    past_end = (starts > n_pixels) | (lengths > n_pixels + 1 - np.maximum(starts, 1))
    ends = np.where(past_end, n_pixels, starts + lengths - 1)
    previous_end = np.empty_like(ends)
    previous_end[1:] = ends[:-1]
    codes[past_end] = _PAST_END
    codes[~first_of_row & (starts <= previous_end)] = _NOT_INCREASING
    codes[starts < 1] = _START_BELOW_ONE
    codes[lengths <= 0] = _NONPOSITIVE_LENGTH
    return codes


def _first_problem(
    codes: np.ndarray, starts: np.ndarray, lengths: np.ndarray, first: int, stop: int, n_pixels: int
) -> RLEError | None:
    """The error for the first bad run among runs ``first:stop`` (one string), if any."""
    bad = np.flatnonzero(codes[first:stop])
    if bad.size == 0:
        return None
    k = int(bad[0])
    i = first + k
    code, start, length = int(codes[i]), int(starts[i]), int(lengths[i])
    if _CLAMPED & {start, length}:
        return RLEError(_RUN_KINDS[code], f"run {k + 1}: a number outside the 64-bit integer range, which "
                                          f"no pixel of this {n_pixels}-pixel image can have")
    where = f"run {k + 1} ({start} {length})"
    if code == _NONPOSITIVE_LENGTH:
        message = f"{where}: length must be positive"
    elif code == _START_BELOW_ONE:
        message = f"{where}: start is below 1 (Kaggle pixels are numbered from 1)"
    elif code == _NOT_INCREASING:
        p_start, p_length = int(starts[i - 1]), int(lengths[i - 1])
        message = (
            f"{where}: starts must increase and runs must not overlap, "
            f"but the previous run ({p_start} {p_length}) ends at pixel {p_start + p_length - 1}"
        )
    else:
        message = f"{where}: ends at pixel {start + length - 1}, past the last pixel {n_pixels} of the image"
    return RLEError(_RUN_KINDS[code], message)


def _size_error(height: int, width: int) -> RLEError | None:
    if height < 1 or width < 1:
        return RLEError("bad_size", f"image size {height}x{width} is not positive")
    return None


def parse(rle: str, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Validate a Kaggle RLE string; return its runs as 0-based starts and lengths (int64)."""
    error = _size_error(height, width)
    if error:
        raise error
    text = _normalise(rle)
    if text is None:
        raise _non_integer(rle)
    tokens = np.fromstring(text, dtype=np.int64, sep=" ") if text else np.zeros(0, dtype=np.int64)
    if tokens.size % 2:
        raise _odd(tokens.size)
    starts, lengths = tokens[0::2], tokens[1::2]
    first = np.zeros(starts.shape, dtype=bool)
    first[:1] = True
    n_pixels = height * width
    error = _first_problem(_run_codes(starts, lengths, first, np.int64(n_pixels)), starts, lengths, 0,
                           starts.size, n_pixels)
    if error:
        raise error
    return starts - 1, lengths


def _alternating_counts(starts: np.ndarray, lengths: np.ndarray, n_pixels: int) -> np.ndarray:
    """Background/foreground run lengths, starting and ending with background (COCO's layout)."""
    counts = np.empty(2 * starts.size + 1, dtype=np.int64)
    counts[0::2] = np.concatenate((starts, [n_pixels])) - np.concatenate(([0], starts + lengths))
    counts[1::2] = lengths
    return counts


def decode(rle: str, height: int, width: int) -> np.ndarray:
    """Boolean mask of shape (height, width); a Fortran-ordered array, as pycocotools returns."""
    starts, lengths = parse(rle, height, width)
    counts = _alternating_counts(starts, lengths, height * width)
    values = np.zeros(counts.size, dtype=bool)
    values[1::2] = True
    return np.repeat(values, counts).reshape(width, height).T


def _runs(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """0-based column-major starts and lengths of the foreground runs of a 2-D mask.

    Finds where the value changes down each column and from the bottom of one column to the
    top of the next, on the array as it lies in memory: a column-major copy of the whole
    mask (what pycocotools needs) would cost more than everything else together.
    """
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"expected a 2-D mask, got shape {mask.shape}")
    if mask.dtype != np.bool_:
        mask = mask != 0
    height, width = mask.shape
    if mask.size == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty.copy()
    down = np.flatnonzero(mask[1:] != mask[:-1])
    rows, cols = np.divmod(down, width)
    across = np.flatnonzero(mask[0, 1:] != mask[-1, :-1]) + 1
    edges = np.sort(np.concatenate((cols * height + rows + 1, across * height)))
    if mask[0, 0]:
        edges = np.concatenate(([0], edges))
    if mask[-1, -1]:
        edges = np.concatenate((edges, [mask.size]))
    starts, stops = edges[0::2], edges[1::2]
    return starts, stops - starts


def encode(mask: np.ndarray) -> str:
    """Kaggle RLE string of a 2-D mask (bool, or any dtype where non-zero is foreground)."""
    return _pairs(*_runs(mask))


def _pairs(starts: np.ndarray, lengths: np.ndarray) -> str:
    """The RLE string of 0-based starts and their lengths."""
    pairs = np.empty(2 * starts.size, dtype=np.int64)
    pairs[0::2] = starts + 1
    pairs[1::2] = lengths
    return " ".join(map(str, pairs.tolist()))


def encode_window(window: np.ndarray, top: int, left: int, height: int, width: int) -> str:
    """Kaggle RLE of a ``height`` x ``width`` mask that is empty outside ``window``, placed at (``top``, ``left``).

    Costs the window's pixels, not the image's: for tiny parts on multi-megapixel images.
    """
    window = np.asarray(window, dtype=bool)
    rows, cols = window.shape
    if top < 0 or left < 0 or top + rows > height or left + cols > width:
        raise ValueError(f"a {rows}x{cols} window at ({top}, {left}) does not fit a {height}x{width} image")
    padded = np.pad(window, ((1, 1), (0, 0)))  # an empty row above and below: no run crosses a column
    starts, lengths = _runs(padded)
    columns, offsets = np.divmod(starts, rows + 2)
    starts = (left + columns) * height + top + offsets - 1
    touching = np.flatnonzero(starts[1:] == starts[:-1] + lengths[:-1])  # across a column of a full-height window
    if touching.size:
        keep = np.ones(starts.size, dtype=bool)
        keep[touching + 1] = False
        stops = np.delete(starts + lengths, touching)
        starts = starts[keep]
        lengths = stops - starts
    return _pairs(starts, lengths)


@dataclass(frozen=True)
class RLESummary:
    """Validation result, area and bounding box of many Kaggle RLE strings.

    ``errors[i]`` is None for a valid string, else the RLEError that :func:`parse` would
    raise. ``area`` and ``bbox`` (COCO convention: x, y, width, height, in pixels) are 0
    for invalid or empty strings.
    """

    errors: list[RLEError | None]
    area: np.ndarray
    bbox: np.ndarray


_CHUNK = 16384


def _check_strings(rles: Sequence[str], heights: np.ndarray, widths: np.ndarray,
                   ) -> tuple[list[RLEError | None], list[int], list[str], list[int]]:
    """The per-string checks (sizes, canonical integers, even token counts) of :func:`summarize`.

    Returns the errors so far, the rows still to parse, their (normalised) texts and token counts.
    """
    errors: list[RLEError | None] = [_size_error(int(h), int(w)) for h, w in zip(heights, widths, strict=True)]
    rows = [i for i in range(len(rles)) if errors[i] is None and rles[i]]
    texts = [rles[i] for i in rows]
    if texts:
        for j in np.flatnonzero(~_canonical(texts)):
            text = _normalise(texts[j])
            if text is None:
                errors[rows[j]] = _non_integer(texts[j])
            texts[j] = text or ""
    counts = [t.count(" ") + 1 if t else 0 for t in texts]
    for j, k in enumerate(counts):
        if k % 2:
            errors[rows[j]] = _odd(k)
    return errors, rows, texts, counts


def _run_boxes(starts: np.ndarray, lengths: np.ndarray, h: np.ndarray, first_run: np.ndarray,
               ) -> tuple[np.ndarray, np.ndarray]:
    """Area and (x, y, w, h) box of each row whose runs start at ``first_run``, from its runs alone.

    Column-major pixel p lies at column p // height, row p % height. A run that crosses into
    another column covers the bottom row of one column and the top row of the next.
    """
    col0, row0 = np.divmod(starts - 1, h)
    col1, row1 = np.divmod(starts + lengths - 2, h)
    crosses = col1 > col0
    y0 = np.where(crosses, 0, row0)
    y1 = np.where(crosses, h - 1, row1)
    x_min, x_max = np.minimum.reduceat(col0, first_run), np.maximum.reduceat(col1, first_run)
    y_min, y_max = np.minimum.reduceat(y0, first_run), np.maximum.reduceat(y1, first_run)
    box = np.stack((x_min, y_min, x_max - x_min + 1, y_max - y_min + 1), axis=1)
    return np.add.reduceat(lengths, first_run), box


def summarize(rles: Sequence[str], heights: Sequence[int], widths: Sequence[int]) -> RLESummary:
    """Validate many strings at once and compute each mask's area and bbox without decoding pixels.

    The fast path for ``train.csv``: the strings are checked and parsed by a few numpy
    calls over all of them, with the same rules as :func:`parse`; only strings that are
    not canonical or are invalid cost Python-level work.
    """
    n = len(rles)
    heights = np.asarray(heights, dtype=np.int64)
    widths = np.asarray(widths, dtype=np.int64)
    if n > _CHUNK:  # bounds memory: a run costs some 100 bytes of temporaries
        parts = [summarize(rles[i : i + _CHUNK], heights[i : i + _CHUNK], widths[i : i + _CHUNK])
                 for i in range(0, n, _CHUNK)]
        return RLESummary([e for p in parts for e in p.errors], np.concatenate([p.area for p in parts]),
                          np.concatenate([p.bbox for p in parts]))
    errors, rows, texts, counts = _check_strings(rles, heights, widths)
    area = np.zeros(n, dtype=np.int64)
    bbox = np.zeros((n, 4), dtype=np.int64)
    keep = [j for j, k in enumerate(counts) if k and errors[rows[j]] is None]
    if not keep:
        return RLESummary(errors, area, bbox)

    tokens = np.fromstring(" ".join(texts[j] for j in keep), dtype=np.int64, sep=" ")
    starts, lengths = tokens[0::2], tokens[1::2]
    rows_arr = np.asarray([rows[j] for j in keep], dtype=np.int64)
    runs_per_row = np.asarray([counts[j] // 2 for j in keep], dtype=np.int64)
    first_run = np.cumsum(runs_per_row) - runs_per_row
    run_row = np.repeat(rows_arr, runs_per_row)
    first_of_row = np.zeros(starts.size, dtype=bool)
    first_of_row[first_run] = True
    n_pixels = heights * widths
    codes = _run_codes(starts, lengths, first_of_row, n_pixels[run_row])

    bad_rows = np.zeros(rows_arr.size, dtype=bool)
    bad_rows[np.searchsorted(first_run, np.flatnonzero(codes), side="right") - 1] = True
    for j in np.flatnonzero(bad_rows):
        i = int(rows_arr[j])
        errors[i] = _first_problem(codes, starts, lengths, int(first_run[j]),
                                   int(first_run[j] + runs_per_row[j]), int(n_pixels[i]))
    good = ~bad_rows
    row_area, row_box = _run_boxes(starts, lengths, heights[run_row], first_run)
    area[rows_arr[good]] = row_area[good]
    bbox[rows_arr[good]] = row_box[good]
    return RLESummary(errors, area, bbox)
