"""The README's Python examples run as written (with the shipped data and models)."""

import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_examples_run_as_written():
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    assert len(blocks) >= 2, "the README lost its usage examples"
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, str(README), "exec"), namespace)  # noqa: S102 - the README is this repository's own text
    assert len(namespace["results"]) == 4 and len(namespace["results"][0].trajectory) > 2
    assert namespace["dos"].dims == ("site", "energy")
