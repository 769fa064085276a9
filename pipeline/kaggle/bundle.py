"""Build what a Kaggle notebook needs to run this pipeline offline: a kernel folder and a code dataset.

The kernel folder (``kaggle kernels push -p``) holds ``kernel-metadata.json`` and the bootstrap
script. The code dataset (``kaggle datasets create -p``), one flat folder, holds this project as a
wheel, the wheels of every dependency the notebook image may lack (torch and torchvision excepted:
the image has them, and the bootstrap never replaces them), and the project's ``dvc.yaml`` and
``params.yaml`` with the Kaggle overrides merged in.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path
from typing import Any

import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from tqdm import tqdm

from pipeline.config.kaggle import KernelBuildParams, check_slug
from pipeline.config.params import DataParams, load_section, with_overrides
from pipeline.config.sections import STAGE_SECTIONS
from pipeline.models import registry
from pipeline.utils.errors import PipelineError
from pipeline.utils.io import atomic_path, write_json

PROJECT = "imaterialist-pipeline"
# The bootstrap finds the code dataset under /kaggle/input by this file (kaggle_kernel/run_kernel.py repeats
# the name: it runs before anything of this project is installed).
MANIFEST = "imaterialist-bundle.json"
BOOTSTRAP = "run_kernel.py"
#: Provided by the notebook image; installing them offline would mean gigabytes of CUDA wheels.
FROM_IMAGE = frozenset({"torch", "torchvision"})
#: What ``kaggle kernels push`` reads from kernel-metadata.json (docs/competition.md, "Kaggle environment").
METADATA_FIELDS = {"id": str, "title": str, "code_file": str, "language": str, "kernel_type": str,
                   "is_private": bool, "enable_gpu": bool, "enable_internet": bool, "dataset_sources": list,
                   "competition_sources": list, "kernel_sources": list, "model_sources": list, "machine_shape": str}
_LINUX = ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64")


class BundleError(PipelineError):
    """The kernel folder or code dataset cannot be built."""


def notebook_params(repo: Path, params_file: Path, build_params: KernelBuildParams) -> dict:
    """``params_file`` with the notebook's overrides (``kaggle_kernel.params_overrides``) merged in."""
    return with_overrides(params_file, repo / build_params.params_overrides)


def check_weights(params: Mapping[str, Any], build_params: KernelBuildParams, allow_missing: bool) -> str | None:
    """Refuse a notebook that would stop after starting: it needs a weights file that no attached dataset
    provides. With ``allow_missing`` the refusal is returned as a warning instead."""
    wanted = (params.get("kaggle_session") or {}).get("weights_file", "")
    if not wanted or build_params.weights_dataset:
        return None
    problem = (f"kaggle_session.weights_file is {wanted!r}, but kaggle_kernel.weights_dataset is empty: no attached "
               "dataset provides that file, and the notebook would stop after its GPU session started. Upload it once "
               "as a Kaggle dataset (docs/kaggle.md, 'Pretrained weights in an offline notebook') and set "
               "kaggle_kernel.weights_dataset: <owner>/<slug>; or set kaggle_session.weights_file: '' in the "
               "notebook's overrides to train from scratch")
    if not allow_missing:
        raise BundleError(f"{problem} (--allow-missing-weights builds anyway)")
    return problem


_RUN_AS_SCRIPT = 'if __name__ == "__main__":\n    main()\n'
_RUN_IN_NOTEBOOK = ("# In a notebook: a failed session fails the cell, a finished one does not.\n"
                    "try:\n    main()\nexcept SystemExit as done:\n    if done.code not in (0, None):\n        raise\n")


