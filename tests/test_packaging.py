"""pyproject.toml and environment.yml must agree, and torch must stay pinned to the CPU build."""

import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~ \[]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _conda_names() -> set[str]:
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    names = set()
    for dep in env["dependencies"]:
        if isinstance(dep, dict):
            names |= {_name(d) for d in dep["pip"] if not d.startswith("-")}
        else:
            names.add(_name(dep))
    return names - {"python", "pip"}


def test_environment_lists_the_same_packages_as_pyproject():
    project = _pyproject()
    pip_names = {_name(d) for d in project["dependencies"]}
    for extra in project["optional-dependencies"].values():
        pip_names |= {_name(d) for d in extra}
    assert pip_names == _conda_names()


def test_torch_is_pinned_to_the_cpu_series_everywhere():
    torch_req = next(d for d in _pyproject()["dependencies"] if _name(d) == "torch")
    assert torch_req.replace(" ", "") == "torch==2.13.*"
    assert "torch==2.13.*" in (ROOT / "environment.yml").read_text()
    assert "torch==2.13.0" in (ROOT / "Makefile").read_text()


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    assert "make test" in readme and "make demo" in readme
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def test_lower_layers_never_import_upper_ones():
    """Lower layers (dos, geometry, device, checkpoint, options, experiments.parts, labellers, model) never import upper ones."""
    import ast

    package = ROOT / "crystaldos"
    lower = [package / f"{name}.py" for name in ("dos", "geometry", "device", "checkpoint", "options", "experiments/parts")]
    lower += sorted((package / "labellers").glob("*.py")) + sorted((package / "model").glob("*.py"))
    upper = ("crystaldos.sampler", "crystaldos.train", "crystaldos.widgets", "crystaldos.evaluate")
    offenders = []
    for path in lower:
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            offenders += [f"{path.name}: {n}" for n in names if n.startswith(upper)]
    assert not offenders, offenders


def test_labelling_and_reading_data_do_not_import_torch_and_the_public_names_still_import():
    """A labelling worker or a data command starts without torch and torch-geometric (seconds to import); the
    package's names load on first use."""
    import subprocess
    import sys

    check = ("import sys, crystaldos, crystaldos.labellers, crystaldos.data.store; "
             "assert not {'torch', 'torch_geometric'} & set(sys.modules), sorted(m for m in sys.modules if 'torch' in m)[:5]; "
             "from crystaldos import Sampler, load_dataset, DosGrid, CrystalDOS; from crystaldos.data import collate; "
             "assert 'torch_geometric' in sys.modules and crystaldos.sampler.Sampler is Sampler; "
             "ok = False\n"
             "try:\n    crystaldos.no_such_name\nexcept AttributeError:\n    ok = True\n"
             "assert ok")
    result = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
