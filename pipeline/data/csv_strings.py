"""Reading a CSV exactly as written: every field a string, nothing parsed, and every row at its real line.

pandas' C reader is fast (``train.csv`` has hundreds of thousands of rows) but quiet about two things a data check
must not miss. It takes a first data row with one field more than the header as an index column
and shifts every field of every row by one; and it skips blank lines, so counting rows no longer
gives line numbers. Both are handled here, for ``train.csv`` and for submission files alike. A quoted
field may also hold a line break, so a row can span several lines: :func:`line_numbers` counts them.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.utils.errors import PipelineError

# The csv module refuses fields over 131,072 characters by default; one mask of a 6-megapixel photo can be longer.
_FIELD_LIMIT = 2**31 - 1
# A line break as the csv module counts lines: CRLF, or a lone CR or LF.
_LINE_BREAK = re.compile(r"\r\n|\r|\n")


def line_numbers(frame: pd.DataFrame) -> np.ndarray:
    """The line of the file on which each row of :func:`read_strings`' table starts (the header is line 1).

    Row ``k`` is on line ``k + 2`` unless earlier rows hold quoted line breaks, each of which
    moves every later row down by one line.
    """
    breaks = np.zeros(len(frame), dtype=np.int64)
    for column in frame.columns:
        values = frame[column]
        if not pd.api.types.is_string_dtype(values):
            continue
        holds = (values.str.contains("\n", regex=False) | values.str.contains("\r", regex=False)).to_numpy(bool)
        if holds.any():
            breaks[holds] += values[holds].str.count(_LINE_BREAK.pattern).to_numpy(np.int64)
    return np.arange(len(frame), dtype=np.int64) + 2 + np.cumsum(breaks) - breaks


def _header_and_first_row(path: Path, error: type[PipelineError]) -> tuple[list[str] | None, list[str] | None, int]:
    """The header, the first non-blank row after it, and that row's line number."""
    csv.field_size_limit(max(csv.field_size_limit(), _FIELD_LIMIT))
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:  # a byte-order mark is not part of the header
            reader = csv.reader(handle)
            header = next(reader, None)
            first = next((row for row in reader if row), None)
            return header, first, reader.line_num
    except FileNotFoundError as exc:
        raise error(f"{path}: file not found") from exc
    except OSError as exc:
        raise error(f"{path}: cannot read: {exc}") from exc
    except (csv.Error, UnicodeDecodeError) as exc:
        raise error(f"{path}: not a valid CSV: {exc}") from exc


def read_strings(path: Path | str, error: type[PipelineError], columns: tuple[str, ...] | None = None,
                 ) -> pd.DataFrame:
    """The table as strings; a blank line is a row of empty strings (:func:`line_numbers` gives each row's line).

    ``columns``, when given, must be the header exactly. A row with another number of fields
    than the header, or a file that is not a CSV, raises ``error`` naming the file and the line.
    """
    path = Path(path)
    header, first, first_line = _header_and_first_row(path, error)
    if header is None:
        raise error(f"{path}: empty file, expected a header line")
    if columns is not None and tuple(header) != columns:
        raise error(f"{path}: columns are {header}, expected {list(columns)} in this order")
    if first is not None and len(first) != len(header):
        raise error(f"{path}: not a valid CSV: Expected {len(header)} fields in line {first_line}, saw {len(first)}")
    try:
        return pd.read_csv(path, dtype=str, keep_default_na=False, na_filter=False, engine="c",
                           skip_blank_lines=False)
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise error(f"{path}: not a valid CSV: {exc}") from exc