def notebook(script: str) -> dict:
    """A Jupyter notebook (Kaggle's default kernel type) whose one code cell is ``script``, the bootstrap.

    The script ends with ``sys.exit(status)``, which IPython reports as a failed cell even for status 0: the
    cell runs it and lets only a failure through.
    """
    body = script.replace(_RUN_AS_SCRIPT, "").rstrip("\n")
    lines = (body + "\n\n\n" + _RUN_IN_NOTEBOOK).splitlines(keepends=True)
    return {"cells": [{"cell_type": "markdown", "metadata": {}, "source": [
                "# iMaterialist (Fashion) 2019: the pipeline's Kaggle session\n",
                "Installs the pipeline offline from its code dataset and runs one session of `dvc repro` "
                "(docs/kaggle.md). Run all cells.\n"]},
              {"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [], "source": lines}],
            "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
                         "language_info": {"name": "python"}},
            "nbformat": 4, "nbformat_minor": 4}


def validate_params(params_file: Path) -> None:
    for name, schema in {**STAGE_SECTIONS, **registry.sections()}.items():
        load_section(params_file, name, schema)


def kaggle_owner(explicit: str, env: Mapping[str, str]) -> str:
    """The Kaggle username: as given, else $KAGGLE_USERNAME, else the ``username`` of kaggle.json (no key read)."""
    if explicit:
        return explicit
    if env.get("KAGGLE_USERNAME"):
        return env["KAGGLE_USERNAME"]
    config = Path(env.get("KAGGLE_CONFIG_DIR", Path.home() / ".kaggle")) / "kaggle.json"
    if config.is_file():
        try:
            username = json.loads(config.read_text(encoding="utf-8")).get("username")
        except (OSError, json.JSONDecodeError, AttributeError) as exc:
            raise BundleError(f"{config}: cannot read its username ({exc})") from exc
        if username:
            return username
    raise BundleError("no Kaggle username: set kaggle_kernel.owner in params.yaml, KAGGLE_USERNAME, "
                      "or put your API token in ~/.kaggle/kaggle.json")


def title_of(slug: str) -> str:
    """A title whose slug is ``slug``: Kaggle derives a kernel's URL from its title."""
    return slug.replace("-", " ").capitalize()


def kernel_metadata(owner: str, build: KernelBuildParams, competition: str, as_notebook: bool = False) -> dict:
    kernel_id = f"{owner}/{build.kernel_slug}"
    datasets = [f"{owner}/{build.code_dataset_slug}"] + ([build.weights_dataset] if build.weights_dataset else [])
    code_file = Path(BOOTSTRAP).with_suffix(".ipynb").name if as_notebook else BOOTSTRAP
    return {"id": kernel_id, "title": title_of(build.kernel_slug), "code_file": code_file, "language": "python",
            "kernel_type": "notebook" if as_notebook else "script", "is_private": True, "enable_gpu": True,
            "enable_internet": build.enable_internet, "dataset_sources": datasets,
            "competition_sources": [competition], "kernel_sources": [kernel_id] if build.resume else [],
            "model_sources": [], "machine_shape": build.accelerator}


def dataset_metadata(owner: str, build: KernelBuildParams) -> dict:
    return {"id": f"{owner}/{build.code_dataset_slug}", "title": title_of(build.code_dataset_slug),
            "licenses": [{"name": "MIT"}]}


def metadata_problems(meta: Mapping[str, Any], folder: Path) -> list[str]:
    """What ``kaggle kernels push`` would reject or silently default, one line each; empty when valid."""
    problems = [f"{key}: missing" for key in METADATA_FIELDS if key not in meta]
    problems += [f"{key}: expected {kind.__name__}, got {type(meta[key]).__name__}"
                 for key, kind in METADATA_FIELDS.items() if key in meta and not isinstance(meta[key], kind)]
    problems += [f"{key}: unknown field" for key in meta if key not in METADATA_FIELDS]
    if problems:
        return problems
    parts = meta["id"].split("/")
    if len(parts) != 2 or not parts[0]:
        problems.append(f"id: {meta['id']!r} is not owner/slug")
    else:
        try:
            check_slug(parts[1])
        except ValueError as exc:
            problems.append(f"id: {exc}")
        if title_of(parts[1]).lower() != meta["title"].lower():
            problems.append(f"title: {meta['title']!r} does not resolve to the slug {parts[1]!r}")
    if not (folder / meta["code_file"]).is_file():
        problems.append(f"code_file: {folder / meta['code_file']} does not exist")
    kind = "notebook" if str(meta["code_file"]).endswith(".ipynb") else "script"
    if meta["language"] != "python" or meta["kernel_type"] != kind:
        problems.append(f"language/kernel_type: this bootstrap is a python {kind}")
    for key in ("dataset_sources", "kernel_sources"):
        problems += [f"{key}: {s!r} is not owner/slug" for s in meta[key] if len(str(s).split("/")) != 2]
    if not meta["competition_sources"]:
        problems.append("competition_sources: empty; the notebook would have no competition data")
    return problems


def requirements() -> list[str]:
    """This project's runtime requirements, less what the notebook image provides."""
    try:
        declared = distribution(PROJECT).requires or []
    except PackageNotFoundError as exc:
        raise BundleError(f"{PROJECT} is not installed in this environment: run make test or make demo once "
                          "(they install it), then build") from exc
    return [r for r in declared if "extra ==" not in r and Requirement(r).name not in FROM_IMAGE]


def _pip(*args: str) -> None:
    command = [sys.executable, "-m", "pip", *args]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-15:])
        raise BundleError(f"pip {' '.join(args[:2])} failed (exit code {done.returncode}):\n{tail}")


