"""Reading what an earlier stage wrote (a parquet table, a JSON record): one line naming a missing or damaged file.

pyarrow and json report a truncated file with a traceback several frames deep that names neither
the file nor what to do. Here either becomes a :class:`DamagedFileError` naming the file, what is
wrong and the remedy, which for an output of the pipeline is to run the stage that writes it again.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq

from pipeline.utils.errors import PipelineError

RERUN = "run the stage that writes it again (dvc repro)"


class DamagedFileError(PipelineError):
    """A file an earlier stage wrote that is missing, cut short or not what it should be."""


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__


def read_parquet(path: Path | str, columns: Sequence[str] | None = None, remedy: str = RERUN) -> pd.DataFrame:
    """The table at ``path`` (only ``columns``, each of which must be there, if given)."""
    path = Path(path)
    if not path.is_file():
        raise DamagedFileError(f"{path}: not found; {remedy}")
    try:
        names = pq.read_schema(path).names
        if missing := [c for c in columns or () if c not in names]:
            raise DamagedFileError(f"{path}: no column(s) {', '.join(missing)}; {remedy}")
        return pd.read_parquet(path, columns=list(columns) if columns is not None else None)
    except DamagedFileError:
        raise
    except Exception as exc:  # pyarrow raises ArrowInvalid, OSError, ... for a truncated or foreign file
        raise DamagedFileError(f"{path}: cannot read the table ({_first_line(exc)}); {remedy}") from exc


def stored_json(path: Path | str) -> Any:
    """The JSON document at ``path``, or None when there is none or it cannot be read: for the records a resumable
    output keeps of its own work, where an unreadable one means that work is done again."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def read_json(path: Path | str, remedy: str = RERUN) -> Any:
    """The JSON document at ``path``."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise DamagedFileError(f"{path}: not found; {remedy}") from exc
    except (OSError, ValueError) as exc:
        raise DamagedFileError(f"{path}: cannot read it as JSON ({_first_line(exc)}); {remedy}") from exc
