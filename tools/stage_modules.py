"""Print the files of the repository's modules that a stage loads when it runs: ``python tools/stage_modules.py NAME``.

A stage imports its heavy modules inside ``main()``, after parsing its arguments (so that ``--help`` answers
without importing torch). Importing ``stages.NAME`` alone would miss them: every import statement of the
stages' modules, at any depth, is followed here as if it ran. Run in a fresh interpreter by ``dvc_deps.py``.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's modules, not an installed copy
OURS = ("pipeline", "stages")


def _is_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:  # "pipeline.x.function": its parent is a module, not a package
        return False


def imported_names(path: str) -> set[str]:
    """The repository's modules named by an import statement anywhere in the file (functions' bodies included)."""
    names = set()
    for node in ast.walk(ast.parse(Path(path).read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
    return {name for name in names if name.split(".")[0] in OURS and _is_module(name)}


def main(stage: str) -> None:
    importlib.import_module(f"stages.{stage}")
    seen: set[str] = set()
    while todo := [name for name in list(sys.modules) if name.startswith("stages") and name not in seen]:
        for name in todo:
            seen.add(name)
            for target in imported_names(sys.modules[name].__file__):
                importlib.import_module(target)
    for name, module in sorted(sys.modules.items()):
        if name.split(".")[0] in OURS:
            print(module.__file__)


if __name__ == "__main__":
    main(sys.argv[1])
