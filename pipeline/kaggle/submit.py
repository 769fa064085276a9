"""Upload a submission with the kaggle client; the message names the code and params that made it."""

from __future__ import annotations

import subprocess
from pathlib import Path

from pipeline.kaggle.api import safe_text, unreachable
from pipeline.utils.errors import PipelineError
from pipeline.utils.fingerprint import text_digest


class SubmitError(PipelineError):
    """Kaggle did not accept the upload."""


def git_revision(repo: Path | str) -> str:
    """The short commit hash, with ``+changes`` when tracked files differ from it; ``no-git`` outside a repo."""
    def git(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=False)

    head = git("rev-parse", "--short", "HEAD")
    if head.returncode:
        return "no-git"
    dirty = git("status", "--porcelain", "--untracked-files=no").stdout.strip()
    return head.stdout.strip() + ("+changes" if dirty else "")


def message(repo: Path | str, params_files: list[Path], note: str = "") -> str:
    """``commit <hash> params <digest>`` (digest over the params files' contents) and the user's note."""
    digest = text_digest([path.read_text(encoding="utf-8") for path in params_files])
    text = f"commit {git_revision(repo)} params {digest}"
    return f"{text} {note}".strip()


def submit(api, file: Path | str, competition: str, text: str) -> str:
    """Upload ``file``; ``api`` is an authenticated ``KaggleApi`` (the only part that reaches the network).

    Returns Kaggle's answer. A failed upload is an error: the client reports it as an answer with
    its own failure message, not as an exception.
    """
    try:
        answer = api.competition_submit(file_name=str(file), message=text, competition=competition)
    except Exception as exc:  # the client raises requests' and its own errors; all mean "not submitted"
        if (network := unreachable(exc)) is not None:
            raise network from None
        raise SubmitError(f"Kaggle did not accept {file} for {competition}: {safe_text(exc)}. Check that you "
                          "accepted the competition's rules and have submissions left today") from None
    said = str(getattr(answer, "message", "") or "")
    if said == getattr(api, "COMPETITION_SUBMIT_UPLOAD_FAILED_MESSAGE", None):
        raise SubmitError(f"the upload of {file} to {competition} failed ({said}); nothing was submitted, "
                          "run stages.submit again")
    return said
