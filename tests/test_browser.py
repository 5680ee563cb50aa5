"""The real Streamlit app in headless Chromium: the Generators page draws its figure.

Screenshots go to tests/_out/ (git-ignored), so `make test` leaves `git status` clean;
`make screenshots` (LAB_UPDATE_SCREENSHOTS=1) refreshes the README's copies in assets/.
"""
from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from conftest import ROOT

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-quic",
                 "--no-first-run", "--disable-component-update", "--disable-sync"]
SHOTS = ROOT / ("assets" if os.environ.get("LAB_UPDATE_SCREENSHOTS") == "1" else "tests/_out")
SCREENSHOT = SHOTS / "app_screenshot.png"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_healthy(proc, url: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            out = proc.stdout.read().decode(errors="replace") if proc.stdout else ""
            pytest.fail(f"streamlit exited with code {proc.returncode}:\n{out[-3000:]}")
        try:
            with urllib.request.urlopen(url + "/_stcore/health", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.3)
    pytest.fail(f"streamlit did not answer on {url} within {timeout:.0f} s")


@contextlib.contextmanager
def app_page(path: str):
    """The Streamlit app served on 127.0.0.1 and a headless Chromium page opened at ``path``."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing; install it with `apt-get update && apt-get install -y chromium` "
                    "(or `make chromium`)")
    from playwright.sync_api import sync_playwright

    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "app/Home.py", "--server.port", str(port),
         "--server.address", "127.0.0.1", "--server.headless", "true", "--browser.gatherUsageStats", "false"],
        cwd=ROOT, env=dict(os.environ), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        _wait_healthy(proc, url)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                page = browser.new_page(viewport={"width": 1400, "height": 1750})
                page.goto(url + path, wait_until="domcontentloaded")
                yield page
            finally:
                browser.close()
    finally:
        proc.kill()
        proc.wait(timeout=10)


def rendered(page, heading: str, min_plots: int, timeout: int = 120_000):
    """Wait until the page shows at least ``min_plots`` plotly charts and its script run has finished (the status
    widget is gone); check the heading is visible and no exception is shown. Returns the first chart."""
    first = page.locator('[data-testid="stMain"] .js-plotly-plot').first
    first.wait_for(state="visible", timeout=90_000)
    page.wait_for_function(
        f"() => document.querySelectorAll('.js-plotly-plot').length >= {int(min_plots)}"
        " && !document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=timeout)
    assert page.get_by_role("heading", name=heading).first.is_visible()
    assert not page.locator('[data-testid="stException"]').count(), \
        page.locator('[data-testid="stException"]').first.inner_text()
    return first


def screenshot(page, path: Path) -> None:
    page.wait_for_timeout(500)  # let WebGL finish painting
    path.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(path), full_page=True)


@pytest.mark.browser
def test_generators_page_in_chromium(app_students):
    with app_page("/Generators") as page:
        plot = rendered(page, "Generators", 2, timeout=90_000)
        titles = plot.locator(".annotation-text").all_text_contents()
        assert any(t.startswith("teacher @") for t in titles), titles
        assert any(t.startswith(f"{app_students[0]} @") for t in titles), (app_students, titles)
        n_traces = plot.evaluate("gd => gd.data.length")
        assert n_traces >= 4, n_traces  # teacher + one student at 1, 2, 4 NFE
        assert plot.locator(".gl-container canvas, .scatterlayer .trace").count() >= 1
        screenshot(page, SCREENSHOT)
    assert SCREENSHOT.stat().st_size > 10_000


DIGITS_SCREENSHOT = SHOTS / "app_digits.png"


@pytest.mark.browser
def test_digits_page_in_chromium():
    """The Digits page draws its image grids (sample grid, x0 view, guidance sweep) from the shipped digits zoo.
    Its screenshot is the README's assets/app_digits.png (see the module docstring)."""
    with app_page("/Digits") as page:
        first = rendered(page, "Digits", 3)
        assert first.evaluate("gd => gd.data[0].type") == "image"
        screenshot(page, DIGITS_SCREENSHOT)
    assert DIGITS_SCREENSHOT.stat().st_size > 10_000


KD_SCREENSHOT = SHOTS / "app_kd.png"


@pytest.mark.browser
def test_knowledge_distillation_page_in_chromium():
    """The Knowledge distillation page draws the divergence explorer and trains kd vs scratch live (its progress
    bar ends in the run comparison, CKA heatmaps, embeddings and reliability diagrams). Its screenshot is the
    README's assets/app_kd.png."""
    with app_page("/Knowledge_distillation") as page:
        rendered(page, "Knowledge distillation", 7, timeout=180_000)
        types = page.locator('[data-testid="stMain"] .js-plotly-plot').evaluate_all(
            "gds => gds.map(gd => gd.data.map(t => t.type))")
        flat = [t for ts in types for t in ts]
        assert "heatmap" in flat and "bar" in flat, flat  # CKA heatmaps; explorer / reliability bars
        screenshot(page, KD_SCREENSHOT)
    assert KD_SCREENSHOT.stat().st_size > 10_000
