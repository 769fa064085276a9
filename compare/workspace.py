"""``make compare``: every family of the comparison, on a larger synthetic set, in a DVC workspace of its own.

The workspace (``build/compare`` by default) holds the working tree's tracked files, and a
params.yaml that is the project's with ``compare/params.yaml`` merged over it. Its own
``dvc.lock`` records what ran, so a second ``make compare`` reruns only what changed (one family's
section: that family alone). The default pipeline's outputs, and its committed ``dvc.lock``, are
not touched.

Usage: ``python compare/workspace.py [--overrides FILE ...] [--workspace DIR] [--copy-only]``; several
override files are merged in order, e.g. ``compare/params.yaml`` and then ``compare/unet_encoder.yaml``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from pipeline.config.params import with_overrides
from pipeline.utils.errors import PipelineError
from pipeline.utils.io import atomic_write

REPO = Path(__file__).resolve().parent.parent
#: Tracked files the workspace keeps its own version of: its DVC set-up, its lock and its params (the project's
#: plot templates, .dvc/plots/, are copied: its dvc plots show draws the same charts).
OWN = (".dvc/config", ".dvc/.gitignore", "dvc.lock", "params.yaml")


def stage_outputs(repo: Path) -> tuple[str, ...]:
    """The outputs ``dvc.lock`` records (some are committed, e.g. metrics): the workspace makes its own."""
    lock = yaml.safe_load((repo / "dvc.lock").read_text(encoding="utf-8")) if (repo / "dvc.lock").is_file() else {}
    return tuple(out["path"] for stage in lock.get("stages", {}).values() for out in stage.get("outs", []))


def tracked_files(repo: Path) -> list[str]:
    """The files git tracks or would (untracked, not ignored) that make the pipeline: code, dvc.yaml, docs; not
    the outputs nor what ``OWN`` names."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=repo,
                            capture_output=True, check=True).stdout
    outputs = stage_outputs(repo)
    return [name for name in listed.decode().split("\0") if name and not name.startswith(OWN)
            and not any(name == out or name.startswith(out.rstrip("/") + "/") for out in outputs)]


def sync(repo: Path, workspace: Path, overrides: list[Path]) -> None:
    """Copy the tracked files whose content differs (DVC hashes content: an unchanged file stays unchanged),
    and write the params: the project's with each override file merged over it in turn."""
    for name in tracked_files(repo):
        source, target = repo / name, workspace / name
        if source.is_file() and not (target.is_file() and target.read_bytes() == source.read_bytes()):
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    params = workspace / "params.yaml"
    atomic_write(params, (repo / "params.yaml").read_text(encoding="utf-8"))
    for path in overrides:
        atomic_write(params, yaml.safe_dump(with_overrides(params, path), sort_keys=False))


def dvc(workspace: Path, *args: str) -> None:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    done = subprocess.run([sys.executable, "-m", "dvc", *args], cwd=workspace, env=env, check=False)
    if done.returncode:
        raise PipelineError(f"dvc {' '.join(args)} failed in {workspace} (exit code {done.returncode}); see above")


def main() -> None:
    cli = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    cli.add_argument("--overrides", type=Path, nargs="+", default=[REPO / "compare" / "params.yaml"],
                     help="params files merged over params.yaml, in order (default: compare/params.yaml)")
    cli.add_argument("--workspace", type=Path, default=REPO / "build" / "compare")
    cli.add_argument("--copy-only", action="store_true", help="prepare the workspace, run nothing")
    args = cli.parse_args()
    args.workspace.mkdir(parents=True, exist_ok=True)
    if not (args.workspace / ".dvc").is_dir():
        dvc(args.workspace, "init", "--no-scm", "--quiet")  # no git: DVCLive and DVC run without one
        dvc(args.workspace, "config", "core.analytics", "false")
    sync(REPO, args.workspace, args.overrides)
    if args.copy_only:
        return
    dvc(args.workspace, "repro", "compare")
    print((args.workspace / "reports" / "compare.md").read_text(encoding="utf-8"), end="")


if __name__ == "__main__":
    try:
        main()
    except PipelineError as exc:
        sys.exit(f"error: {exc}")