def _pip_counted(args: list[str], total: int, desc: str) -> None:
    """pip with a progress bar over ``total`` distributions: one step per distribution pip starts on (it says
    "Collecting" for one from the index, "Processing" for a local file)."""
    command = [sys.executable, "-m", "pip", *args]
    seen: list[str] = []
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as process, \
            tqdm(total=total, desc=desc, unit="wheel") as bar:
        for line in process.stdout:
            seen.append(line)
            if line.startswith(("Collecting ", "Processing ")):
                bar.set_postfix_str(Path(line.split()[1]).name, refresh=False)
                bar.update(1)
    if process.returncode != 0:
        tail = "".join(seen[-15:]).strip()
        raise BundleError(f"pip {' '.join(args[:2])} failed (exit code {process.returncode}):\n{tail}")


def _needed(requirement: Requirement, python_versions: tuple[str, ...]) -> bool:
    """Whether a requirement applies on Linux for any of these Pythons (extras aside)."""
    if requirement.marker is None:
        return True
    return any(requirement.marker.evaluate({"extra": "", "python_version": v, "python_full_version": f"{v}.0",
                                            "sys_platform": "linux", "platform_system": "Linux"})
               for v in python_versions)


def pinned_closure(reqs: list[str], python_versions: tuple[str, ...]) -> list[str]:
    """Every distribution ``reqs`` need, transitively, pinned to the version installed here (tested).

    The walk stops at the image's own packages (torch, torchvision): a dependency that needs torch
    (segmentation-models-pytorch, timm) gets the image's, not gigabytes of CUDA wheels beside it.
    """
    pinned: dict[str, str] = {}
    todo = [Requirement(r) for r in reqs]
    while todo:
        requirement = todo.pop()
        name = canonicalize_name(requirement.name)
        if name in pinned or name in FROM_IMAGE or not _needed(requirement, python_versions):
            continue
        try:
            found = distribution(name)
        except PackageNotFoundError as exc:
            raise BundleError(f"{name} (required by this project) is not installed here: run make test once") from exc
        pinned[name] = found.version
        todo += [Requirement(r) for r in found.requires or []]
    return [f"{name}=={version}" for name, version in sorted(pinned.items())]


def wheelhouse(dest: Path, python_versions: tuple[str, ...]) -> Path:
    """Wheels of every dependency but torch/torchvision, for these Pythons on Linux x86-64; reused when current.

    Downloads from the package index: the one step of the build that needs the network. For this
    interpreter ``pip wheel`` also builds the few dependencies published only as source (DVC's
    hydra-core needs antlr4-python3-runtime); other Pythons reuse those pure-Python wheels.
    """
    current = f"{sys.version_info.major}.{sys.version_info.minor}"
    pins = pinned_closure(requirements(), (current, *python_versions))
    key = hashlib.sha256(json.dumps([pins, list(python_versions)]).encode()).hexdigest()[:16]
    stamp = dest / ".complete"
    if stamp.is_file() and stamp.read_text() == key:
        return dest
    with atomic_path(dest) as tmp:
        tmp.mkdir()
        # --no-deps: the closure is already resolved, and pip would otherwise fetch torch for smp and timm
        _pip_counted(["wheel", "--no-deps", "-w", str(tmp), *pins], len(pins), f"wheels for Python {current}")
        for version in python_versions:
            if version != current:
                platforms = [arg for tag in _LINUX for arg in ("--platform", tag)]
                _pip_counted(["download", "--no-deps", "-d", str(tmp), "--only-binary=:all:", "--implementation",
                              "cp", "--python-version", version, *platforms, "--find-links", str(tmp), *pins],
                             len(pins), f"wheels for Python {version}")
        (tmp / ".complete").write_text(key)
    return dest


