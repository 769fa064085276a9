"""What every stage shares: the --params argument and turning pipeline errors into one clear line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from pipeline.utils.errors import PipelineError


def parser(description: str) -> argparse.ArgumentParser:
    cli = argparse.ArgumentParser(description=description)
    cli.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    return cli


def run(main: Callable[[], None]) -> None:
    """Run a stage; bad input or set-up exits with status 1 and the error's message, no traceback."""
    try:
        main()
    except PipelineError as exc:
        sys.exit(f"error: {exc}")
