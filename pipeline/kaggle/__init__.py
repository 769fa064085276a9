"""Kaggle: the API client with clear errors, submitting, and the offline notebook's bundle and session.

Public names, imported on first use (docs/development.md, "Where a change goes").
"""

import lazy_loader

__getattr__, __dir__, __all__ = lazy_loader.attach(
    __name__,
    submod_attrs={
        "api": ["KaggleCredentialsError", "KaggleNetworkError", "authenticated_api"],
        "submit": ["SubmitError"],
        "download": ["kaggle_download"],
        "bundle": ["BundleError", "build"],
        "session": ["SessionError", "Session", "run"],
    },
)
