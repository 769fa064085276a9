"""The authenticated Kaggle client, imported lazily.

``import kaggle`` authenticates at import time and prints help to stdout when it finds no
credentials, and ``KaggleApi.authenticate()`` then calls ``exit(1)``. Both are contained
here and turned into one clear error.
"""

from __future__ import annotations

import contextlib
import io

from pipeline.errors import PipelineError

CREDENTIALS_HELP = (
    "Kaggle credentials not found. Provide one of: the file ~/.kaggle/kaggle.json "
    "(kaggle.com > Settings > API > Create New Token; chmod 600 it), the environment variables "
    "KAGGLE_USERNAME and KAGGLE_KEY, or KAGGLE_API_TOKEN (kaggle >= 1.8). Then accept the "
    "competition's rules on its Kaggle page, or downloads and submissions are refused."
)


class KaggleCredentialsError(PipelineError):
    """No usable Kaggle credentials."""


def authenticated_api():
    """A ``KaggleApi`` that has authenticated, or :class:`KaggleCredentialsError`."""
    quiet = io.StringIO()
    try:
        with contextlib.redirect_stdout(quiet):
            from kaggle.api.kaggle_api_extended import KaggleApi

            api = KaggleApi()
            api.authenticate()
    except ModuleNotFoundError as exc:
        raise PipelineError(f"the Kaggle client is not installed ({exc}): pip install kaggle") from exc
    except SystemExit as exc:
        raise KaggleCredentialsError(CREDENTIALS_HELP) from exc
    return api
