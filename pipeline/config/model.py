"""The ``model`` section: which family, and the input size every family sees.

Each family's own section has its schema in the family's package (``pipeline/models/families/<name>/params.py``).

A plain dataclass, not a pydantic model, so that the model builders and the benchmarks run on a
bare GPU box with torch alone; ``load_section`` validates it from params.yaml all the same.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ModelParams:
    """The ``model`` section: the family (``pipeline.models.registry``) and the size images are fitted to.

    Every family sees images scaled so that the short side is ``min_size`` and the long side at
    most ``max_size``; the image cache and TTA resize to that, so it is shared, not a family's own.
    """

    __pydantic_config__ = {"extra": "forbid"}  # a misspelt key in params.yaml is an error

    family: str = "maskrcnn"
    min_size: int = 800
    max_size: int = 1333

    def __post_init__(self) -> None:
        if not 0 < self.min_size <= self.max_size:
            raise ValueError(f"need 0 < min_size <= max_size, got {self.min_size} and {self.max_size}")
