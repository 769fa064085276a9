"""Submission: the CSV Kaggle accepts, written from instances and checked as Kaggle checks it.

Public names, imported on first use (docs/development.md, "Where a change goes").
"""

import lazy_loader

__getattr__, __dir__, __all__ = lazy_loader.attach(
    __name__,
    submod_attrs={
        "rows": ["SubmissionError", "check", "check_file", "frame", "image_rows", "write", "test_records"],
        "encode": ["encoded_rows"],
    },
)
