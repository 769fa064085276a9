"""The documentation: every link and every citation in the code points at a file and a section that exist."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCS = sorted((REPO / "docs").glob("*.md"))
CODE = [p for folder in ("pipeline", "stages", "kaggle_kernel", "benchmarks", "tests")
        for p in (REPO / folder).rglob("*.py")]
CODE += [REPO / "params.yaml", REPO / "kaggle_kernel" / "params.kaggle.yaml", REPO / "dvc.yaml", REPO / "Makefile"]


def headings(path: Path) -> set[str]:
    return {line.lstrip("#").strip() for line in path.read_text(encoding="utf-8").splitlines() if line.startswith("#")}


@pytest.mark.parametrize("page", [REPO / "README.md", *DOCS], ids=lambda p: p.name)
def test_every_relative_link_leads_to_a_file(page):
    for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", page.read_text(encoding="utf-8")):
        found = page.parent / target
        tracked = found.with_name(found.name + ".dvc").is_file()  # a picture DVC keeps (dvc pull), not git
        assert found.exists() or tracked, f"{page.name} links to {target}, which does not exist"


def test_every_citation_of_the_docs_names_a_page_and_a_section_that_exist():
    cited = 0
    for path in CODE + DOCS:
        text = path.read_text(encoding="utf-8")
        for page, section in re.findall(r"docs/([a-z_]+\.md)(?:, [\"']([^\"']+)[\"'])?", text):
            cited += 1
            assert (REPO / "docs" / page).is_file(), f"{path.relative_to(REPO)} cites docs/{page}"
            if section:
                assert section in headings(REPO / "docs" / page), f"{path.relative_to(REPO)}: no {section!r} in {page}"
    assert cited > 10, "the code cites the competition's facts from docs/"


def test_the_readme_starts_with_the_two_commands_and_stays_short():
    text = (REPO / "README.md").read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 200
    first_block = text.split("```bash", 1)[1].split("```", 1)[0]
    assert [line.split()[:2] for line in first_block.strip().splitlines()] == [["make", "demo"], ["make", "test"]]


COMMAND = re.compile(r"(python -m (?:stages|kaggle_kernel)\.[a-z_]+|(?:benchmarks|compare)/[a-z_]+\.py)([^`|#\n]*)")


def _shown_commands() -> dict[str, set[str]]:
    """Each command that README and docs show, with every option they give it."""
    shown: dict[str, set[str]] = {}
    for page in [REPO / "README.md", *DOCS]:
        for command, rest in COMMAND.findall(page.read_text(encoding="utf-8")):
            shown.setdefault(command, set()).update(re.findall(r"(--[a-z][a-z-]*)", rest))
    return shown


def test_every_command_the_docs_show_exists_with_the_options_they_give_it():
    """Each shown command's ``--help`` runs and lists every option shown with it (all started at once)."""
    running = {}
    for command, options in sorted(_shown_commands().items()):
        args = command.split()[1:] if command.startswith("python") else [command]
        running[command] = (options, subprocess.Popen([sys.executable, *args, "--help"], cwd=REPO, text=True,
                                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE))
    assert len(running) >= 8, "README and docs show the stages' and benchmarks' commands"
    for command, (options, process) in running.items():
        out, err = process.communicate(timeout=300)
        assert process.returncode == 0, f"{command} --help: {err}"
        assert not {o for o in options if o not in out}, f"{command} --help lacks an option the docs use"


PATH_NAMED = re.compile(r"(?<![\w/.-])((?:pipeline|stages|tests|benchmarks|tools|kaggle_kernel|compare)/[\w./-]*\w)")


def test_every_project_path_the_docs_name_exists():
    named = 0
    for page in [REPO / "README.md", *DOCS]:
        for path in PATH_NAMED.findall(page.read_text(encoding="utf-8")):
            if "<" in path or path.endswith(".cache"):
                continue
            named += 1
            assert (REPO / path).exists(), f"{page.name} names {path}, which does not exist"
    assert named > 30
