"""Reading a CSV exactly as written: every field a string, nothing parsed, and every row at its real line.

pandas' C reader is fast (``train.csv`` has hundreds of thousands of rows) but quiet about two things a data check
must not miss. It takes a first data row with one field more than the header as an index column
and shifts every field of every row by one; and it skips blank lines, so counting rows no longer
gives line numbers. Both are handled here, for ``train.csv`` and for submission files alike.
"""

from __future__ import annotations

import csv
from pathlib import Path

import pandas as pd

from pipeline.utils.errors import PipelineError


def _header_and_first_row(path: Path, error: type[PipelineError]) -> tuple[list[str] | None, list[str] | None, int]:
    """The header, the first non-blank row after it, and that row's line number."""
    try:
        with open(path, newline="", encoding="utf-8") as handle:
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
    """The table as strings; a blank line is a row of empty strings, so row ``k`` is line ``k + 2``.

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
