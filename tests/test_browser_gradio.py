"""The Gradio demo (app/demo.py) served on 127.0.0.1 in a subprocess and driven in headless Chromium: the picked
model is sampled beside its teacher with the measured times, the figure the browser holds is the one app/demo.py's
``sample`` and ``render`` make here in the test process from the same settings (same points, same pixels), and a bad
seed is a clear one-line message (never a bare "Error" badge). tests/test_gradio.py calls the same server's API
through gradio_client.

Hooks: the widgets by their labels, the "Sample" button, the plotly figure's title and traces, the summary
table's header and rows, and Gradio's toast text (``[data-testid="toast-text"]``).
"""
from __future__ import annotations

import importlib.util
import re
import sys

import numpy as np
import pytest

from _browser import OUT, ROOT, chromium, free_port, screenshot, serve, stop

pytestmark = pytest.mark.browser

MODEL = "Model (zoo entries, then run folders)"
TIMES = "wall-clock, warm median (ms)"


@pytest.fixture(scope="module")
def demo_url():
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc, _ = serve([sys.executable, "app/demo.py"], url + "/", "gradio",
                    env={"GRADIO_SERVER_PORT": str(port), "GRADIO_ANALYTICS_ENABLED": "False"})
    yield url
    stop(proc)


@pytest.fixture(scope="module")
def demo_mod():
    """app/demo.py imported in the test process (its sample and render, without a server)."""
    spec = importlib.util.spec_from_file_location("lab_app_demo_in_browser_test", ROOT / "app" / "demo.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def page(demo_url):
    with chromium() as browser:
        pg = browser.new_page(viewport={"width": 1400, "height": 1500})
        pg.goto(demo_url)
        pg.get_by_label(MODEL).wait_for(timeout=60_000)
        pg.get_by_text("compared with the teacher").wait_for(timeout=60_000)  # the page's load event has run
        yield pg


def pick(page, label: str) -> None:
    page.get_by_label(MODEL).click()
    page.get_by_role("option", name=label, exact=True).click()
    page.get_by_text(re.compile(rf"^{re.escape(label)} \(")).wait_for(timeout=60_000)  # the model's info line


def sample(page) -> None:
    page.get_by_role("button", name="Sample", exact=True).click()


def figure(page) -> dict:
    return page.locator(".js-plotly-plot").first.evaluate(
        "gd => ({title: gd.layout.title.text, types: gd._fullData.map(t => t.type), "
        "names: gd._fullData.map(t => t.name)})")


def times(page) -> dict:
    """{model: warm median ms} from the summary table."""
    table = page.locator("table").filter(has_text=TIMES).first
    head = table.locator("th").all_inner_texts()
    col = head.index(TIMES)
    out = {}
    for row in table.locator("tbody tr").all():
        cells = row.locator("td").all_inner_texts()
        out[cells[0]] = float(cells[col])
    return out


def drawn(page) -> list[dict]:
    """The figure's traces as the browser holds them: type, name, x and y (decoded), an image's source."""
    return page.locator(".js-plotly-plot").first.evaluate(
        "gd => gd._fullData.map((t, i) => ({type: t.type, name: t.name, x: t.x ? Array.from(t.x) : null, "
        "y: t.y ? Array.from(t.y) : null, source: gd.data[i].source || null}))")


@pytest.mark.parametrize("label, kind", [("toy2d/moons/consistency", "scattergl"), ("digits/consistency", "image")])
def test_pick_a_model_and_sample(page, demo_mod, label, kind):
    """The figure and the table are the picked model's (not the default one's), each with its measured time; the
    figure holds the points (2D) or the pixels (digits) that app/demo.py's sample + render give here for the
    page's settings (teacher at 50 NFE, the student's smallest trained NFE, seed 0, the default count)."""
    pick(page, label)
    student_nfe = int(page.get_by_role("combobox", name="Student NFE").input_value())
    sample(page)
    page.wait_for_function("(m) => { const gd = document.querySelector('.js-plotly-plot'); "
                           "return gd && gd.layout && (gd.layout.title.text || '').includes(m); }",
                           arg=label, timeout=90_000)
    fig = figure(page)
    assert label in fig["title"] and kind in fig["types"], fig
    page.locator("table").filter(has_text=label).first.wait_for(timeout=30_000)
    ms = times(page)
    assert set(ms) == {label.rsplit("/", 1)[0] + "/teacher", label}, ms
    assert all(v > 0 for v in ms.values()), ms

    want, _ = demo_mod.render(demo_mod.sample(label, 50, student_nfe, 0))
    got = drawn(page)
    assert [(t["type"], t["name"]) for t in got] == [(t.type, t.name) for t in want.data], (got, want.data)
    for g, w in zip(got, want.data):
        if kind == "image":
            assert g["source"] == w.source, f"{label}: the grid's pixels differ from demo.render's"
        else:
            np.testing.assert_allclose(np.array([g["x"], g["y"]], dtype=float), np.array([w.x, w.y], dtype=float),
                                       rtol=1e-6, err_msg=f"{label}: trace {w.name}")
    screenshot(page, OUT / f"gradio_{label.replace('/', '_')}.png")


@pytest.mark.parametrize("seed, shown", [("1e20", "100000000000000000000"), ("2.7", "2.7"), ("-5", "-5")])
def test_a_bad_seed_is_a_clear_message(page, seed, shown):
    pick(page, "toy2d/8gaussians/consistency")
    page.get_by_label(re.compile(r"^Seed")).fill(seed)
    toasts = page.locator('[data-testid="toast-text"]')
    before = toasts.count()
    sample(page)
    msg = toasts.filter(has_text=f"got {shown}")
    msg.first.wait_for(timeout=60_000)
    assert toasts.count() > before
    assert "seed must be a whole number in 0..2147483647" in msg.first.inner_text(), msg.first.inner_text()
    page.get_by_label(re.compile(r"^Seed")).fill("0")
