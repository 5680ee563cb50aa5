"""The real Streamlit app in headless Chromium: every page loads and draws what it should (read from the page: the
charts' traces and numbers, the tables' cells, the links and captions, compared with what lab computes in this
process), the NFE changes the figure, and a shared link reopens the same view. One `streamlit run` for the module
(tests/_browser.py), a fresh browser context (a new session) per test. The runs root is the session's temporary one
(conftest.app_students: the zoo's students plus one run folder).

Screenshots go to tests/_out/ (git-ignored), so `make test` leaves `git status` clean;
`make screenshots` (LAB_UPDATE_SCREENSHOTS=1) refreshes the README's copies in assets/.
"""
from __future__ import annotations

import importlib.util
import re
import sys
import time

import numpy as np
import pytest

import _browser
from _browser import (MAIN_CHART, OUT, ROOT, SHOTS, chromium, no_exception, opened, png, points, rerun, screenshot,
                      select, settle, streamlit_url, table, titles, traces, type_in)
from conftest import APP_DATA, APP_RUN

pytestmark = pytest.mark.browser

# page -> (URL path, heading, charts drawn when its first run is over; the README's screenshot or None)
PAGES = {
    "Home": ("/", "Distillation Lab", 0, None),
    "Generators": ("/Generators", "Generators", 2, "app_screenshot.png"),
    "Digits": ("/Digits", "Digits", 3, "app_digits.png"),
    "Knowledge distillation": ("/Knowledge_distillation", "Knowledge distillation", 3, "app_kd.png"),
    "Distill live": ("/Distill_live", "Distill live", 3, None),
    "Runs": ("/Runs", "Runs", 3, None),
    "Dataset distillation": ("/Dataset_distillation", "Dataset distillation", 3, None),
    "Language models": ("/Language_models", "Language models", 5, None),
}


@pytest.fixture(scope="module")
def url(app_students):
    return streamlit_url()  # after app_students: it may point $LAB_RUNS at a fresh run folder first


@pytest.fixture(scope="module")
def browser():
    with chromium() as b:
        yield b


def _common():
    if str(ROOT / "app") not in sys.path:
        sys.path.insert(0, str(ROOT / "app"))
    import common

    return common


def _check_home(page, app_students):
    """The links to the five pages, the registered methods in the methods table (those in view), the zoo's
    teachers in the caption."""
    import lab

    common = _common()
    links = [" ".join(t.split()) for t in page.locator('[data-testid="stPageLink-NavLink"]').all_inner_texts()]
    assert [t.split(" ", 1)[1].split(":")[0] for t in links] == [
        "Generators", "Digits", "Knowledge distillation", "Distill live", "Runs", "Dataset distillation",
        "Language models"], links
    head, rows = table(page.locator('[data-testid="stDataFrame"]').first)
    assert head == ["name", "family", "mechanism", "paper"], head
    names = [r[0] for r in rows]
    assert len(names) >= 5 and names == lab.list_methods()[:len(names)], names
    assert rows[0][3] == lab.get_method(names[0]).paper, rows[0]
    caption = f"Teachers in the zoo: {', '.join(common.distributions())}."
    assert page.get_by_text(caption, exact=True).is_visible(), caption


def _check_generators(page, app_students):
    """The panels: the teacher at 50 NFE and the three students selected by default (the first three the app
    lists) at each step count of 1, 2, 4 they were trained for, 1000 finite points each."""
    from lab import probes

    common = _common()
    plot = page.locator(MAIN_CHART).first
    ts = titles(plot)
    assert any(t.startswith("teacher @ 50 NFE") for t in ts), ts
    assert any(t.startswith(f"{app_students[0]} @") for t in ts), (app_students, ts)
    refs = {s.label: s for s in common.students(APP_DATA)}
    want = ["teacher@50"] + [f"{s}@{k}" for s in app_students[:3] for k in
                             probes.panel_nfes(common.load_student(refs[s].source, refs[s].ref), common.STUDENT_NFE)]
    charts = page.locator(MAIN_CHART)
    shown = {}
    for i in range(charts.count()):
        trs = points(traces(charts.nth(i)))
        if trs and all("@" in k for k in trs):  # a row of sample panels
            shown.update(trs)
    assert list(shown) == want, (list(shown), want)
    for k, (x, y) in shown.items():
        assert len(x) == len(y) == 1000 and np.isfinite(np.array([x, y], dtype=float)).all(), k
    assert plot.locator(".gl-container canvas, .scatterlayer .trace").count() >= 1


def _check_digits(page, app_students):
    """The sample grid: its rows (the teacher at 50, 1, 2, 4 NFE, then each zoo student at its step counts) and
    its pixels are those of lab.probes.sample_grid with the page's defaults (seed 0, labels 0..9), computed here."""
    from lab.probes.images import sample_grid
    from lab.viz.images import tile

    common = _common()
    grid = page.locator(MAIN_CHART).first
    fig = grid.evaluate("gd => ({type: gd.data[0].type, source: gd.data[0].source, "
                        "rows: Array.from(gd.layout.yaxis.ticktext || [])})")
    assert fig["type"] == "image", fig["type"]
    students = common.digits_students()
    assert students, "no digits student in the zoo"
    direct = sample_grid(common.load_digits("teacher"), {s: common.load_digits(s) for s in students},
                         teacher_nfe=50, student_nfe=common.DIGITS_STUDENT_NFE, labels=list(range(10)), n=10, seed=0)
    assert fig["rows"] == [f"{r['model']} @ {r['nfe']} NFE" for r in direct["rows"]], fig["rows"]
    assert fig["rows"][:4] == ["teacher @ 50 NFE", "teacher @ 1 NFE", "teacher @ 2 NFE", "teacher @ 4 NFE"]
    assert np.array_equal(png(fig["source"]), tile(direct["images"]))


