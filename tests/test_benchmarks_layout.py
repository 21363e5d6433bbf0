"""The benchmarks are a package grouped by question: every script imports as ``benchmarks.<folder>.<name>`` (no bare
sibling imports, no sys.path edits), every folder's README names each of its scripts with its command, and the links
of those READMEs and of the research record lead somewhere."""

import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = ROOT / "benchmarks"
SCRIPTS = sorted(p for p in BENCHMARKS.glob("*/*.py") if p.name != "__init__.py")
LINK = re.compile(r"\]\(([^)#]+)(?:#[^)]*)?\)")


def module_name(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts)


def test_no_loose_scripts_outside_the_question_folders():
    assert SCRIPTS, "no benchmark scripts found"
    loose = {p.name for p in BENCHMARKS.glob("*.py")} - {"__init__.py", "tables.py", "reconstruction_rows.py"}
    assert not loose, f"group these under a question folder: {sorted(loose)}"


@pytest.mark.parametrize("path", SCRIPTS, ids=module_name)
def test_every_script_imports_as_a_module_and_its_readme_gives_its_command(path):
    source = path.read_text()
    assert "sys.path" not in source
    importlib.import_module(module_name(path))  # fails on a bare sibling import (``from tables import ...``)
    readme = (path.parent / "README.md").read_text()
    assert f"`{path.name}`" in readme, f"{path.parent.name}/README.md does not list {path.name}"
    assert f"python -m {module_name(path)}" in readme, f"{path.parent.name}/README.md gives no command for {path.name}"


def test_benchmark_and_research_links_resolve():
    pages = [BENCHMARKS / "README.md", *BENCHMARKS.glob("*/README.md"), *(ROOT / "docs" / "research").glob("*.md")]
    broken = [f"{page.relative_to(ROOT)}: {target}" for page in pages for target in LINK.findall(page.read_text())
              if not target.startswith("http") and not (page.parent / target).exists()]
    assert not broken, broken
    listed = {line.split("](")[1].split("/")[0] for line in (BENCHMARKS / "README.md").read_text().splitlines()
              if line.startswith("| [")}
    assert listed == {p.name for p in BENCHMARKS.iterdir() if (p / "__init__.py").exists()}