def project_wheel(repo: Path, dest: Path) -> Path:
    """This project as a wheel, built from a copy of its sources (no build folders left in the checkout)."""
    with tempfile.TemporaryDirectory() as scratch:
        source = Path(scratch) / "src"
        source.mkdir()
        for name in ("pyproject.toml", "README.md"):
            shutil.copy2(repo / name, source / name)
        for package in ("pipeline", "stages", "kaggle_kernel"):
            shutil.copytree(repo / package, source / package, ignore=shutil.ignore_patterns("__pycache__"))
        _pip("wheel", "--quiet", "--no-deps", "--no-build-isolation", "-w", str(dest), str(source))
    wheels = sorted(dest.glob("imaterialist_pipeline-*.whl"))
    if len(wheels) != 1:
        raise BundleError(f"{dest}: expected one project wheel, found {len(wheels)}")
    return wheels[0]


@dataclass(frozen=True)
class Built:
    kernel: Path  # push with: kaggle kernels push -p <kernel>
    dataset: Path  # upload with: kaggle datasets create -p <dataset> (then: datasets version)
    metadata: dict


def build(repo: Path, out: Path, params_file: Path, build_params: KernelBuildParams, wheels: Path,
          env: Mapping[str, str], as_notebook: bool = False, allow_missing_weights: bool = False) -> Built:
    """Write ``out/kernel`` and ``out/dataset`` (atomically, each replacing an older build).

    ``build_params`` is the ``kaggle_kernel`` section of ``params_file`` as the command line amended it;
    ``as_notebook`` writes the bootstrap as a one-cell ``.ipynb``. A notebook that needs a weights file no
    attached dataset provides is refused (``check_weights``) unless ``allow_missing_weights``.
    """
    params = notebook_params(repo, params_file, build_params)
    check_weights(params, build_params, allow_missing_weights)
    owner = kaggle_owner(build_params.owner, env)
    competition = load_section(params_file, "data", DataParams).competition
    meta = kernel_metadata(owner, build_params, competition, as_notebook)

    with atomic_path(out / "dataset") as dataset:  # flat: Kaggle's upload skips or zips sub-folders
        shutil.copytree(wheels, dataset, ignore=shutil.ignore_patterns(".complete"))
        shutil.copy2(repo / "dvc.yaml", dataset / "dvc.yaml")
        (dataset / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")
        validate_params(dataset / "params.yaml")
        wheel = project_wheel(repo, dataset)
        write_json(dataset / "dataset-metadata.json", dataset_metadata(owner, build_params))
        write_json(dataset / MANIFEST, {"project_wheel": wheel.name, "built": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                        time.gmtime()), "python_versions": list(build_params.python_versions),
                                        "kernel": meta["id"], "from_image": sorted(FROM_IMAGE)})
    with atomic_path(out / "kernel") as kernel:
        kernel.mkdir()
        if as_notebook:
            write_json(kernel / meta["code_file"], notebook((repo / "kaggle_kernel" / BOOTSTRAP).read_text("utf-8")))
        else:
            shutil.copy2(repo / "kaggle_kernel" / BOOTSTRAP, kernel / BOOTSTRAP)
        write_json(kernel / "kernel-metadata.json", meta)
        problems = metadata_problems(meta, kernel)
        if problems:
            raise BundleError("kernel-metadata.json: " + "; ".join(problems))
    return Built(out / "kernel", out / "dataset", meta)

