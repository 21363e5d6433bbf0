"""Every notebook in notebooks/ executes top to bottom (papermill, fast mode) on the embedded default."""

from pathlib import Path

import nbformat
import papermill
import pytest

NOTEBOOK_DIR = Path(__file__).resolve().parent.parent / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
EXPECTED = ["01_quickstart.ipynb", "02_guidance_dashboard.ipynb", "03_reconstruction_benchmark.ipynb", "04_inverse_design.ipynb"]


def _outputs(notebook) -> list:
    return [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_runs_in_fast_mode(path, tmp_path):
    executed = tmp_path / path.name
    # Raises PapermillExecutionError, naming the cell, on any error.
    papermill.execute_notebook(str(path), str(executed), parameters={"FAST": True, "OUT": str(tmp_path / "out")},
                               kernel_name="python3", cwd=str(NOTEBOOK_DIR), progress_bar=False)
    notebook = nbformat.read(executed, as_version=4)
    outputs = _outputs(notebook)
    assert not [o for o in outputs if o.output_type == "error"]
    rich = [o for o in outputs if o.output_type in ("display_data", "execute_result")]
    # Every notebook shows a plot or a widget (the dashboard is one widget).
    assert any("image/png" in o.get("data", {}) or "application/vnd.jupyter.widget-view+json" in o.get("data", {}) for o in rich)


def test_the_four_documented_notebooks_exist_with_a_fast_parameter():
    names = [p.name for p in NOTEBOOKS]
    for name in EXPECTED:
        assert name in names
        notebook = nbformat.read(NOTEBOOK_DIR / name, as_version=4)
        tagged = [c for c in notebook.cells if "parameters" in c.metadata.get("tags", [])]
        assert len(tagged) == 1 and "FAST = False" in tagged[0].source


def test_notebooks_are_committed_without_outputs():
    for path in NOTEBOOKS:
        assert not _outputs(nbformat.read(path, as_version=4)), f"{path.name} has stored outputs"
