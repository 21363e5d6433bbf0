"""The guidance dashboard in a real browser: ``crystaldos app`` (what ``make app`` runs) serves
notebooks/02_guidance_dashboard.ipynb with voila, Debian's chromium
(driven by Playwright) moves a slider, presses Run, and we check the 3D views and the DOS plot on screen.

Screenshots go to ``$CRYSTALDOS_ARTIFACTS`` (default ``build/test-artifacts``). ``make test`` installs chromium
and sets ``CRYSTALDOS_REQUIRE_BROWSER=1``, so there a missing browser fails instead of skipping.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
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
    """Serve the dashboard as ``make app`` does (``crystaldos app``, here in fast mode) on 127.0.0.1; yields the printed URL."""
    port = _free_port()
    log = tmp_path / "app.log"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    with open(log, "w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "crystaldos.cli", "app", "--fast", "--port", str(port)],
            stdout=out, stderr=subprocess.STDOUT, cwd=tmp_path, env=env,
        )
    try:
        deadline = time.monotonic() + 60
        while "serving" not in log.read_text() and time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.2)
        printed = re.search(r"serving the guidance dashboard at (http://127\.0\.0\.1:(\d+)/)", log.read_text())
        assert printed, f"crystaldos app printed no URL:\n{log.read_text()[-3000:]}"
        url = printed.group(1)
        assert int(printed.group(2)) == port
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

            # Export: the CIF files and the DOS plot come to the browser as downloads.
            page.locator(".crystaldos-export button, button.crystaldos-export").first.click()
            link = page.locator(".crystaldos-downloads a", has_text="cfg_sample0")
            link.wait_for(timeout=30_000)
            with page.expect_download() as download_info:
                link.click()
            download = download_info.value
            cif = Path(download.path()).read_text()
            assert download.suggested_filename.endswith(".cif") and "_cell_length_a" in cif and "_atom_site_fract_x" in cif

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

            try:
                _design_in_the_design_tab(page)
            except Exception:
                page.screenshot(path=str(ARTIFACTS / "design_failure.png"), full_page=True)
                raise
        finally:
            browser.close()


def _design_in_the_design_tab(page) -> None:
    """The Design tab: choose CsCl in the crystal box, edit its DOS (shift), design two candidates, see them ranked,
    in 3D and over the target, and export it."""
    box = page.locator(".crystaldos-dashboard input[list]").first  # the crystal box (a Combobox: an input with a datalist)
    box.fill("CsCl · aflow-240")
    box.press("Enter")
    page.wait_for_function("() => /CsCl/.test(document.querySelector('.crystaldos-view-target')?.parentElement?.innerText || '')",
                           timeout=30_000)
    page.locator(".lm-TabBar-tab", has_text="Design").click()
    page.wait_for_selector(".crystaldos-design-panel", state="visible", timeout=30_000)
    target_plot = page.locator(".crystaldos-design-dos").screenshot()
    shift = page.locator(".widget-slider", has=page.locator("label", has_text="shift (eV)"))
    shift.locator(".noUi-handle").focus()
    for _ in range(2):
        page.keyboard.press("ArrowRight")
    page.wait_for_function("el => el.innerText.trim() === '0.20'", arg=shift.locator(".widget-readout").element_handle(),
                           timeout=10_000)
    page.wait_for_timeout(1500)
    edited_plot = page.locator(".crystaldos-design-dos").screenshot()
    assert _pixels(target_plot).shape != _pixels(edited_plot).shape or np.abs(
        _pixels(target_plot) - _pixels(edited_plot)).mean() > 0.3, "the edited target was not drawn"
    candidates = page.locator(".widget-slider", has=page.locator("label", has_text="candidates"))
    candidates.locator(".noUi-handle").focus()
    page.keyboard.press("Home")
    page.keyboard.press("ArrowRight")  # two candidates: with 20 steps from noise one of CsCl's two survives (seed 0)
    page.wait_for_function("el => el.innerText.trim() === '2'", arg=candidates.locator(".widget-readout").element_handle(),
                           timeout=10_000)
    page.locator(".crystaldos-design button, button.crystaldos-design").first.click()
    page.wait_for_function(
        "() => { const s = document.querySelector('.crystaldos-design-status'); return s && /done:|no candidate|error/.test(s.innerText); }",
        timeout=300_000,
    )
    status = page.locator(".crystaldos-design-status").inner_text()
    assert "done:" in status, status
    assert "rank" in page.locator(".crystaldos-design-table").inner_text()
    page.wait_for_selector(".crystaldos-view-design canvas", timeout=60_000)
    page.wait_for_timeout(3000)
    page.screenshot(path=str(ARTIFACTS / "dashboard_design.png"), full_page=True)
    assert _not_blank(page.locator(".crystaldos-view-design canvas").screenshot()), "the candidate's view is blank"
    page.locator(".crystaldos-design-export button, button.crystaldos-design-export").first.click()
    link = page.locator(".crystaldos-design-downloads a", has_text="candidate0")
    link.wait_for(timeout=30_000)
    with page.expect_download() as download_info:
        link.click()
    assert "_cell_length_a" in Path(download_info.value.path()).read_text()
