"""Updates per second of the Distill live page (issue 14, section 1: at least 5 visible updates a second, 2 cores).

    python bench/live.py                  # in process: one frame = k steps + frame() + the three figures as JSON
    python bench/live.py --browser        # also the real page in headless Chromium (Playwright): how often the
                                          # "step N" text changes over 10 s while playing
    python bench/live.py --json out.json  # the numbers as JSON too
    python bench/live.py --browser --write  # and rewrite the "## Live distillation" section of bench/RESULTS.md
                                            # (the numbers kept in bench/results/live.json)
    python bench/live.py --rows-only --write  # measure nothing: rewrite the section from bench/results/live.json

In process, each (method, k) is timed over ``--frames`` frames after two warm-up frames (the first steps of
some methods draw their teacher's ODE pairs); the median frame time is reported, with the rate 1 / median
(the server's ceiling: no Streamlit, no browser). The browser figure is what a person sees: while playing, the
page's fragment draws frames in a loop (each: training steps, frame(), a PNG of the frame swapped into an
image) and the loss and distance curves once a second; Chromium counts how often the "step N" text and the
image change. Torch runs on one thread (LAB_NUM_THREADS, default 1 here) as the app does on a busy 2-core
laptop.
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

os.environ.setdefault("LAB_NUM_THREADS", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

METHODS = ("dmd", "consistency", "sds")
#: typed into the page before playing: sds's 400 default steps end within the measurement
PAGE_STEPS = {"sds": 5000}
STEPS_PER_FRAME = (1, 4, "auto")
TEACHER = "toy2d/8gaussians/teacher"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"]


def in_process(methods=METHODS, ks=STEPS_PER_FRAME, frames: int = 20) -> list[dict]:
    """The page's work per frame while playing: k training steps (or "auto": about 80 ms of them), ``frame()``
    (student samples, the method's field on the page's 11 x 11 grid) and the frame drawn as a PNG data URI
    (``live_image``); the interactive plotly figure of a paused frame (``live_figure`` + JSON) is timed too."""
    import lab  # noqa: F401  inside: lab (torch) loads only when measuring; importing it caps the threads
    from lab.probes.fields import method_field
    from lab.runs.live import LiveSession
    from lab.viz.live import live_figure, live_image, png_data_uri

    rows = []
    for m in methods:
        s = LiveSession(m, TEACHER, field=lambda meth: method_field(meth, n=11, points=100), n=200)
        for k in ks:
            def one():
                if s.done:
                    s.reset()
                    s.advance(2)  # the first steps of some methods draw ODE pairs: not a frame
                t0 = time.perf_counter()
                s.advance_for(0.08) if k == "auto" else s.advance(k)
                a = time.perf_counter()
                f = s.frame()
                b = time.perf_counter()
                png_data_uri(live_image(f))
                c = time.perf_counter()
                live_figure(f).to_json()
                d = time.perf_counter()
                return c - t0, a - t0, b - a, c - b, d - c
            one(), one()  # warm-up (first-step pairs, font loading)
            ts = [one() for _ in range(frames)]
            med = statistics.median(t[0] for t in ts)
            it0 = s.iteration
            rows.append({"method": m, "steps_per_frame": k, "frame_ms": round(1000 * med, 1),
                         "train_ms": round(1000 * statistics.median(t[1] for t in ts), 1),
                         "frame_data_ms": round(1000 * statistics.median(t[2] for t in ts), 1),
                         "image_ms": round(1000 * statistics.median(t[3] for t in ts), 1),
                         "plotly_figure_ms": round(1000 * statistics.median(t[4] for t in ts), 1),
                         "updates_per_s": round(1.0 / med, 1)})
            print(rows[-1], it0, flush=True)
    return rows


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _choose(page, label: str, option: str) -> None:
    """Pick ``option`` in the selectbox labelled ``label`` (a combobox whose aria-label is the label)."""
    page.get_by_role("combobox", name=label, exact=True).click()
    page.get_by_role("option", name=option, exact=True).click()
    page.wait_for_timeout(800)  # the rerun starts
    page.wait_for_function("() => !document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=120_000)


def browser(methods=METHODS, seconds: float = 10.0, k: str = "auto", shots: Path | None = None,
            viewport=(1024, 768)) -> list[dict]:
    """The real page: Streamlit on 127.0.0.1 and headless Chromium; per method, Play for ``seconds`` and count
    the distinct "step N" texts the page showed (polled every 20 ms in the page), then Pause. The page's default
    steps per frame ("auto": about 80 ms of training per frame) is what is measured; ``k`` only labels it."""
    from playwright.sync_api import sync_playwright  # inside: only --browser needs playwright (a dev extra)

    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "app/Home.py", "--server.port", str(port),
                             "--server.address", "127.0.0.1", "--server.headless", "true",
                             "--browser.gatherUsageStats", "false"], cwd=ROOT, env=dict(os.environ),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    rows = []
    try:
        for _ in range(200):
            try:
                with urllib.request.urlopen(url + "/_stcore/health", timeout=2):
                    break
            except OSError:
                time.sleep(0.3)
        with sync_playwright() as pw:
            b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = b.new_page(viewport={"width": viewport[0], "height": viewport[1]})
            t0 = time.perf_counter()
            page.goto(url + "/Distill_live", wait_until="domcontentloaded")
            page.locator('[data-testid="stMain"] .js-plotly-plot').first.wait_for(state="visible", timeout=120_000)
            first_figure = time.perf_counter() - t0
            for m in methods:
                _choose(page, "Method", m)
                page.get_by_text("step 0", exact=True).wait_for(timeout=60_000)
                if m in PAGE_STEPS:
                    box = page.locator('input[aria-label="steps"]')
                    box.fill(str(PAGE_STEPS[m]))
                    box.press("Enter")
                    page.wait_for_timeout(3000)  # the new session is built
                # poll every 20 ms: the "step N" text and the live image (its data URI's length and middle identify
                # a frame)
                page.evaluate("""() => { window.__seen = []; window.__imgs = []; window.__poll = setInterval(() => {
                    const el = [...document.querySelectorAll('[data-testid="stText"]')]
                        .find(e => e.innerText.startsWith('step '));
                    const v = el ? el.innerText : null;
                    if (v && (!window.__seen.length || window.__seen[window.__seen.length - 1][1] !== v))
                        window.__seen.push([performance.now(), v]);
                    const img = document.querySelector('[data-testid="stImage"] img');
                    const h = img ? img.src.length >> 1 : 0;
                    const k = img && img.complete && img.naturalWidth ? img.src.length + img.src.slice(h, h + 64) : null;
                    if (k && (!window.__imgs.length || window.__imgs[window.__imgs.length - 1][1] !== k))
                        window.__imgs.push([performance.now(), k]); }, 20); }""")
                for _ in range(3):  # a click that lands while the page reruns can be lost: retry until playing
                    page.locator(".st-key-live_play button").click()
                    try:
                        page.get_by_text("playing ·").wait_for(timeout=10_000)
                        break
                    except Exception:  # noqa: BLE001 - retried
                        pass
                page.wait_for_function(  # the first steps (dmd draws its teacher's ODE pairs first: about 3 s)
                    "() => window.__seen.length && window.__seen[window.__seen.length - 1][1] !== 'step 0'",
                    timeout=120_000)
                page.wait_for_timeout(1000)
                page.evaluate("() => { window.__seen = window.__seen.slice(-1); "
                              "window.__imgs = window.__imgs.slice(-1); }")
                page.wait_for_timeout(int(seconds * 1000))
                seen, imgs = page.evaluate("() => [window.__seen, window.__imgs]")
                if shots is not None:
                    shots.mkdir(parents=True, exist_ok=True)
                    page.screenshot(path=str(shots / f"live_{m}.png"))
                page.locator(".st-key-live_pause button").click()
                page.evaluate("() => clearInterval(window.__poll)")
                # a run that ends (sds: 400 steps) stops the counter: rates are over the span it moved
                span = max((seen[-1][0] - seen[0][0]) / 1000, 1e-9) if len(seen) > 1 else seconds
                steps = int(seen[-1][1].split()[1]) - int(seen[0][1].split()[1])
                gaps = [b_[0] - a_[0] for a_, b_ in zip(seen, seen[1:])]
                rows.append({"method": m, "steps_per_frame": k, "seconds": round(span, 1), "updates": len(seen) - 1,
                             "updates_per_s": round((len(seen) - 1) / span, 1),
                             "image_updates_per_s": round((len(imgs) - 1) / span, 1),
                             "steps_per_s": round(steps / span, 1),
                             "median_gap_ms": round(statistics.median(gaps), 0) if gaps else None,
                             "first_figure_s": round(first_figure, 1)})
                print(rows[-1], flush=True)
                page.wait_for_function("() => !document.querySelector('[data-testid=\"stStatusWidget\"]')",
                                       timeout=60_000)
            b.close()
    finally:
        proc.kill()
        proc.wait(timeout=10)
    return rows


SECTION = "## Live distillation"
RESULTS_JSON = Path(__file__).resolve().parent / "results" / "live.json"


def results_section(out: dict) -> str:
    """The "## Live distillation" section of bench/RESULTS.md from the measured numbers."""
    lines = [SECTION, "",
             "The Distill live page (`app/pages/4_Distill_live.py`, issue 14 section 1), measured by "
             "`python bench/live.py "
             f"--browser --write` on {out['cpus']} cores, torch on {out['threads']} thread, zoo teacher "
             f"`{TEACHER}`, the methods' default configs, 200 points per panel, the field on an 11 x 11 grid. The goal: "
             "at least 5 visible updates a second.", "",
             "**In the browser** (Streamlit on 127.0.0.1, headless Chromium with software rendering, 1024 x 768; Play "
             "for 10 s, from 1 s after the first step (dmd first draws its teacher's ODE pairs, about 3 s), the page's default `auto` steps per frame = about 80 ms of training): "
             "updates of the `step N` text and of the live image, counted by polling the page every 20 ms. Median over "
             f"{len(out.get('browser_runs', [])) or 1} sessions (a fresh server each), range in brackets. The machine "
             "was shared with other jobs: its 1-minute load average was "
             f"{' then '.join(str(v) for v in out.get('load_average', ('?',)))} (start, end) on its 2 cores, and "
             "the rates fall with it.", "",
             "| method | updates/s (step text) | updates/s (image) | training steps/s | median gap between frames | "
             "first figure after opening the page |",
             "|---|---|---|---|---|---|"]
    def rng(r, key, fmt="{:.1f}"):
        lo, hi = r[key + "_range"]
        return fmt.format(r[key]) + (f" ({fmt.format(lo)}-{fmt.format(hi)})" if lo != hi else "")

    for r in out.get("browser", []):
        lines.append(f"| {r['method']} | {rng(r, 'updates_per_s')} | {rng(r, 'image_updates_per_s')} | "
                     f"{rng(r, 'steps_per_s')} | {rng(r, 'median_gap_ms', '{:.0f}')} ms | "
                     f"{rng(r, 'first_figure_s')} s (cold server) |")
    if not out.get("browser"):
        lines.append("| (not measured: run with --browser) | | | | | |")
    lines += ["", "**In process** (the server's work per frame, no Streamlit, no browser: the ceiling): k training "
              "steps, `frame()` (student samples and the method's field), the frame as a PNG (`live_image`); the "
              "interactive plotly figure of a paused frame is timed separately.", "",
              "| method | steps per frame | frame (ms) | training (ms) | frame data (ms) | PNG image (ms) | "
              "plotly figure + JSON (ms) | frames/s |",
              "|---|---|---|---|---|---|---|---|"]
    for r in out["in_process"]:
        lines.append(f"| {r['method']} | {r['steps_per_frame']} | {r['frame_ms']} | {r['train_ms']} | "
                     f"{r['frame_data_ms']} | {r['image_ms']} | {r['plotly_figure_ms']} | {r['updates_per_s']} |")
    lines += ["", "What it took to get there (each measured on the page the same way):",
              "- A plotly chart cannot update in place in Streamlit 1.67: a new figure is a new element id, so the "
              "browser remounts and redraws it from scratch; at 5 frames a second the playing chart was blank in "
              "most screenshots. While playing the frame is a PNG (`lab.viz.live.live_image`, about 20 ms) swapped "
              "into one image; paused, the same frame is the interactive plotly figure.",
              "- `st.fragment(run_every=...)` with a timer shorter than a frame preempts the run before it draws "
              "(the step text moved 5-6 times a second, the image 1-2 times). One fragment run now draws frames in "
              "a loop for about 2 s (placeholders), then its timer starts the next run.",
              "- Streamlit runs `gc.collect()` after every script run; with torch and pandas loaded that took about "
              "150 ms. `gc.freeze()` once per process (the page) took it out (a text-and-figure fragment went from "
              "4.0 to 5.8 updates a second).",
              "- The loss and distance curves are plotly charts redrawn once a second (they blink then).", ""]
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--browser", action="store_true", help="also measure the page in headless Chromium")
    ap.add_argument("--frames", type=int, default=20)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--repeat", type=int, default=3, help="browser sessions (fresh server each); medians reported")
    ap.add_argument("--shots", type=Path, default=None, help="save a screenshot per method there (e.g. tests/_out)")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--write", action="store_true", help="rewrite the Live distillation section of bench/RESULTS.md "
                                                         f"(and keep the numbers in {RESULTS_JSON.relative_to(ROOT)})")
    ap.add_argument("--rows-only", action="store_true", help=f"measure nothing: use {RESULTS_JSON.relative_to(ROOT)}")
    a = ap.parse_args(argv)
    if a.rows_only:
        if not RESULTS_JSON.exists():
            raise SystemExit(f"no {RESULTS_JSON.relative_to(ROOT)} yet; run `python bench/live.py --browser --write`")
        out = json.loads(RESULTS_JSON.read_text())
        if a.write:
            write(out)
        return out
    load0 = os.getloadavg()[0]
    out = {"threads": os.environ["LAB_NUM_THREADS"], "cpus": os.cpu_count(), "in_process": in_process(frames=a.frames)}
    if a.browser:
        runs = [browser(seconds=a.seconds, shots=a.shots) for _ in range(a.repeat)]
        out["browser_runs"] = runs
        out["browser"] = []
        for i, r in enumerate(runs[0]):  # per method: the median over the sessions, and the range
            row = dict(r)
            for key in ("updates_per_s", "image_updates_per_s", "steps_per_s", "median_gap_ms", "first_figure_s"):
                vals = sorted(run[i][key] for run in runs if run[i][key] is not None)
                row[key] = statistics.median(vals) if vals else None
                row[key + "_range"] = (vals[0], vals[-1]) if vals else None
            out["browser"].append(row)
    out["load_average"] = (round(load0, 1), round(os.getloadavg()[0], 1))
    if a.json:
        a.json.write_text(json.dumps(out, indent=1))
    if a.write:
        RESULTS_JSON.parent.mkdir(parents=True, exist_ok=True)
        RESULTS_JSON.write_text(json.dumps(out, indent=1))
        write(out)
    return out


def write(out: dict, path=None) -> None:
    """Rewrite the Live distillation section of RESULTS.md (``path``, default bench/RESULTS.md); the rest stays."""
    from results_md import RESULTS_MD, replace_section  # bench/ is on the path when run as a script

    replace_section("live", results_section(out), RESULTS_MD if path is None else path)


if __name__ == "__main__":
    main()
