"""The guidance dashboard in a real browser: voila serves notebooks/02_guidance_dashboard.ipynb, Debian's chromium
(driven by Playwright) moves a slider, presses Run, and we check the 3D views and the DOS plot on screen.

Screenshots go to ``$CRYSTALDOS_ARTIFACTS`` (default ``build/test-artifacts``). ``make test`` installs chromium
and sets ``CRYSTALDOS_REQUIRE_BROWSER=1``, so there a missing browser fails instead of skipping.
"""

from __future__ import annotations

import io
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import nbformat
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = ROOT / "notebooks" / "02_guidance_dashboard.ipynb"
ARTIFACTS = Path(os.environ.get("CRYSTALDOS_ARTIFACTS", ROOT / "build" / "test-artifacts"))
# Headless chromium on a machine with no GPU and no outside network: software WebGL (SwiftShader) for NGL,
# and no background connections (they are refused here, many at a time).
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--use-angle=swiftshader", "--enable-unsafe-swiftshader", "--disable-quic",
    "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
]


def _chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        if os.environ.get("CRYSTALDOS_REQUIRE_BROWSER"):
            pytest.fail("chromium is not installed (make test installs Debian's chromium package)")
        pytest.skip("chromium not installed; `apt-get install chromium` or run `make test`")
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for_http(url: str, process: subprocess.Popen, log: Path, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"voila exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"voila did not answer at {url} within {timeout} s:\n{log.read_text()[-3000:]}")


@pytest.fixture
def voila_dashboard(tmp_path):
    """Serve the dashboard notebook (fast mode injected as papermill would) with voila on 127.0.0.1; yields the URL."""
    from papermill.iorw import load_notebook_node
    from papermill.parameterize import parameterize_notebook

    notebook = parameterize_notebook(load_notebook_node(str(NOTEBOOK)), {"FAST": True})
    path = tmp_path / NOTEBOOK.name
    nbformat.write(notebook, path)
    port = _free_port()
    log = tmp_path / "voila.log"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    with open(log, "w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "voila", str(path), "--no-browser", f"--port={port}", "--Voila.ip=127.0.0.1",
             "--VoilaConfiguration.show_tracebacks=True"],
            stdout=out, stderr=subprocess.STDOUT, cwd=tmp_path, env=env,
        )
    url = f"http://127.0.0.1:{port}/"
    try:
        _wait_for_http(url, process, log)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()


def _pixels(png: bytes) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.int16)


def _not_blank(png: bytes) -> bool:
    """A rendered NGL canvas has structure: enough variation and several distinct colours (atoms, bonds, cell)."""
    pixels = _pixels(png)
    colours = np.unique(pixels.reshape(-1, 3) // 16, axis=0)
    return pixels.std() > 2.0 and len(colours) >= 4


def test_dashboard_in_chromium_runs_cbg_and_cfg(voila_dashboard):
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=_chromium(), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 1500})
            page.goto(voila_dashboard, timeout=180_000)
            page.wait_for_selector(".crystaldos-dashboard", timeout=180_000)
            page.wait_for_selector(".crystaldos-view-target canvas", timeout=60_000)
            page.wait_for_timeout(3000)  # let NGL draw
            page.screenshot(path=str(ARTIFACTS / "dashboard_before.png"), full_page=True)
            assert _not_blank(page.locator(".crystaldos-view-target canvas").screenshot()), "target view is blank"
            dos_before = page.locator(".crystaldos-dos-plot").screenshot()

            # Move the CFG omega slider with the keyboard, as a user would, and check the readout follows.
            omega = page.locator(".widget-slider", has=page.locator("label", has_text="CFG ω"))
            readout = omega.locator(".widget-readout")
            assert readout.inner_text().strip() == "1.00"
            omega.locator(".noUi-handle").focus()
            for _ in range(5):
                page.keyboard.press("ArrowRight")
            page.wait_for_function("el => el.innerText.trim() === '1.50'", arg=readout.element_handle(), timeout=10_000)

            page.locator(".crystaldos-run button, button.crystaldos-run").first.click()
            page.wait_for_function(
                "() => { const s = document.querySelector('.crystaldos-status'); return s && /done:|error/.test(s.innerText); }",
                timeout=300_000,
            )
            status = page.locator(".crystaldos-status").inner_text()
            assert "done:" in status and "ω = 1.5" in status, status
            page.wait_for_timeout(3000)
            page.screenshot(path=str(ARTIFACTS / "dashboard_after.png"), full_page=True)
            for name in ("cbg", "cfg"):
                canvas = page.locator(f".crystaldos-view-{name} canvas").screenshot()
                (ARTIFACTS / f"view_{name}.png").write_bytes(canvas)
                assert _not_blank(canvas), f"{name} view is blank"
            dos_after = page.locator(".crystaldos-dos-plot").screenshot()
            (ARTIFACTS / "dos_after.png").write_bytes(dos_after)
            before, after = _pixels(dos_before), _pixels(dos_after)
            assert before.shape != after.shape or np.abs(before - after).mean() > 1.0, "the DOS plot did not change"
            assert "CBG" in page.locator(".crystaldos-metrics").inner_text()

            # Linked cameras: dragging the target view rotates the CFG view too.
            cfg_before = page.locator(".crystaldos-view-cfg canvas").screenshot()
            box = page.locator(".crystaldos-view-target canvas").bounding_box()
            x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
            page.mouse.move(x, y)
            page.mouse.down()
            page.mouse.move(x + 80, y + 30, steps=10)
            page.mouse.up()
            page.wait_for_timeout(2000)
            cfg_after = page.locator(".crystaldos-view-cfg canvas").screenshot()
            assert np.abs(_pixels(cfg_before) - _pixels(cfg_after)).mean() > 0.5, "the CFG view did not follow the target view"

            # Trajectory playback: moving the frame slider moves the atoms inside the same view.
            page.wait_for_selector(".crystaldos-trajectory canvas", timeout=60_000)
            page.wait_for_timeout(2000)
            trajectory = page.locator(".crystaldos-trajectory canvas")
            first_frame = trajectory.screenshot()
            frame_slider = page.locator(".widget-slider", has=page.locator("label", has_text="frame"))
            frame_slider.locator(".noUi-handle").focus()
            page.keyboard.press("End")
            page.wait_for_timeout(2500)
            last_frame = trajectory.screenshot()
            (ARTIFACTS / "trajectory_last_frame.png").write_bytes(last_frame)
            assert _not_blank(first_frame) and np.abs(_pixels(first_frame) - _pixels(last_frame)).mean() > 0.5
        finally:
            browser.close()
