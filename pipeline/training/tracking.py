"""DVCLive logging that survives an interruption: a resumed run continues the curves without duplicate steps."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
from dvclive import Live
from scmrepo.exceptions import SCMError

from pipeline.utils.errors import PipelineError
from pipeline.utils.io import atomic_path


def _truncate_histories(plots_dir: Path, last_step: int) -> None:
    """Drop rows logged after ``last_step``: the interrupted run got past its last checkpoint, the resumed one
    repeats those steps. DVCLive's own resume only continues numbering, it does not rewind.
    """
    for path in plots_dir.rglob("*.tsv"):
        try:
            history = pd.read_csv(path, sep="\t")
            kept = history[history.step <= last_step]
        except (OSError, ValueError, AttributeError, TypeError) as exc:  # unreadable, no or non-numeric step column
            raise PipelineError(f"{path}: cannot read this training curve ({type(exc).__name__}: {exc}); delete it "
                                "and its curve restarts at the resumed step") from exc
        if len(kept) < len(history):
            with atomic_path(path) as tmp:
                kept.to_csv(tmp, sep="\t", index=False)


@contextlib.contextmanager
def open_live(directory: Path | str, resume_step: int | None) -> Iterator[Live]:
    """A DVCLive logger in ``directory``; ``resume_step`` continues an earlier run's history up to that step.

    ``dvc.yaml`` declares the metrics and plots itself, and the stage runs inside ``dvc repro``:
    DVCLive is told neither to write a dvc.yaml nor to save an experiment. On leaving the block the log is
    ended (when the block succeeded) and the DVC repository DVCLive opened is closed: ``Live.end`` leaves
    its git pack files open until garbage collection, which warns about them at a random later moment.
    """
    directory = Path(directory)
    if resume_step is not None:
        _truncate_histories(directory / "plots" / "metrics", resume_step)
    try:
        live = Live(dir=str(directory), resume=resume_step is not None, dvcyaml=None, save_dvc_exp=False,
                    report=None)
    except SCMError as exc:  # DVCLive asks git for HEAD, which a repository without commits lacks
        raise PipelineError(f"DVCLive cannot start in this git repository ({exc}): make a first commit "
                            "(git add -A && git commit -m init), or run outside git (dvc init --no-scm)") from exc
    try:
        yield live
        live.end()
    finally:
        repo = live._dvc_repo  # DVCLive offers no public way to close the repository it opened
        if repo is not None:
            repo.close()


def logged_throughput(directory: Path | str) -> float | None:
    """The last training throughput (images/s) DVCLive's summary in ``directory`` holds; None before the first."""
    try:
        summary = json.loads((Path(directory) / "metrics.json").read_text(encoding="utf-8"))
        return float(summary["train"]["images_per_second"])
    except (OSError, ValueError, KeyError, TypeError):  # no summary yet (no step logged), or not this shape
        return None
