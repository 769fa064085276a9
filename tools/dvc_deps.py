"""Write (or check) the code dependencies of every stage of dvc.yaml, from the modules the stage imports.

A stage depends on each module of ``pipeline`` and ``stages`` that running ``stages.<name>`` loads (every import
statement of the stages' modules followed, those inside functions too: ``tools/stage_modules.py``); a stage
that builds a model (it imports the family registry) also depends on the shared code that any family's package
imports, since it imports the family only when it runs. The family's own package is a folder dependency written
by hand (``pipeline/models/families/${item}``), which this keeps, as it keeps every dependency that is not a
Python module. The stage's own module comes first, then the other modules of ``stages``, then the pipeline's.

    python tools/dvc_deps.py           # rewrite dvc.yaml's lists (make dvc-deps)
    python tools/dvc_deps.py --check   # exit 1 naming each stage whose list is stale (the test suite runs it)
"""

from __future__ import annotations

import argparse
import importlib.util
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # this checkout's pipeline, not another one installed
REGISTRY = "pipeline/models/registry.py"
STAGE_MODULES = REPO / "tools" / "stage_modules.py"


def is_code(dep: str) -> bool:
    return dep.endswith(".py") and dep.startswith(("pipeline/", "stages/"))


def imported_files(stage: str) -> set[str]:
    """The repository's modules that importing ``stages.<stage>`` loads, in a fresh interpreter."""
    done = subprocess.run([sys.executable, str(STAGE_MODULES), stage], cwd=REPO, capture_output=True,
                          text=True, check=True)
    return {Path(line).resolve().relative_to(REPO).as_posix() for line in done.stdout.split()}


def family_shared_files() -> set[str]:
    """The modules outside its own package that some family's code imports."""
    from pipeline.models import registry

    files = set()
    for name in registry.names():
        own = f"{registry.FAMILIES_PACKAGE.replace('.', '/')}/{name}/"
        for module in registry.family(name).code_modules():
            path = Path(importlib.util.find_spec(module).origin).resolve().relative_to(REPO).as_posix()
            if not path.startswith(own):
                files.add(path)
    return files


def code_deps(stage: str, loaded: set[str], shared: set[str]) -> list[str]:
    own = f"stages/{stage}.py"
    files = loaded | (shared if REGISTRY in loaded else set())
    return [own, *sorted(files - {own}, key=lambda path: (not path.startswith("stages/"), path))]


def rewrite(text: str, stage: str, deps: list[str]) -> str:
    """``text`` (dvc.yaml) with the Python modules of ``stage``'s deps replaced by ``deps``, the rest kept."""
    header = re.search(rf"^  {re.escape(stage)}:\n", text, flags=re.M)
    if header is None:
        raise SystemExit(f"dvc.yaml has no stage {stage!r}")
    start = text.index("deps:\n", header.end()) + len("deps:\n")
    lines = text[start:].split("\n")
    end = next(i for i, line in enumerate(lines) if not line.lstrip().startswith("- "))
    block = lines[:end]
    indent = block[0][: len(block[0]) - len(block[0].lstrip())]
    kept = [line for line in block if not is_code(line.strip()[2:])]
    first = next((i for i, line in enumerate(block) if is_code(line.strip()[2:])), 0)
    position = sum(1 for line in block[:first] if not is_code(line.strip()[2:]))
    new = kept[:position] + [f"{indent}- {dep}" for dep in deps] + kept[position:]
    return text[:start] + "\n".join(new + lines[end:])


def expected(dvc_yaml: Path) -> dict[str, list[str]]:
    stages = list(yaml.safe_load(dvc_yaml.read_text(encoding="utf-8"))["stages"])
    with ThreadPoolExecutor(max_workers=2) as pool:
        loaded = dict(zip(stages, pool.map(imported_files, stages), strict=True))
    shared = family_shared_files()
    return {stage: code_deps(stage, loaded[stage], shared) for stage in stages}


def stale(dvc_yaml: Path, wanted: dict[str, list[str]]) -> dict[str, tuple[list[str], list[str]]]:
    """Per stage whose list differs: the modules missing from it and those it lists but does not import."""
    stages = yaml.safe_load(dvc_yaml.read_text(encoding="utf-8"))["stages"]
    found = {}
    for stage, deps in wanted.items():
        listed = [dep for dep in stages[stage].get("do", stages[stage])["deps"] if is_code(dep)]
        if listed != deps:
            found[stage] = (sorted(set(deps) - set(listed)), sorted(set(listed) - set(deps)))
    return found


def main(argv: list[str] | None = None) -> int:
    cli = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    cli.add_argument("--check", action="store_true", help="change nothing; exit 1 if a stage's list is stale")
    cli.add_argument("--dvc-yaml", type=Path, default=REPO / "dvc.yaml")
    args = cli.parse_args(argv)
    wanted = expected(args.dvc_yaml)
    if args.check:
        problems = stale(args.dvc_yaml, wanted)
        for stage, (missing, extra) in problems.items():
            print(f"{args.dvc_yaml}: stage {stage}: missing {missing or 'none'}, not imported {extra or 'none'}"
                  + ("" if missing or extra else " (order)"), file=sys.stderr)
        if problems:
            print("run `make dvc-deps` to write them", file=sys.stderr)
        return 1 if problems else 0
    text = args.dvc_yaml.read_text(encoding="utf-8")
    for stage, deps in wanted.items():
        text = rewrite(text, stage, deps)
    args.dvc_yaml.write_text(text, encoding="utf-8")
    print(f"{args.dvc_yaml}: code dependencies of {len(wanted)} stages written")
    return 0


if __name__ == "__main__":
    sys.exit(main())
