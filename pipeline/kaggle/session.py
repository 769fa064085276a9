"""One Kaggle notebook session: the DVC pipeline's stages, in ``dvc.yaml``'s order, under a time limit.

The notebook does not run DVC itself (its cache would copy checkpoints and predictions into a
20 GB output, and each session starts from an empty working folder anyway). It runs the
commands ``dvc.yaml`` declares, ordered by their deps and outs exactly as ``dvc repro`` orders
them: ``dvc.yaml`` stays the one source of truth for what runs and in which order.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from pipeline.config.kaggle import SessionParams
from pipeline.config.params import load_section
from pipeline.config.training import DEADLINE_ENV
from pipeline.models import registry
from pipeline.training.loop import PROGRESS
from pipeline.utils.checkpoint import LAST
from pipeline.utils.errors import PipelineError
from pipeline.utils.io import atomic_path, remove, write_json

log = logging.getLogger(__name__)

#: Written to the working folder: what each session did. A later session finds its
#: predecessor's output (a kernel source under the input root) by this file.
RECORD = "kaggle-session.json"


def train_run(family: str) -> str:
    """The training run of ``family`` (dvc.yaml's train@<family>), which sessions carry over."""
    return f"models/{family}"


def carried(family: str) -> tuple[str, ...]:
    """What a session carries over from the previous one: the family's training run and its curves."""
    return train_run(family), f"dvclive/{family}"


class SessionError(PipelineError):
    """The notebook session cannot run or a stage failed."""


@dataclass(frozen=True)
class Stage:
    name: str
    cmd: str
    deps: tuple[str, ...]
    outs: tuple[str, ...]  # outs, metrics and plots


def _paths(entries: list | None) -> tuple[str, ...]:
    """Paths of a dvc.yaml list whose entries are ``path`` or ``{path: options}``."""
    paths = []
    for entry in entries or []:
        paths.extend([entry] if isinstance(entry, str) else list(entry))
    return tuple(paths)


_TEMPLATE = re.compile(r"\$\{([^}]+)\}")


def _value(template: str, params: Mapping[str, Any], where: str) -> Any:
    node: Any = params
    for key in template.strip().split("."):
        if not isinstance(node, Mapping) or key not in node:
            raise SessionError(f"dvc.yaml: ${{{template}}} in {where!r} names no value of params.yaml")
        node = node[key]
    return node


def fill(text: str, params: Mapping[str, Any]) -> str:
    """``text`` with DVC's ``${section.key}`` templates filled from params (and ``${item}`` of a foreach)."""
    return _TEMPLATE.sub(lambda match: str(_value(match.group(1), params, text)), text)


def render(cmd: str, params: Mapping[str, Any]) -> list[str]:
    """The command with its templates filled (``fill``), split into arguments."""
    return shlex.split(fill(cmd, params))


def _instances(name: str, body: Mapping[str, Any], params: Mapping[str, Any]) -> list[tuple[str, Mapping, Mapping]]:
    """(name, body, params) of each stage a dvc.yaml entry defines: one, or one per item of its ``foreach`` list,
    named ``<name>@<item>`` as DVC names them."""
    if "foreach" not in body:
        return [(name, body, params)]
    match = _TEMPLATE.fullmatch(str(body["foreach"]).strip())
    items = _value(match.group(1), params, name) if match else body["foreach"]
    if not isinstance(items, list):
        raise SessionError(f"dvc.yaml: stage {name}'s foreach is not a list of params.yaml ({items!r})")
    return [(f"{name}@{item}", body["do"], {**params, "item": item}) for item in items]


def read_stages(dvc_yaml: Path, params: Mapping[str, Any]) -> list[Stage]:
    """The stages of ``dvc.yaml`` with ``params`` filled in, ``foreach`` entries expanded."""
    try:
        entries = yaml.safe_load(dvc_yaml.read_text(encoding="utf-8"))["stages"]
    except (OSError, yaml.YAMLError, KeyError, TypeError) as exc:
        raise SessionError(f"{dvc_yaml}: cannot read its stages ({exc})") from exc
    stages = []
    for name, body, values in (found for entry in entries.items() for found in _instances(*entry, params)):
        outs = _paths(body.get("outs")) + _paths(body.get("metrics")) + _paths(body.get("plots"))
        stages.append(Stage(name, fill(body["cmd"], values), tuple(fill(d, values) for d in _paths(body.get("deps"))),
                            tuple(fill(o, values) for o in outs)))
    return stages


def _overlaps(a: str, b: str) -> bool:
    a, b = a.rstrip("/"), b.rstrip("/")
    return a == b or a.startswith(b + "/") or b.startswith(a + "/")


def stage_order(stages: list[Stage]) -> list[Stage]:
    """Each stage after the stages whose outs it depends on; otherwise in file order (as ``dvc repro``)."""
    needs = {s.name: {p.name for p in stages if p is not s and any(_overlaps(d, o) for d in s.deps for o in p.outs)}
             for s in stages}
    ordered: list[Stage] = []
    while len(ordered) < len(stages):
        done = {s.name for s in ordered}
        ready = [s for s in stages if s.name not in done and needs[s.name] <= done]
        if not ready:
            raise SessionError(f"dvc.yaml: the stages {sorted(set(needs) - done)} depend on each other in a cycle")
        ordered.append(ready[0])
    return ordered


def resolve_launcher(setting: str, gpus: int) -> str:
    """``auto``: torchrun with one process per GPU when there are several (Kaggle's T4 x2), else python.

    torchrun runs as ``python -m torch.distributed.run``: the same interpreter, whatever the image puts on PATH.
    """
    if setting != "auto":
        return setting
    return f"python -m torch.distributed.run --standalone --nproc_per_node={gpus}" if gpus > 1 else "python"


def find_file(root: Path, name: str) -> Path:
    """The one file called ``name`` under ``root`` (an attached dataset's mount point is not known in advance)."""
    found = sorted(p for p in root.rglob(name) if p.is_file())
    if len(found) != 1:
        raise SessionError(f"{'no' if not found else 'several'} files named {name!r} under {root}"
                           f"{': ' + ', '.join(map(str, found)) if found else ''}; attach exactly one "
                           "(docs/kaggle.md, 'Pretrained weights in an offline notebook')")
    return found[0]


def find_previous(input_root: Path, family: str) -> Path | None:
    """The output of an earlier version of this kernel (a kernel source) that trained ``family`` furthest."""
    runs = [p.parent for p in input_root.rglob(RECORD) if (p.parent / train_run(family) / LAST).is_file()]
    return max(runs, key=lambda run: _trained_steps(run / train_run(family)), default=None)


def _trained_steps(run: Path) -> int:
    progress = run / PROGRESS
    return json.loads(progress.read_text())["step"] if progress.is_file() else 0


def _history(record: Path) -> list[dict]:
    return json.loads(record.read_text(encoding="utf-8"))["sessions"] if record.is_file() else []


@dataclass(frozen=True)
class Session:
    """Where one session reads and writes, and when it started."""

    bundle: Path  # the code dataset: imaterialist-bundle.json, dvc.yaml, params.yaml, wheels
    input_root: Path  # /kaggle/input: competition data, the code dataset, kernel sources, weights
    working: Path  # /kaggle/working: the project folder, and what Kaggle keeps as output
    started: float  # time.time() when the notebook started
    gpus: int


def prepare(session: Session) -> tuple[dict, SessionParams, Path | None]:
    """Write the working folder's dvc.yaml and resolved params.yaml; carry the previous session's training over.

    The params keep ``compare.families`` to ``model.family``: one training is what a session's time allows.
    """
    params_file = session.bundle / "params.yaml"
    settings = load_section(params_file, "kaggle_session", SessionParams)
    params = yaml.safe_load(params_file.read_text(encoding="utf-8"))
    params["data"]["search_root"] = str(session.input_root)
    params["train"]["launcher"] = resolve_launcher(settings.launcher, session.gpus)
    # One training fits a session's time: the notebook trains model.family alone, not every family compared.
    family = params["model"]["family"]
    params["compare"]["families"] = [family]
    if settings.weights_file:
        chosen = registry.family(family)
        params[family][chosen.weights_param] = str(find_file(session.input_root, settings.weights_file))
    session.working.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(session.bundle / "dvc.yaml", session.working / "dvc.yaml")
    with atomic_path(session.working / "params.yaml") as tmp:
        tmp.write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")
    previous = None
    if not (session.working / train_run(family) / LAST).is_file():
        previous = find_previous(session.input_root, family)
        for path in carried(family) if previous else ():
            if (previous / path).is_dir():
                shutil.copytree(previous / path, session.working / path, dirs_exist_ok=True)
                log.info("carried over %s from %s", path, previous)
    return params, settings, previous


def run(session: Session) -> dict:
    """Run every stage once; training stops before the deadline that leaves ``reserve_minutes`` for the rest.

    Returns this session's entry of ``kaggle-session.json`` (also written there, after each stage).
    """
    params, settings, previous = prepare(session)
    deadline = session.started + 60 * (settings.time_budget_minutes - settings.reserve_minutes)
    record_path = session.working / RECORD
    sessions = _history(previous / RECORD) if previous else _history(record_path)
    entry: dict[str, Any] = {"started": session.started, "gpus": session.gpus, "launcher": params["train"]["launcher"],
                             "resumed_from": str(previous) if previous else None, "train_deadline": deadline,
                             "stages": []}
    env = {**os.environ, DEADLINE_ENV: str(deadline),
           "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])}
    stages = stage_order(read_stages(session.working / "dvc.yaml", params))
    _check_names(settings.after_training, stages)
    progress = session.working / train_run(params["model"]["family"]) / PROGRESS
    trained = _finished(progress)  # this session's time is not the training's: the stages after it may take it
    for stage in stages:
        if stage.name in settings.after_training and not trained:
            log.info("\n=== stage %s: skipped until a session starts with training finished "
                     "(kaggle_session.after_training)", stage.name)
            entry["stages"].append({"name": stage.name, "skipped": "training had not finished when the session began"})
            continue
        argv = shlex.split(stage.cmd)
        log.info("\n=== stage %s: %s", stage.name, shlex.join(argv))
        began = time.time()
        code = subprocess.run(argv, cwd=session.working, env=env, check=False).returncode
        entry["stages"].append({"name": stage.name, "seconds": round(time.time() - began, 1), "exit_code": code})
        entry["train"] = json.loads(progress.read_text()) if progress.is_file() else None
        write_json(record_path, {"sessions": [*sessions, entry]})
        if code != 0:
            raise SessionError(f"stage {stage.name} failed (exit code {code}); see its output above")
    for path in settings.discard:
        remove(session.working / path)  # links are removed, never followed: the read-only input is untouched
    entry["ended"] = time.time()
    write_json(record_path, {"sessions": [*sessions, entry]})
    return entry


def _finished(progress: Path) -> bool:
    """Whether the training run's progress file (a previous session's output) says training has finished."""
    try:
        return json.loads(progress.read_text(encoding="utf-8")).get("finished") is True
    except (OSError, ValueError, AttributeError):  # none yet, or not a progress record: not finished
        return False


def _check_names(names: tuple[str, ...], stages: list[Stage]) -> None:
    if unknown := sorted(set(names) - {s.name for s in stages}):
        raise SessionError(f"kaggle_session.after_training names {unknown}, not stages of dvc.yaml "
                           f"({', '.join(s.name for s in stages)})")


def summary(entry: dict) -> str:
    train = entry.get("train") or {}
    state = ("training finished" if train.get("finished") else
             f"training stopped at step {train.get('step')} of {train.get('total_steps')} "
             f"({train.get('stopped_by')}): run a new version of the kernel to continue")
    minutes = (entry["ended"] - entry["started"]) / 60
    skipped = [stage["name"] for stage in entry["stages"] if "skipped" in stage]
    later = f"; {', '.join(skipped)} run in a version that starts with training finished" if skipped else ""
    return f"session done in {minutes:.1f} min; {state}; submission.csv written{later}"
