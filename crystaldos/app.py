"""Serve the notebooks and the guidance dashboard: ``crystaldos app`` and ``crystaldos notebooks``.

Both bind to 127.0.0.1 (a class or a demo on one machine; use an SSH tunnel to reach it from another) and
print the URL to open. ``make app`` and ``make notebooks`` call these commands.

>>> serve_dashboard(port=8866, steps=100)      # voila on notebooks/02_guidance_dashboard.ipynb  # doctest: +SKIP
"""

from __future__ import annotations

import os
import socket
import sys
import tempfile
from pathlib import Path

NOTEBOOKS_DIR = Path(__file__).resolve().parents[1] / "notebooks"
DASHBOARD_NOTEBOOK = NOTEBOOKS_DIR / "02_guidance_dashboard.ipynb"
HOST = "127.0.0.1"


def free_port(host: str = HOST) -> int:
    """A TCP port that is free on ``host`` now (the OS picks it)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _check_port(port: int) -> int:
    if not 1 <= int(port) <= 65535:
        raise ValueError(f"port must be in 1 ... 65535, got {port}")
    with socket.socket() as s:
        try:
            s.bind((HOST, int(port)))
        except OSError as err:
            raise ValueError(f"port {port} on {HOST} is in use ({err.strerror}); pick another or leave --port out") from err
    return int(port)


def _require(module: str, extra: str) -> None:
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise SystemExit(f"{module} is not installed: `make notebooks` installs it, or "
                         f"`{sys.executable} -m pip install -e '.[{extra}]'`")


def dashboard_notebook(steps: int | None = None, fast: bool = False, notebook: Path = DASHBOARD_NOTEBOOK,
                       folder: Path | None = None) -> Path:
    """The dashboard notebook with its parameters set as papermill does (a copy in ``folder``, default a temp folder).

    Args:
        steps: default reverse steps of the dashboard (None: the notebook's default, 50).
        fast: the notebook's ``FAST`` mode (20 steps; the tests use it).
    """
    import nbformat
    from papermill.iorw import load_notebook_node
    from papermill.parameterize import parameterize_notebook

    notebook = Path(notebook)
    if not notebook.exists():
        raise FileNotFoundError(f"no notebook {notebook}")
    if steps is not None and int(steps) < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    parameters = {"FAST": bool(fast)}
    if steps is not None:
        parameters["STEPS"] = int(steps)
    node = parameterize_notebook(load_notebook_node(str(notebook)), parameters)
    folder = Path(folder) if folder is not None else Path(tempfile.mkdtemp(prefix="crystaldos-app-"))
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / notebook.name
    nbformat.write(node, path)
    return path


def dashboard_command(port: int | None = None, steps: int | None = None, fast: bool = False,
                      folder: Path | None = None) -> tuple[list[str], str]:
    """(voila command line, URL) that serves the dashboard as an app on 127.0.0.1."""
    _require("voila", "notebooks")
    port = free_port() if port is None else _check_port(port)
    path = dashboard_notebook(steps, fast, folder=folder)
    command = [sys.executable, "-m", "voila", str(path), "--no-browser", f"--port={port}", f"--Voila.ip={HOST}",
               "--VoilaConfiguration.show_tracebacks=True"]
    return command, f"http://{HOST}:{port}/"


def notebooks_command(port: int | None = None, open_browser: bool = False,
                      root: Path = NOTEBOOKS_DIR) -> tuple[list[str], str]:
    """(JupyterLab command line, URL) on ``root`` (the notebooks) bound to 127.0.0.1."""
    _require("jupyterlab", "notebooks")
    port = free_port() if port is None else _check_port(port)
    command = [sys.executable, "-m", "jupyterlab", f"--ServerApp.ip={HOST}", f"--ServerApp.port={port}",
               "--ServerApp.port_retries=0", f"--ServerApp.root_dir={root}"]
    if not open_browser:
        command.append("--no-browser")
    if hasattr(os, "geteuid") and os.geteuid() == 0:  # containers and CI run as root; JupyterLab refuses without this
        command.append("--allow-root")
    return command, f"http://{HOST}:{port}/lab"


def _exec(command: list[str], url: str, what: str) -> None:
    """Print the URL, then become the server (so that stopping this process stops it)."""
    print(f"crystaldos: serving {what} at {url}  (Ctrl-C stops it)", flush=True)
    os.execv(command[0], command)


def serve_dashboard(port: int | None = None, steps: int | None = None, fast: bool = False) -> None:
    """Serve the guidance dashboard with voila on 127.0.0.1 (never returns)."""
    command, url = dashboard_command(port, steps, fast)
    _exec(command, url, "the guidance dashboard")


def serve_notebooks(port: int | None = None, open_browser: bool = False) -> None:
    """JupyterLab on the notebooks folder, on 127.0.0.1 (never returns). JupyterLab prints the URL with its token."""
    command, url = notebooks_command(port, open_browser)
    _exec(command, url, f"JupyterLab on {NOTEBOOKS_DIR}")


def add_arguments(app_parser, notebooks_parser) -> None:
    """The options of ``crystaldos app`` and ``crystaldos notebooks``."""
    app_parser.add_argument("--port", type=int, default=None, help="port on 127.0.0.1 (default: a free one)")
    app_parser.add_argument("--steps", type=int, default=None,
                            help="the dashboard's default reverse steps (default: the notebook's, 50)")
    app_parser.add_argument("--fast", action="store_true", help="the notebooks' fast mode (20 steps), as in the tests")
    app_parser.set_defaults(func=lambda a: serve_dashboard(a.port, a.steps, a.fast))
    notebooks_parser.add_argument("--port", type=int, default=None, help="port on 127.0.0.1 (default: a free one)")
    notebooks_parser.add_argument("--open", action="store_true", help="open a browser tab")
    notebooks_parser.set_defaults(func=lambda a: serve_notebooks(a.port, a.open))


__all__ = ["serve_dashboard", "serve_notebooks", "dashboard_command", "notebooks_command", "dashboard_notebook", "free_port"]
