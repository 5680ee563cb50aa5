"""The Gradio demo (app/demo.py) served on 127.0.0.1 in a subprocess and driven in headless Chromium: the picked
model is sampled beside its teacher with the measured times, and a bad seed is a clear one-line message (never a
bare "Error" badge). tests/test_gradio.py calls the same server's API through gradio_client.

Hooks: the widgets by their labels, the "Sample" button, the plotly figure's title and traces, the summary
table's header and rows, and Gradio's toast text (``[data-testid="toast-text"]``).
"""
from __future__ import annotations

import re
import sys

import pytest

from _browser import OUT, chromium, free_port, screenshot, serve, stop

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


@pytest.mark.parametrize("label, kind", [("toy2d/moons/consistency", "scattergl"), ("digits/consistency", "image")])
def test_pick_a_model_and_sample(page, label, kind):
    """The figure and the table are the picked model's (not the default one's), each with its measured time."""
    pick(page, label)
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