def _check_live(page, app_students):
    """Before Play: the counter at step 0, the live figure's teacher and student samples (as many, finite) under
    the titles of the teacher at 50 NFE and the student at step 0."""
    texts = page.locator('[data-testid="stMain"] [data-testid="stText"]').all_inner_texts()
    assert [t.strip() for t in texts if t.strip().startswith("step ")] == ["step 0"], texts
    charts = page.locator(MAIN_CHART)
    live = next(charts.nth(i) for i in range(charts.count())
                if any(t.startswith("teacher · ") for t in titles(charts.nth(i))))
    ts = titles(live)
    assert "teacher · 50 NFE" in ts and any(re.match(r"student · step 0/\d+ · \d+ NFE$", t) for t in ts), ts
    got = {t["name"]: np.array([t["x"], t["y"]], dtype=float) for t in traces(live)}
    assert {"teacher samples", "student samples"} <= set(got), list(got)
    assert got["teacher samples"].shape == got["student samples"].shape and got["teacher samples"].shape[1] >= 100
    assert np.isfinite(got["teacher samples"]).all() and np.isfinite(got["student samples"]).all()


def _check_runs(page, app_students):
    """The session's one run folder: listed in the table (1 of 1) with its method, data and steps; its distances
    in the quality-against-NFE chart are lab.runs.index.measure's, computed here; its curves and a snapshot."""
    from lab.runs import index

    common = _common()
    root = common.runs_root()
    assert page.get_by_role("heading", name="Run folders (1 of 1)").is_visible()
    head, rows = table(page.locator('[data-testid="stDataFrame"]').first)
    row = dict(zip(head, rows[0]))
    assert len(rows) == 1 and (row["name"], row["kind"], row["method"], row["data"], row["steps"], row["steps done"]) \
        == (APP_RUN, "distill", "consistency", f"toy2d:{APP_DATA}", "20", "20"), (head, rows)
    q = index.measure(root / APP_RUN, root)
    charts = page.locator(MAIN_CHART)
    pareto = {t["name"]: t for t in traces(charts.nth(0))}
    assert "consistency" in pareto and "Pareto front" in pareto, list(pareto)
    assert pareto["consistency"]["x"] == q.nfe.tolist() == [1, 2, 4], (pareto["consistency"]["x"], q)
    np.testing.assert_allclose(pareto["consistency"]["y"], q.distance.to_numpy(), rtol=1e-6)
    names = [t["name"] for i in range(1, charts.count()) for t in traces(charts.nth(i))]
    assert "loss/consistency" in names and "student" in names, names


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


def _check_dd(page, app_students):
    """The default view (dm, 10 images per class) from the shipped sets: the accuracy chart's lines are the seed means
    of the shipped card per method and images per class, and the page states the shipped set's seed-0 accuracy."""
    from lab.probes import dd

    sc = dd.showcase()
    acc = dd.accuracy_table(sc["card"])
    charts = page.locator(MAIN_CHART)
    lines = {}
    for i in range(charts.count()):
        for t in traces(charts.nth(i)):
            if t["type"] == "scatter" and t["name"] in set(acc["method"]):
                lines[t["name"]] = (t["x"], t["y"])
    per = acc[acc["ipc"].astype(str) != "all"]
    assert set(lines) == set(per["method"]), (sorted(lines), sorted(set(per["method"])))
    for m, g in per.groupby("method"):
        g = g.assign(ipc=g["ipc"].astype(int)).sort_values("ipc")
        assert lines[m][0] == g["ipc"].tolist(), (m, lines[m])
        np.testing.assert_allclose(lines[m][1], g["acc"].to_numpy(), rtol=1e-6)
    shown = f"{sc['sets']['dm/ipc10']['acc_seed0']:.3f}"
    assert page.get_by_text(f"(seed 0): {shown}", exact=False).first.is_visible(), shown


def _check_lm(page, app_students):
    """The first view from the shipped bench results: the gkd bars are the seed means of the final KL per λ of the
    default setting (lab.probes.lm), and both teacher-hacking regimes of the shipped study are drawn."""
    from lab.probes import lm

    res = lm.shipped_results()
    summary = lm.gkd_summary(lm.shipped_gkd_curves(res, "16 prompts, batch 16 (claim)"))
    bars = [t for t in traces(page.locator(MAIN_CHART).first) if t["type"] == "bar"]
    true = next(t for t in bars if t["name"] == "true sequences")
    assert true["x"] == [f"λ = {v:g}" for v in summary["lmbda"]], true["x"]
    np.testing.assert_allclose(true["y"], summary["kl_truth_mean"].to_numpy(), rtol=1e-6)
    names = {t["name"] for i in range(page.locator(MAIN_CHART).count()) for t in traces(page.locator(MAIN_CHART).nth(i))}
    assert {"offline", "online_teacher"} <= names, sorted(map(str, names))


CHECKS = {"Home": _check_home, "Generators": _check_generators, "Digits": _check_digits,
          "Knowledge distillation": _check_kd, "Distill live": _check_live, "Runs": _check_runs,
          "Dataset distillation": _check_dd, "Language models": _check_lm}
assert set(CHECKS) == set(PAGES)


@pytest.mark.parametrize("name", list(PAGES))
def test_page_loads_in_chromium(name, url, browser, app_students):
    """Each page's first run ends without an exception, shows its heading and draws its charts, and they hold what
    the page's check reads (CHECKS: every page has one; the KD page draws its divergence explorer and waits for
    Start, then trains on Step)."""
    path, heading, min_plots, shot = PAGES[name]
    with opened(browser, url + path) as page:
        settle(page, min_plots, timeout=180_000)
        assert page.get_by_role("heading", name=heading).first.is_visible()
        no_exception(page)
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
