"""The README: its Python examples run as written, its headline table is the committed results', it stays short,
and its links lead somewhere."""

import os
import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"


def test_readme_python_examples_run_as_written(tmp_path):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    assert len(blocks) >= 2, "the README lost its usage examples"
    namespace: dict = {}
    cwd = os.getcwd()
    os.chdir(tmp_path)  # the examples write target.cif
    try:
        for block in blocks:
            exec(compile(block, str(README), "exec"), namespace)  # noqa: S102 - the README is this repository's own text
    finally:
        os.chdir(cwd)
    assert len(namespace["results"]) == 4 and len(namespace["results"][0].trajectory) > 2
    assert namespace["dos"].dims == ("site", "energy") and namespace["dos"].sizes["site"] == 2
    assert type(namespace["cdos"]).__name__ == "CompleteDos" and (tmp_path / "target.cif").exists()


def test_the_headline_table_is_generated_from_the_committed_results():
    from crystaldos.experiments.headline import BEGIN, END, headline_table, match_rates

    text = README.read_text()
    block = text.split(BEGIN, 1)[1].split(END, 1)[0]
    assert block.strip() == headline_table().strip()  # python -m crystaldos.experiments.headline --write
    rates = match_rates()
    assert f"{rates[('cfg', 200)]:.1f} %" in block and f"{rates[('cfg', 1000)]:.1f} %" in block
    assert 0 < rates[("cfg", 1000)] < rates[("cfg", 500)] < rates[("cfg", 200)] <= 100


def test_the_readme_is_a_front_door_and_its_links_resolve():
    text = README.read_text()
    assert len(text.splitlines()) <= 200
    for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", text):
        if not target.startswith("http"):
            assert (ROOT / target).exists(), target
    for page in (ROOT / "docs" / "guide").glob("*.md"):
        for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", page.read_text()):
            if not target.startswith("http"):
                assert (page.parent / target).exists(), f"{page.name}: {target}"
