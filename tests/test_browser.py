"""The real Streamlit app in headless Chromium: every page loads and draws, the NFE changes the figure, and a shared
link reopens the same view. One `streamlit run` for the module (tests/_browser.py), a fresh browser context (a new
session) per test.

Screenshots go to tests/_out/ (git-ignored), so `make test` leaves `git status` clean;
`make screenshots` (LAB_UPDATE_SCREENSHOTS=1) refreshes the README's copies in assets/.
"""
from __future__ import annotations

import importlib.util
import re
import time

import numpy as np
import pytest

import _browser
from _browser import (MAIN_CHART, OUT, ROOT, SHOTS, chromium, no_exception, opened, points, rerun, screenshot,
                      select, settle, streamlit_url, titles, traces, type_in)

pytestmark = pytest.mark.browser

# page -> (URL path, heading, charts drawn when its first run is over; the README's screenshot or None)
PAGES = {
    "Home": ("/", "Distillation Lab", 0, None),
    "Generators": ("/Generators", "Generators", 2, "app_screenshot.png"),
    "Digits": ("/Digits", "Digits", 3, "app_digits.png"),
    "Knowledge distillation": ("/Knowledge_distillation", "Knowledge distillation", 3, "app_kd.png"),
    "Distill live": ("/Distill_live", "Distill live", 3, None),
    "Runs": ("/Runs", "Runs", 0, None),
}


@pytest.fixture(scope="module")
def url(app_students):
    return streamlit_url()  # after app_students: it may point $LAB_RUNS at a fresh run folder first


@pytest.fixture(scope="module")
def browser():
    with chromium() as b:
        yield b


def _check_generators(page, app_students):
    plot = page.locator(MAIN_CHART).first
    ts = titles(plot)
    assert any(t.startswith("teacher @") for t in ts), ts
    assert any(t.startswith(f"{app_students[0]} @") for t in ts), (app_students, ts)
    assert len(traces(plot)) >= 4  # teacher + one student at 1, 2, 4 NFE
    assert plot.locator(".gl-container canvas, .scatterlayer .trace").count() >= 1


def _check_digits(page, app_students):
    assert page.locator(MAIN_CHART).first.evaluate("gd => gd.data[0].type") == "image"


def _check_kd(page, app_students):
    """Before Start: the divergence explorer (bars) and the live curves at step 0, no heatmap (nothing trains on
    load). One Step trains every run by exactly k steps: the counter moves and the paused views (CKA heatmaps,
    the disagreement examples) appear, which the README's screenshot shows."""
    def types():
        gds = page.locator(MAIN_CHART).evaluate_all("gds => gds.map(gd => gd.data.map(t => t.type))")
        return [t for ts in gds for t in ts]

    assert "bar" in types() and "heatmap" not in types(), types()
    assert page.get_by_text("step 0 of", exact=False).first.is_visible()
    step = page.get_by_role("button", name=re.compile(r"^.*Step \((\d+)\)$"))
    k = int(re.search(r"\((\d+)\)", step.inner_text()).group(1))
    for i in (1, 2):  # two steps: the runs' first evaluation (every steps/25) is on the curves of the screenshot
        rerun(page, step.click, timeout=180_000)
        no_exception(page)
        page.get_by_text(f"step {i * k} of", exact=False).first.wait_for(timeout=60_000)
        assert "heatmap" in types(), types()


CHECKS = {"Generators": _check_generators, "Digits": _check_digits, "Knowledge distillation": _check_kd}


@pytest.mark.parametrize("name", list(PAGES))
def test_page_loads_in_chromium(name, url, browser, app_students):
    """Each page's first run ends without an exception, shows its heading and draws its charts (the KD page
    draws its divergence explorer and waits for Start)."""
    path, heading, min_plots, shot = PAGES[name]
    with opened(browser, url + path) as page:
        settle(page, min_plots, timeout=180_000)
        assert page.get_by_role("heading", name=heading).first.is_visible()
        no_exception(page)
        if name in CHECKS:
            CHECKS[name](page, app_students)
        screenshot(page, SHOTS / shot if shot else OUT / f"page_{PAGES[name][0].strip('/') or 'Home'}.png")


def _teacher_title(page) -> str:
    return next(t for t in titles(page.locator(MAIN_CHART).first) if t.startswith("teacher @"))


def _trajectories(page) -> list[dict]:
    """The trajectory view's traces (animated or all paths: the chart with a "student (k NFE...)" trace)."""
    charts = page.locator(MAIN_CHART)
    for i in range(charts.count()):
        trs = traces(charts.nth(i))
        if any(t["name"].startswith("student (") for t in trs) and any(t["name"].startswith("teacher") for t in trs):
            return trs
    raise AssertionError("no trajectory view on the page")


