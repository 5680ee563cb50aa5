"""Time to first figure of each explorer page, in headless Chromium against a real `streamlit run`.

For each page: a fresh server started as `make demo` starts it (app/serve.py: imports and the first teacher warmed
before it listens), so nothing is cached from an earlier page; one cold visit (the first visitor after `make demo`) and then warm visits in new browser tabs (later visitors: Streamlit's caches
are filled). Time to first figure = from `page.goto` to the first plotly chart attached to the page.
Median of the warm visits; the cold one is reported on its own. A page whose first run ends without any figure
(the Runs page with no run folder) is recorded as "no figure" as soon as that run is over (it used to wait for the
full timeout, three minutes a visit).

    python bench/app_speed.py                    # every page, 3 warm visits each
    python bench/app_speed.py --pages Generators Digits --warm 5
    python bench/app_speed.py --write            # rebuild the "Explorer speed" section of RESULTS.md

Goal (issue 14, section 8): the first figure within 5 s of the page loading on an idle 2-core machine.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "app_speed.json"
SECTION = "## Explorer speed (time to first figure)"
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"]
GOAL_S = 5.0
CHART = "[data-testid='stPlotlyChart'] .js-plotly-plot, [data-testid='stPlotlyChart'] .main-svg"


def pages() -> dict[str, str]:
    """Page name -> URL path, from the files in app/pages (Streamlit's URL is the name without its number)."""
    out = {"Home": "/"}
    for p in sorted((ROOT / "app" / "pages").glob("*.py")):
        name = p.stem.split("_", 1)[1] if p.stem[0].isdigit() else p.stem
        out[name] = "/" + name
    return out


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve():
    port = _port()
    env = {**os.environ, "LAB_NUM_THREADS": os.environ.get("LAB_NUM_THREADS", "1")}
    # what `make demo` runs (`lab app`): app/serve.py warms up (imports, the first teacher), then streamlit serves
    proc = subprocess.Popen([sys.executable, "app/serve.py", "--server.port", str(port), "--server.address",
                             "127.0.0.1"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            with urllib.request.urlopen(url + "/_stcore/health", timeout=2) as r:
                if r.status == 200:
                    return proc, url
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("streamlit did not start")


# a figure is drawn, or the page's first run is over (state notRunning, no status widget) without any chart element:
# a page without a figure (the Runs page with no run folder) ends the wait at once instead of at the timeout
FIGURE_OR_NONE = """() => {
  if (document.querySelector(%s)) return true;
  const app = document.querySelector('[data-testid="stApp"]');
  return !!app && app.dataset.testScriptState === 'notRunning'
      && !document.querySelector('[data-testid="stStatusWidget"]')
      && !document.querySelector('[data-testid="stPlotlyChart"]');
}""" % json.dumps(CHART)
GRACE_S = 3.0  # after a run without a chart element: how long a late chart may still take to appear


def first_figure_s(browser, url: str, timeout_s: float = 180.0) -> float | None:
    """Seconds from navigation to the first plotly chart on the page (None: the page's first run ended without a
    figure, or no chart within the timeout)."""
    page = browser.new_page(viewport={"width": 1024, "height": 768})
    try:
        t0 = time.perf_counter()
        page.goto(url, wait_until="commit")
        try:
            page.wait_for_function(FIGURE_OR_NONE, timeout=timeout_s * 1000)
            if not page.locator(CHART).count():
                page.wait_for_selector(CHART, state="attached", timeout=GRACE_S * 1000)
        except Exception:  # noqa: BLE001 - a page without a figure (or a timeout) is recorded as None
            return None
        return round(time.perf_counter() - t0, 2)
    finally:
        page.close()


def measure(names: list[str], warm: int) -> list[dict]:
    from playwright.sync_api import sync_playwright

    rows = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            for name in names:
                proc, url = _serve()
                try:
                    cold = first_figure_s(browser, url + pages()[name])
                    warms = [first_figure_s(browser, url + pages()[name]) for _ in range(warm)]
                finally:
                    proc.kill()
                    proc.wait(timeout=10)
                ok = [w for w in warms if w is not None]
                rows.append({"page": name, "cold_s": cold, "warm_median_s": statistics.median(ok) if ok else None,
                             "warm_s": warms})
                print(rows[-1], flush=True)
        finally:
            browser.close()
    return rows


def write(path=None) -> str:
    """Rewrite the Explorer speed section of RESULTS.md (``path``, default bench/RESULTS.md) from the JSON."""
    data = json.loads(RESULTS.read_text())
    lines = [SECTION, "",
             f"Headless Chromium at 1024x768 against `lab app` (app/serve.py: `make demo`'s server) on 127.0.0.1, "
             f"{data['cpu']}; a fresh server per page. Cold: the first visit after start-up; warm: the median of "
             f"{data['warm']} later visits in new tabs. Goal: the first figure within {GOAL_S:.0f} s "
             f"(`python bench/app_speed.py`, {data['date']}).", "",
             "| page | cold (s) | warm median (s) | goal |", "|---|---|---|---|"]
    for r in data["rows"]:
        c, w = r["cold_s"], r["warm_median_s"]
        if c is None and w is None:
            verdict = "– (the page drew no figure: nothing to show yet, e.g. no run folders)"
        else:
            verdict = " · ".join(f"{k}: {'met' if v is not None and v <= GOAL_S else 'missed'}"
                                 for k, v in (("cold", c), ("warm", w)))
        before = "".join(f" (earlier run: {e})" for e in r.get("earlier_cold_s", []))
        lines.append(f"| {r['page']} | {c if c is not None else 'no figure'}{before} | "
                     f"{w if w is not None else 'no figure'} | {verdict} |")
    text = "\n".join(lines) + "\n"
    from results_md import RESULTS_MD, replace_section  # bench/ is on the path when run as a script

    replace_section("app-speed", text, RESULTS_MD if path is None else path)  # only this section
    return text


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pages", nargs="*", default=None, help=f"pages (default: all of {', '.join(pages())})")
    ap.add_argument("--warm", type=int, default=3)
    ap.add_argument("--write", action="store_true", help="only rewrite the RESULTS.md section from the JSON")
    a = ap.parse_args()
    if a.write:
        print(write())
        return
    names = a.pages or [n for n in pages() if n != "Home"]
    bad = [n for n in names if n not in pages()]
    if bad:
        raise SystemExit(f"unknown page(s) {', '.join(bad)}; allowed: {', '.join(pages())}")
    rows = measure(names, a.warm)
    if RESULTS.exists() and a.pages:  # a re-measured subset: the other pages keep their rows, and a page measured
        # again keeps its earlier cold times (the spread between runs on one machine is about 1 s)
        old = {r["page"]: r for r in json.loads(RESULTS.read_text())["rows"]}
        for r in rows:
            if r["page"] in old:
                o = old[r["page"]]
                r["earlier_cold_s"] = [*o.get("earlier_cold_s", []), o["cold_s"]]
        new = {r["page"]: r for r in rows}
        rows = [new.get(name, r) for name, r in old.items()] + [r for r in rows if r["page"] not in old]
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"date": time.strftime("%Y-%m-%d"), "warm": a.warm, "rows": rows,
                                   "cpu": f"{os.cpu_count()} cores, {platform.machine()}",
                                   "threads": os.environ.get("LAB_NUM_THREADS", "1")}, indent=1))
    print(write())


if __name__ == "__main__":
    main()
