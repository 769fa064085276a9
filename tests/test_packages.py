"""The packages of ``pipeline``: each states its public names, and reading one loads only what it needs."""

from __future__ import annotations

import importlib
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import pipeline

REPO = Path(__file__).resolve().parents[1]
PACKAGES = [m.name for m in pkgutil.iter_modules(pipeline.__path__, "pipeline.") if m.ispkg]


@pytest.mark.parametrize("name", PACKAGES)
def test_every_public_name_resolves_and_none_hides_a_module(name):
    package = importlib.import_module(name)
    modules = {m.name for m in pkgutil.iter_modules(package.__path__)}
    assert package.__all__, f"{name} states no public names"
    # `from pipeline.x import m` must give the module m: a name equal to it would be returned instead
    assert not set(package.__all__) & modules, f"{name} exports a name that is also one of its modules"
    for public in package.__all__:
        assert getattr(package, public) is not None


def test_reading_the_label_set_through_its_package_does_not_load_torch():
    code = "import sys; from pipeline.data import load_labels; load_labels(); print('torch' in sys.modules)"
    loaded = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert loaded.stdout.strip() == "False"