def _student_points(trs: list[dict]) -> int:
    return sum(sum(v is not None for v in t["x"]) for t in trs if t["name"].startswith("student"))


def test_changing_the_nfe_updates_the_figure(url, browser):
    """Teacher NFE 50 -> 5: the teacher panel's title and points change and the students' do not (same noise);
    the trajectory view's Student NFE 2 -> 1: the student makes one jump per path instead of two."""
    with opened(browser, url + "/Generators") as page:
        settle(page, 2)
        before, title0 = points(traces(page.locator(MAIN_CHART).first)), _teacher_title(page)
        assert "@ 5 NFE" not in title0
        rerun(page, lambda: type_in(page, "Teacher NFE", "5"), 2)
        page.wait_for_function(
            "() => (document.querySelector('[data-testid=\"stMain\"] .js-plotly-plot').layout.annotations || [])"
            ".some(a => a.text.startsWith('teacher @ 5 NFE'))", timeout=30_000)
        no_exception(page)
        after = points(traces(page.locator(MAIN_CHART).first))
        assert "teacher@5" in after and "teacher@5" not in before, (list(before), list(after))
        t0, t1 = np.array(before[next(k for k in before if k.startswith("teacher@"))]), np.array(after["teacher@5"])
        assert t0.shape == t1.shape and np.abs(t0 - t1).max() > 1e-3  # other points, from the same noise
        students = [k for k in before if not k.startswith("teacher@")]
        assert students and all(np.array_equal(before[k], after[k]) for k in students)  # untouched
        assert "tnfe=5" in page.url

        paths0 = _trajectories(page)
        assert any(t["name"].startswith("student (2 NFE") for t in paths0), [t["name"] for t in paths0]
        rerun(page, lambda: select(page, "Student NFE", "1"), 2)
        page.wait_for_function(
            "() => [...document.querySelectorAll('[data-testid=\"stMain\"] .js-plotly-plot')].some(gd => "
            "(gd._fullData || []).some(t => (t.name || '').startsWith('student (1 NFE')))", timeout=30_000)
        no_exception(page)
        paths1 = _trajectories(page)
        assert _student_points(paths1) < _student_points(paths0)  # one jump per path instead of two
        assert "traj_nfe=1" in page.url


def _stable_points(page) -> dict:
    """The first chart's points once two readings 300 ms apart agree (plotly draws after the run ends)."""
    last = None
    for _ in range(20):
        cur = points(traces(page.locator(MAIN_CHART).first))
        if cur == last:
            return cur
        last = cur
        page.wait_for_timeout(300)
    return last


def test_a_shared_link_reopens_the_same_view(url, browser):
    """Set moons and seed 5 by hand, then open the page's address in a fresh session: the widgets show moons and 5
    and the figure holds the same points (and not the default view's)."""
    with opened(browser, url + "/Generators") as page:
        settle(page, 2)
        default = _stable_points(page)
        rerun(page, lambda: select(page, "Distribution", "moons"), 2)
        rerun(page, lambda: type_in(page, "Seed", "5"), 2)
        no_exception(page)
        by_hand, link = _stable_points(page), page.url
    assert "dist=moons" in link and "seed=5" in link, link
    assert by_hand != default and any(k.startswith("teacher@") for k in by_hand)
    with opened(browser, link) as page:
        settle(page, 2)
        no_exception(page)
        assert page.get_by_label("Distribution", exact=True).input_value() == "moons"
        assert page.get_by_label("Seed", exact=True).input_value() == "5"
        assert _stable_points(page) == by_hand
    with opened(browser, url + "/Generators?dist=moons&seed=5") as page:  # the link as written by hand
        settle(page, 2)
        assert _stable_points(page) == by_hand
        screenshot(page, OUT / "shared_link_moons_seed5.png")


def _load_bench():
    spec = importlib.util.spec_from_file_location("lab_bench_load_test", ROOT / "bench" / "load_test.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_concurrent_sessions_without_errors_and_bounded_memory(url):
    """A light bench/load_test.py: two waves of 5 sessions (websocket clients speaking Streamlit's protocol, all
    connected at once) on the Generators page. No session shows an exception, fails or times out, every one
    receives its figures, and the second wave leaves the server's memory within 10% of the first (a leak per
    session would add up)."""
    load = _load_bench()
    pid = _browser._STREAMLIT["proc"].pid
    waves = []
    for _ in range(2):
        sessions = load.ws_wave(url, ["/Generators"] * 5, timeout_s=150)
        time.sleep(2.0)  # the closed sessions are gone
        waves.append((sessions, load.rss_mb(pid)))
    errors = [s["error"] for sessions, _ in waves for s in sessions if s["error"]]
    assert not errors, errors
    assert all(s["first_s"] is not None for sessions, _ in waves for s in sessions)
    (_, before), (_, after) = waves
    assert after <= 1.10 * before, (before, after)
