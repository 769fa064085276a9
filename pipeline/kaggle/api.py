"""The authenticated Kaggle client, imported lazily, and what its failures mean in one line.

``import kaggle`` authenticates at import time and prints help to stdout when it finds no
credentials, and ``KaggleApi.authenticate()`` then calls ``exit(1)``. With ``KAGGLE_API_TOKEN``
it asks Kaggle's server about the token first, so an offline machine fails there with a
``requests`` traceback. The client also ignores a ``kaggle.json`` it cannot parse and then
reports "no credentials". All of it is contained here and turned into errors that say which
it is: no credentials, a malformed credentials file, or no network. No message ever holds a
credential.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import sys
from pathlib import Path
from urllib.parse import urlparse

from pipeline.utils.errors import PipelineError

CREDENTIALS_HELP = (
    "Kaggle credentials not found. Provide one of: the file ~/.kaggle/kaggle.json "
    "(kaggle.com > Settings > API > Create New Token; chmod 600 it), the environment variables "
    "KAGGLE_USERNAME and KAGGLE_KEY, or KAGGLE_API_TOKEN (kaggle >= 1.8). Then accept the "
    "competition's rules on its Kaggle page, or downloads and submissions are refused."
)
_SECRET_VARIABLES = ("KAGGLE_KEY", "KAGGLE_API_TOKEN")
_OS_ERROR = re.compile(r"\[Errno -?\d+\] [^'\")]+|Name or service not known|Temporary failure in name resolution")


class KaggleCredentialsError(PipelineError):
    """No usable Kaggle credentials, or a credentials file that cannot be read."""


class KaggleNetworkError(PipelineError):
    """Kaggle's servers could not be reached (no network, a proxy, DNS, a timeout)."""


def _secrets() -> list[str]:
    found = [os.environ[name] for name in _SECRET_VARIABLES if os.environ.get(name)]
    with contextlib.suppress(Exception):
        from kaggle.api.kaggle_api_extended import KaggleApi

        found.append(str(json.loads(Path(KaggleApi.config).read_text(encoding="utf-8"))["key"]))
    return [secret for secret in found if len(secret) >= 4]


def safe_text(exc: BaseException) -> str:
    """The exception's message with every known credential masked."""
    text = str(exc)
    for secret in _secrets():
        text = text.replace(secret, "***")
    return text


def unreachable(exc: BaseException) -> KaggleNetworkError | None:
    """A :class:`KaggleNetworkError` when ``exc`` is a connection failure or timeout of ``requests``, else None."""
    try:
        import requests
    except ModuleNotFoundError:
        return None
    if not isinstance(exc, (requests.exceptions.ConnectionError, requests.exceptions.Timeout)):
        return None
    request = getattr(exc, "request", None)
    host = urlparse(request.url).hostname if request is not None and request.url else "api.kaggle.com"
    reason = _OS_ERROR.search(str(exc))
    why = reason[0].strip() if reason else type(exc).__name__
    return KaggleNetworkError(f"could not reach Kaggle ({host}: {why}); check the network connection and any "
                              "proxy settings (a Kaggle notebook needs its internet switched on for this)")


def _check_config_file(path: Path) -> None:
    """A ``kaggle.json`` that exists must be what Kaggle's token download gives: JSON with username and key."""
    if not path.is_file():
        return
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        where = f"line {exc.lineno} column {exc.colno}" if isinstance(exc, json.JSONDecodeError) else type(
            exc).__name__
        raise KaggleCredentialsError(f"{path} is malformed (not JSON: {where}); download a new token at "
                                     "kaggle.com > Settings > API > Create New Token") from None
    if not isinstance(data, dict) or not all(isinstance(data.get(k), str) and data[k] for k in ("username", "key")):
        raise KaggleCredentialsError(f"{path} is malformed: it needs the text fields \"username\" and \"key\"; "
                                     "download a new token at kaggle.com > Settings > API > Create New Token")


def authenticated_api():
    """A ``KaggleApi`` that has authenticated, or a clear :class:`PipelineError` saying why not."""
    quiet = io.StringIO()
    try:
        with contextlib.redirect_stdout(quiet):
            from kaggle.api.kaggle_api_extended import KaggleApi

            api = KaggleApi()
            api.authenticate()
    except ModuleNotFoundError as exc:
        raise PipelineError(f"the Kaggle client is not installed ({exc}): pip install kaggle") from exc
    except SystemExit as exc:  # no credentials the client could use: say so, or why the file was not usable
        client = sys.modules.get("kaggle.api.kaggle_api_extended")  # older clients exit while importing it
        if client is not None:
            _check_config_file(Path(client.KaggleApi.config))
        raise KaggleCredentialsError(CREDENTIALS_HELP) from exc
    except Exception as exc:
        if (network := unreachable(exc)) is not None:
            raise network from None
        raise
    return api
