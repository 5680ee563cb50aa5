"""Shared helpers of the browser tests: one real `streamlit run` per test process, Debian's Chromium driven by
Playwright, and the stable hooks the tests read (never CSS classes of Streamlit's own styling):

- ``[data-testid="stApp"][data-test-script-state]``: "running" while a script (or fragment) run is on, then
  "notRunning"; :func:`settle` and :func:`rerun` wait on it.
- a plotly chart's ``gd._fullData`` (the traces as the browser holds them, numbers decoded): :func:`traces`.
- a dataframe's cells: the accessible ``<table>`` Streamlit's grid keeps beside its canvas: :func:`table`.
- widgets by their label (``page.get_by_label``), headings by role.

Nothing can be downloaded: Chromium is /usr/bin/chromium (`make chromium`); a missing one FAILS the test with the
command that installs it. Server logs go to tests/_out/ (git-ignored), as do screenshots.
"""
from __future__ import annotations

import atexit
import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "tests" / "_out"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-quic",
                 "--no-first-run", "--disable-component-update", "--disable-sync"]
SHOTS = ROOT / ("assets" if os.environ.get("LAB_UPDATE_SCREENSHOTS") == "1" else "tests/_out")
APP = '[data-testid="stApp"]'
MAIN_CHART = '[data-testid="stMain"] .js-plotly-plot'
EXCEPTION = '[data-testid="stException"]'


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(proc: subprocess.Popen, url: str, log: Path, timeout: float = 90.0) -> None:
    """Wait until ``url`` answers 200; fail with the end of the server's log if it exits or never answers."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"server exited with code {proc.returncode}:\n{log.read_text(errors='replace')[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.3)
    pytest.fail(f"{url} did not answer within {timeout:.0f} s:\n{log.read_text(errors='replace')[-3000:]}")


def serve(cmd: list[str], health: str, name: str, env: dict | None = None) -> tuple[subprocess.Popen, Path]:
    """Start a server subprocess (cwd: the repository) logging to tests/_out/<name>.log; stopped at exit."""
    OUT.mkdir(parents=True, exist_ok=True)
    log = OUT / f"{name}.log"
    fh = open(log, "wb")  # noqa: SIM115 - closed with the process
    proc = subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, **(env or {})}, stdout=fh, stderr=subprocess.STDOUT)
    atexit.register(stop, proc)
    try:
        wait_http(proc, health, log)
    except BaseException:
        stop(proc)
        raise
    return proc, log


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait(timeout=10)


_STREAMLIT: dict[str, object] = {}


def streamlit_url() -> str:
    """The app (app/Home.py) served on 127.0.0.1 by `streamlit run`: started once per test process, reused by
    every browser test module of the process (its caches stay warm), killed at exit."""
    proc = _STREAMLIT.get("proc")
    if proc is None or proc.poll() is not None:
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        proc, _ = serve([sys.executable, "-m", "streamlit", "run", "app/Home.py", "--server.port", str(port),
                         "--server.address", "127.0.0.1", "--server.headless", "true",
                         "--browser.gatherUsageStats", "false"], url + "/_stcore/health", "streamlit")
        _STREAMLIT.update(proc=proc, url=url)
    return _STREAMLIT["url"]


@contextlib.contextmanager
def chromium():
    """A headless Debian Chromium (Playwright's sync API)."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing; install it with `apt-get update && apt-get install -y chromium` "
                    "(or `make chromium`)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@contextlib.contextmanager
def opened(browser, url: str, width: int = 1400, height: int = 1750):
    """A page in a fresh browser context (its own cookies: a new Streamlit session) opened at ``url``; the page
    counts the script runs that end from then on (see :func:`rerun`)."""
    ctx = browser.new_context(viewport={"width": width, "height": height})
    try:
        page = ctx.new_page()
        page.goto(url, wait_until="domcontentloaded")
        page.wait_for_selector(APP, state="attached", timeout=60_000)
        _count_runs(page)
        yield page
    finally:
        ctx.close()


def _count_runs(page) -> None:
    page.evaluate("""() => {
        if (window.__labRuns !== undefined) return;
        window.__labRuns = 0;
        const el = document.querySelector('[data-testid="stApp"]');
        new MutationObserver(records => { for (const r of records) if (r.oldValue === 'running') window.__labRuns++; })
            .observe(el, {attributes: true, attributeOldValue: true, attributeFilter: ['data-test-script-state']});
    }""")


def settle(page, min_plots: int = 0, timeout: float = 120_000, stable_ms: int = 1000) -> None:
    """Wait until the page's script run is over (not the initial state, not running, no status widget) and at
    least ``min_plots`` plotly charts are drawn in the main area, and all of it has held for ``stable_ms`` (a run
    that ends early for a rerun, e.g. after a URL change, shows "notRunning" for a moment in between)."""
    page.wait_for_function(
        """([n, ms]) => { const a = document.querySelector('[data-testid="stApp"]');
            const ok = a && a.dataset.testScriptState === 'notRunning'
                && !document.querySelector('[data-testid="stStatusWidget"]')
                && document.querySelectorAll('[data-testid="stMain"] .js-plotly-plot').length >= n;
            if (!ok) { window.__labOkSince = undefined; return false; }
            if (window.__labOkSince === undefined) window.__labOkSince = performance.now();
            return performance.now() - window.__labOkSince >= ms; }""",
        arg=[int(min_plots), int(stable_ms)], timeout=timeout)
    page.evaluate("() => { window.__labOkSince = undefined; }")


def rerun(page, action, min_plots: int = 0, timeout: float = 120_000) -> None:
    """Do ``action()`` (a click, a typed value) and wait until the run it started is over."""
    before = page.evaluate("() => window.__labRuns")
    action()
    page.wait_for_function("(n) => window.__labRuns > n", arg=before, timeout=timeout)
    settle(page, min_plots, timeout)


def no_exception(page) -> None:
    exc = page.locator(EXCEPTION)
    assert not exc.count(), exc.first.inner_text()


def traces(where) -> list[dict]:
    """The traces of a plotly chart (a locator, e.g. ``page.locator(MAIN_CHART).nth(i)``) as the
    browser holds them: name, type and x, y as lists."""
    return where.evaluate(
        "gd => gd._fullData.map(t => ({name: t.name, type: t.type, "
        "x: t.x ? Array.from(t.x) : [], y: t.y ? Array.from(t.y) : []}))")


def titles(where) -> list[str]:
    """The annotation texts (subplot titles) of a plotly chart (a locator)."""
    return where.evaluate("gd => (gd.layout.annotations || []).map(a => a.text)")


def points(trs: list[dict]) -> dict:
    """{trace name: (x, y)} of the marker traces."""
    return {t["name"]: (t["x"], t["y"]) for t in trs if t["type"] in ("scatter", "scattergl") and t["x"]}


def table(where) -> tuple[list[str], list[list[str]]]:
    """(header, rows) of a dataframe (a locator on ``[data-testid="stDataFrame"]``) as its cells' texts, read from
    the accessible table Streamlit's grid keeps beside its canvas (only the rows in view: a long table is cut)."""
    grid = where.locator("table")
    head = grid.locator("thead th").all_inner_texts()
    rows = [r.locator("th, td").all_inner_texts() for r in grid.locator("tbody tr").all()]
    return [h.strip() for h in head], [[c.strip() for c in r] for r in rows]


def png(data_uri: str):
    """The grey pixels (a numpy array) of a ``data:image/png;base64,...`` source, e.g. a plotly image trace's."""
    import base64
    import io

    import numpy as np
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(base64.b64decode(data_uri.split(",", 1)[1]))).convert("L"))


def select(page, label: str, option: str) -> None:
    """Choose ``option`` in the selectbox labelled ``label``."""
    page.get_by_label(label, exact=True).click()
    page.get_by_role("option", name=option, exact=True).click()


def type_in(page, label: str, text: str) -> None:
    """Type ``text`` into the text input labelled ``label`` and submit it (Enter)."""
    box = page.get_by_label(label, exact=True)
    box.fill(text)
    box.press("Enter")


def screenshot(page, path: Path) -> Path:
    page.wait_for_timeout(500)  # let WebGL finish painting
    path.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 10_000, path
    return path

