"""Kaggle notebook entry point: install the pipeline offline from its code dataset, then run one session.

``make kaggle-kernel`` pushes this file as the kernel's code. It uses the standard library only:
nothing of the project is installed when it starts. The notebook image's torch and torchvision
are kept (pinned while installing); every other dependency comes from the code dataset's wheels,
with pip's index switched off, so the notebook runs without internet.
"""

import json
import os
import subprocess
import sys
import tempfile
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

STARTED = time.time()  # the session's clock starts with the notebook
MANIFEST = "imaterialist-bundle.json"
# Kaggle's layout; another root (holding input/ and working/) runs the same session elsewhere, e.g. in tests.
ROOT = Path(os.environ.get("IMATERIALIST_KAGGLE_ROOT", "/kaggle"))


def find_bundle(input_root: Path) -> Path:
    found = sorted(path.parent for path in input_root.rglob(MANIFEST))
    if len(found) != 1:
        sys.exit(f"error: {'no' if not found else 'more than one'} code dataset ({MANIFEST}) under {input_root}"
                 f"{': ' + ', '.join(map(str, found)) if found else ''}; attach exactly one (make kaggle-kernel)")
    return found[0]


def installed(name: str) -> str | None:
    try:
        return version(name)
    except PackageNotFoundError:
        return None


def pip(*args: str) -> None:
    command = [sys.executable, "-m", "pip", "install", "--no-index", "--disable-pip-version-check",
               "--no-warn-script-location", "--progress-bar", "off", *args]
    if subprocess.run(command, check=False).returncode != 0:
        sys.exit(f"error: {' '.join(command)} failed; see pip's output above")


def install(bundle: Path) -> None:
    manifest = json.loads((bundle / MANIFEST).read_text(encoding="utf-8"))
    missing = [name for name in manifest["from_image"] if installed(name) is None]
    if missing:
        sys.exit(f"error: this notebook image has no {', '.join(missing)}; choose a GPU image with PyTorch")
    wheel = str(bundle / manifest["project_wheel"])
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as pins:
        pins.write("".join(f"{name}=={installed(name)}\n" for name in manifest["from_image"]))
    try:
        pip("--find-links", str(bundle), "--constraint", pins.name, wheel)
        pip("--no-deps", "--force-reinstall", wheel)  # this build's code, even over an equal version number
    finally:
        os.unlink(pins.name)


def main() -> None:
    bundle = find_bundle(ROOT / "input")
    print(f"code dataset: {bundle}", flush=True)
    install(bundle)
    session = [sys.executable, "-m", "kaggle_kernel.session", "--bundle", str(bundle), "--input", str(ROOT / "input"),
               "--working", str(ROOT / "working"), "--started", str(STARTED)]
    sys.exit(subprocess.run(session, check=False).returncode)


if __name__ == "__main__":
    main()
