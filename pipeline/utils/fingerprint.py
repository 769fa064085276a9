"""Short digests that tell whether persisted work (a resized cache, a checkpoint) still matches its inputs."""

from __future__ import annotations

import ast
import hashlib
import importlib
import importlib.util
from pathlib import Path


def imported_modules(module_name: str, package: str = "pipeline") -> tuple[str, ...]:
    """``module_name`` and every module of ``package`` it imports, directly or through others, sorted.

    Read from the source (``import`` statements anywhere in a module, lazy ones included), so that
    a digest over them covers exactly the code that can change a result, without a list to keep.
    """
    found: set[str] = set()
    todo = [module_name]
    while todo:
        name = todo.pop()
        if name in found:
            continue
        found.add(name)
        todo += [name.rsplit(".", k)[0] for k in range(1, name.count("."))]  # its packages' __init__ run first
        spec = importlib.util.find_spec(name)
        tree = ast.parse(Path(spec.origin).read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                todo += [alias.name for alias in node.names if alias.name.startswith(f"{package}.")]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                if node.module != package and not node.module.startswith(f"{package}."):
                    continue
                todo.append(node.module)
                # from pipeline.data import rle: the names that are modules are imported too
                todo += [f"{node.module}.{alias.name}" for alias in node.names
                         if _is_module(f"{node.module}.{alias.name}")]
    return tuple(sorted(found))


def _is_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:  # the parent is a module, not a package
        return False


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


def file_record(path: Path | str) -> dict:
    """What a resumable output records of a file it wrote, to tell later that the file is still the one written."""
    return {"bytes": Path(path).stat().st_size, "sha256": file_digest(path)}


def record_problem(path: Path | str, record: object) -> str | None:
    """Why the file at ``path`` is not the one ``record`` (of :func:`file_record`) describes; None when it is.

    The size is compared first: a truncated file is told without reading it.
    """
    path = Path(path)
    written = record if isinstance(record, dict) else {}
    if not (isinstance(written.get("bytes"), int) and isinstance(written.get("sha256"), str)):
        return f"no record of {path.name} was written"
    if not path.is_file():
        return f"{path.name} is missing"
    if (size := path.stat().st_size) != record["bytes"]:
        return f"{path.name} has {size:,} bytes, {record['bytes']:,} were written"
    if file_digest(path) != record["sha256"]:
        return f"{path.name} is not the file written (its SHA-256 differs)"
    return None


def text_digest(lines: list[str]) -> str:
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()[:16]
