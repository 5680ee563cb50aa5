"""The Distill live page in headless Chromium: Play then Pause trains (the iteration counter advances and the figure
changes), Pause holds, Step trains exactly one step, and uploaded points become the data.

Hooks read: the counter's text ``step N`` (the live fragment's ``st.text``) and the paused frame's plotly figure
(its subplot titles ``teacher · ...`` and ``student · step N/T · ...``; its traces ``teacher samples`` and
``student samples``); the buttons, the data radio and the file uploader by their labels.
"""
from __future__ import annotations

import re

import numpy as np
import pytest

from _browser import (MAIN_CHART, OUT, chromium, no_exception, opened, rerun, screenshot, settle, streamlit_url,
                      titles, traces)

pytestmark = pytest.mark.browser

PATH = "/Distill_live"
UPLOAD = "my points (.npy / .csv)"
STEP = re.compile(r"^step (\d+)$")


@pytest.fixture(scope="module")
def url(app_students):
    return streamlit_url()  # after app_students (it may point $LAB_RUNS at a fresh run folder first)


@pytest.fixture(scope="module")
def browser():
    with chromium() as b:
        yield b


def counter(page) -> int:
    """The iteration counter: the live view's ``step N`` text."""
    texts = page.locator('[data-testid="stMain"] [data-testid="stText"]').all_inner_texts()
    found = [int(m.group(1)) for t in texts if (m := STEP.match(t.strip()))]
    assert len(found) == 1, texts
    return found[0]


def live_chart(page):
    """The paused frame's figure (the chart whose subplot titles start with ``teacher · ``)."""
    charts = page.locator(MAIN_CHART)
    for i in range(charts.count()):
        if any(t.startswith("teacher · ") for t in titles(charts.nth(i))):
            return charts.nth(i)
    raise AssertionError("no live figure on the page")


def samples(page) -> dict:
    """{"teacher": (n, 2), "student": (n, 2)} arrays from the live figure, and its student title."""
    fig = live_chart(page)
    out = {t["name"].split()[0]: np.array([t["x"], t["y"]]).T for t in traces(fig)
           if t["name"] in ("teacher samples", "student samples")}
    out["title"] = next(t for t in titles(fig) if t.startswith("student · "))
    return out


def button(page, name: str):
    return page.get_by_role("button", name=re.compile(rf"(^|\s){name}$"))


def test_play_then_pause_advances_and_changes_the_figure(url, browser):
    with opened(browser, url + PATH, width=1280, height=1400) as page:
        settle(page, 3)
        no_exception(page)
        assert counter(page) == 0
        s0 = samples(page)
        assert "step 0/" in s0["title"], s0["title"]
        button(page, "Play").click()
        page.wait_for_function(
            "() => [...document.querySelectorAll('[data-testid=\"stMain\"] [data-testid=\"stText\"]')]"
            ".some(e => /^step ([5-9]|\\d\\d+)$/.test(e.innerText.trim()))", timeout=90_000)
        rerun(page, lambda: button(page, "Pause").click(), 3)
        page.get_by_text(re.compile(r"^paused · ")).wait_for(timeout=30_000)
        no_exception(page)
        n1 = counter(page)
        assert n1 >= 5
        s1 = samples(page)
        assert f"step {n1}/" in s1["title"], (n1, s1["title"])
        assert s1["student"].shape == s0["student"].shape
        assert np.abs(s1["student"] - s0["student"]).max() > 1e-3  # trained: the student moved
        assert np.array_equal(s1["teacher"], s0["teacher"])  # the teacher and the noise did not
        page.wait_for_timeout(1500)
        assert counter(page) == n1  # paused holds
        screenshot(page, OUT / "live_paused.png")


def test_a_single_step_advances_by_exactly_one(url, browser):
    with opened(browser, url + PATH, width=1280, height=1400) as page:
        settle(page, 3)
        n0, s0 = counter(page), samples(page)
        for k in (1, 2):
            rerun(page, lambda: button(page, "Step").click(), 3)
            page.wait_for_function(
                "(k) => [...document.querySelectorAll('[data-testid=\"stMain\"] [data-testid=\"stText\"]')]"
                ".some(e => e.innerText.trim() === 'step ' + k)", arg=n0 + k, timeout=30_000)
            no_exception(page)
            assert counter(page) == n0 + k
            page.wait_for_function(  # the figure follows the counter
                "(k) => [...document.querySelectorAll('[data-testid=\"stMain\"] .js-plotly-plot')].some(gd => "
                "(gd.layout.annotations || []).some(a => a.text.startsWith('student · step ' + k + '/')))",
                arg=n0 + k, timeout=30_000)
        s2 = samples(page)
        assert np.abs(s2["student"] - s0["student"]).max() > 0  # two steps moved the student
        assert np.array_equal(s2["teacher"], s0["teacher"])


def _spread(xy: np.ndarray) -> float:
    """How flat a cloud is: the std of y over the std of x."""
    return float(xy[:, 1].std() / xy[:, 0].std())


def test_uploaded_points_become_the_data(url, browser, tmp_path):
    """A wrong array is refused in one line; a flat bar of points (y spread 3% of x) trains a teacher whose samples
    are a flat bar, where the zoo's 8gaussians teacher (the baseline, the same page before the upload) is round."""
    rng = np.random.default_rng(0)
    bar = np.stack([rng.uniform(-1, 1, 2000), rng.normal(0, 0.03, 2000)], 1).astype(np.float32)
    good, bad = tmp_path / "bar.npy", tmp_path / "three_columns.npy"
    np.save(good, bar)
    np.save(bad, np.zeros((100, 3), np.float32))
    with opened(browser, url + PATH, width=1280, height=1400) as page:
        settle(page, 3)
        zoo_spread = _spread(samples(page)["teacher"])
        rerun(page, lambda: page.get_by_text(UPLOAD, exact=True).click())
        page.get_by_text("Upload a .npy or .csv file").wait_for(timeout=30_000)
        uploader = page.locator('[data-testid="stFileUploader"] input[type="file"]')
        rerun(page, lambda: uploader.set_input_files(str(bad)))
        err = page.locator('[data-testid="stAlertContentError"]').filter(has_text="three_columns.npy")
        err.wait_for(timeout=30_000)
        assert "shape (100, 3)" in err.inner_text() and "allowed" in err.inner_text(), err.inner_text()
        no_exception(page)
        rerun(page, lambda: uploader.set_input_files(str(good)), 3, timeout=180_000)  # trains a teacher first
        no_exception(page)
        page.get_by_text("trained here on your points").first.wait_for(timeout=30_000)
        page.get_by_text("data: upload:bar.npy · 2,000 points").first.wait_for(timeout=30_000)  # the upload is the data
        s = samples(page)
        assert "step 0/" in s["title"]
        up_spread = _spread(s["teacher"])
        assert zoo_spread > 0.7 and up_spread < 0.35, (zoo_spread, up_spread)
        screenshot(page, OUT / "live_upload.png")
