"""Short digests that tell whether persisted work (a resized cache, a checkpoint) still matches its inputs."""

from __future__ import annotations

import hashlib
import importlib
from pathlib import Path


def source_digest(*module_names: str) -> str:
    """The digest of these modules' source files: edit the code and persisted results stop matching,
    just as DVC reruns a stage when a dependency changes.
    """
    digest = hashlib.sha256()
    for name in module_names:
        digest.update(Path(importlib.import_module(name).__file__).read_bytes())
    return digest.hexdigest()[:16]


def file_digest(path: Path | str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


def text_digest(lines: list[str]) -> str:
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()[:16]
