"""`crystaldos notebooks` and `crystaldos app` (what `make notebooks` and `make app` run): real servers on 127.0.0.1."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import nbformat
import pytest

from crystaldos.app import DASHBOARD_NOTEBOOK, NOTEBOOKS_DIR, dashboard_command, dashboard_notebook, free_port

ROOT = Path(__file__).resolve().parent.parent


def _get(url: str, token: str | None = None, timeout: float = 2.0) -> bytes:
    request = urllib.request.Request(url, headers={"Authorization": f"token {token}"} if token else {})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return response.read()


def test_notebooks_command_serves_jupyterlab_on_the_notebooks(tmp_path):
    port, token = free_port(), "crystaldos-test"
    log = tmp_path / "lab.log"
    env = {**os.environ, "JUPYTER_TOKEN": token, "JUPYTER_CONFIG_DIR": str(tmp_path / "config"),
           "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime")}
    with open(log, "w") as out:
        process = subprocess.Popen([sys.executable, "-m", "crystaldos.cli", "notebooks", "--port", str(port)],
                                   stdout=out, stderr=subprocess.STDOUT, cwd=tmp_path, env=env)
    try:
        deadline, listing = time.monotonic() + 90, None
        while listing is None and time.monotonic() < deadline:
            assert process.poll() is None, log.read_text()[-3000:]
            try:
                listing = json.loads(_get(f"http://127.0.0.1:{port}/api/contents", token))
            except OSError:
                time.sleep(0.5)
        assert listing is not None, f"JupyterLab did not answer:\n{log.read_text()[-3000:]}"
        names = {entry["name"] for entry in listing["content"]}
        assert {p.name for p in NOTEBOOKS_DIR.glob("*.ipynb")} <= names and len(names & {"01_quickstart.ipynb"}) == 1
        assert b"JupyterLab" in _get(f"http://127.0.0.1:{port}/lab", token)
        assert f"serving JupyterLab on {NOTEBOOKS_DIR} at http://127.0.0.1:{port}/lab" in log.read_text()
        # Bound to the loopback interface only.
        assert re.search(rf"http://127\.0\.0\.1:{port}/lab", log.read_text())
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_app_options_and_errors(tmp_path):
    path = dashboard_notebook(steps=100, folder=tmp_path)
    notebook = nbformat.read(path, as_version=4)
    injected = [c for c in notebook.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert injected and "STEPS = 100" in injected[0].source and "FAST = False" in injected[0].source
    command, url = dashboard_command(port=free_port(), fast=True, folder=tmp_path / "fast")
    assert command[1:3] == ["-m", "voila"] and "--Voila.ip=127.0.0.1" in command and url.startswith("http://127.0.0.1:")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        with pytest.raises(ValueError, match=rf"port {busy.getsockname()[1]} on 127.0.0.1 is in use"):
            dashboard_command(port=busy.getsockname()[1])
    with pytest.raises(ValueError, match="steps must be >= 1"):
        dashboard_notebook(steps=0, folder=tmp_path)
    assert DASHBOARD_NOTEBOOK.exists()


def test_make_targets_run_these_commands():
    dry = subprocess.run(["make", "-n", "app", "notebooks", "PORT=8899", "STEPS=100"], cwd=ROOT, capture_output=True, text=True,
                         env={**os.environ, "MAKEFLAGS": ""})
    assert dry.returncode == 0, dry.stderr
    assert re.search(r"bin/crystaldos app --port 8899 --steps 100", dry.stdout), dry.stdout
    assert re.search(r"bin/crystaldos notebooks --port 8899", dry.stdout), dry.stdout
