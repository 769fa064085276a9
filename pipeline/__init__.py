"""iMaterialist (Fashion) 2019 pipeline: the library behind the DVC stages in ``stages/``.

``from pipeline import load`` gives the Python API (``pipeline.shop.api.load``): a trained run folder in, a
model that segments photos out. It is imported on first use, so that the rest of the package loads no model code.
"""

from __future__ import annotations

from typing import Any

__all__ = ["load"]


def __getattr__(name: str) -> Any:
    if name == "load":
        from pipeline.shop.api import load

        return load
    raise AttributeError(f"module 'pipeline' has no attribute {name!r}")
