"""The packages of ``pipeline``: a name is imported from its module; importing one module loads only what it needs."""

from __future__ import annotations

import ast
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import pipeline

REPO = Path(__file__).resolve().parents[1]
PACKAGES = sorted(m.name for m in pkgutil.walk_packages(pipeline.__path__, "pipeline.") if m.ispkg)


@pytest.mark.parametrize("name", PACKAGES)
def test_a_package_init_re_exports_nothing(name):
    """A list of re-exported names drifts from its modules; the modules are what the pipeline imports.
    A family's ``__init__`` is the one exception: it defines the family (its ``FAMILY``)."""
    path = REPO / name.replace(".", "/") / "__init__.py"
    body = ast.parse(path.read_text(encoding="utf-8")).body
    if name.startswith("pipeline.models.families."):
        assert any(isinstance(node, ast.Assign) and node.targets[0].id == "FAMILY" for node in body)
        return
    assert len(body) == 1 and isinstance(body[0], ast.Expr), f"{path} holds more than its docstring"


def _loads(code: str, module: str = "torch") -> bool:
    done = subprocess.run([sys.executable, "-c", f"{code}\nimport sys; print({module!r} in sys.modules)"], cwd=REPO,
                          capture_output=True, text=True, check=True)
    return done.stdout.strip().splitlines()[-1] == "True"



def test_reading_the_label_set_does_not_load_torch():
    assert not _loads("from pipeline.data.labels import load_labels; load_labels()")


def test_listing_the_families_and_their_sections_does_not_load_torch():
    assert not _loads("from pipeline.models import registry; print(registry.names(), registry.sections())")


def test_a_family_package_and_its_schema_load_without_pydantic():
    """The model builders and benchmarks run on a bare GPU box with torch alone."""
    assert not _loads("import pipeline.models.families.maskrcnn.detector", "pydantic")
    assert _loads("from pipeline.models import registry", "pydantic")  # the check can tell
