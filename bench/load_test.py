"""A bounded load test of the explorer: N concurrent sessions on the Generators page over loopback.

One `streamlit run app/Home.py` on 127.0.0.1. After a warm-up visit (the first visitor after start-up), a wave of
N sessions opens /Generators at once, and a second wave does it again once the first has been served. A session is
either a websocket client speaking Streamlit's own protocol (``--client ws``, the default: the server's whole work
for a visit, with no browser competing for the CPU) or a browser context in one headless Chromium
(``--client browser``: what a visitor sees, but on a 2-core machine 20 renderers drawing WebGL in software take
most of the CPU). Per session: the time to the first figure and to the end of the page's first run, and any error
(an exception shown, a failed run, a dropped connection, a timeout). The server's resident memory is sampled every
0.1 s: at start-up, after the warm-up, the peak during each wave and after each wave (its sessions closed, then
``--idle`` s), plus the kernel's VmHWM (peak) at the end.

Bounded memory: the last wave, the same load again, must not raise the settled memory by more than GROWTH_PCT
percent over the one before (a leak per session would add up wave after wave; Streamlit's caches are capped, but
with ``--seeds distinct`` they fill up over the first waves: 20 new seeds a wave against caps of 16 to 32 entries,
so use ``--waves 3`` or more there).

    python bench/load_test.py                       # 20 sessions, all the default view (the shared-link case)
    python bench/load_test.py --seeds distinct --waves 3   # every session another seed: cache misses, real compute
    python bench/load_test.py --client browser      # 20 Chromium contexts instead of websocket clients
    python bench/load_test.py --write               # append (or replace) the "Load test" section of RESULTS.md

Writes bench/results/load_test_<client>_<seeds>.json and prints a ready-to-paste markdown table; ``--write``
rebuilds the RESULTS.md section from every such JSON present.
"""
from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import platform
import signal
import statistics
import sys
import threading
import time
from pathlib import Path

# bench/app_speed.py: the server and the Chromium settings (loaded by path: bench/ is not a package, and a test
# that loads this file should not get bench/ on its sys.path)
_spec = importlib.util.spec_from_file_location("lab_bench_app_speed", Path(__file__).with_name("app_speed.py"))
app_speed = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(app_speed)
ARGS, CHART, CHROMIUM, _serve = app_speed.ARGS, app_speed.CHART, app_speed.CHROMIUM, app_speed._serve

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
SECTION = "## Load test"
GROWTH_PCT = 10.0  # the settled memory after wave 2 may exceed wave 1's by at most this
PAGE = "/Generators"

# in every page, before its own scripts: when the first figure appeared, when the first run ended (a figure is
# there, the script state is notRunning and no status widget), and the text of an exception if one is shown
INIT = """(() => {
  const t = window.__lab = {};
  const check = () => {
    const now = performance.now();
    if (t.first === undefined && document.querySelector(%s)) t.first = now;
    const app = document.querySelector('[data-testid="stApp"]');
    if (t.first !== undefined && t.done === undefined && app && app.dataset.testScriptState === 'notRunning'
        && !document.querySelector('[data-testid="stStatusWidget"]')) t.done = now;
    const exc = document.querySelector('[data-testid="stException"]');
    if (exc && t.error === undefined) t.error = (exc.innerText || 'exception').slice(0, 300);
  };
  new MutationObserver(check).observe(document, {subtree: true, childList: true, attributes: true});
})();""" % json.dumps(CHART)


def rss_mb(pid: int) -> float:
    """Resident memory of ``pid`` and its children, MB."""
    import psutil

    p = psutil.Process(pid)
    total = p.memory_info().rss
    for c in p.children(recursive=True):
        try:
            total += c.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total / 2**20


def vm_hwm_mb(pid: int) -> float | None:
    """The kernel's peak resident memory of ``pid`` (VmHWM), MB."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


class Sampler(threading.Thread):
    """Samples rss_mb(pid) every ``every`` s; ``peak()`` since the last ``reset()``."""

    def __init__(self, pid: int, every: float = 0.1):
        super().__init__(daemon=True)
        self.pid, self.every, self._peak, self._stop = pid, every, 0.0, threading.Event()

    def run(self):
        while not self._stop.is_set():
            try:
                self._peak = max(self._peak, rss_mb(self.pid))
            except Exception:  # noqa: BLE001 - the process is gone: nothing more to sample
                return
            time.sleep(self.every)

    def reset(self) -> None:
        self._peak = rss_mb(self.pid)

    def peak(self) -> float:
        return self._peak

    def stop(self) -> None:
        self._stop.set()


def ws_wave(url: str, paths: list[str], timeout_s: float = 240.0) -> list[dict]:
    """One websocket client per path, all connected at once, each speaking Streamlit's own protocol (a
    ``rerun_script`` BackMsg for the page and its query string, then the ForwardMsgs until ``script_finished``):
    the server's full work for a visit, without a browser drawing it. The clients stay connected until the last
    has finished (like visitors who stay on the page). Per session: first_s (the first plotly chart element
    received), done_s (the run finished) and error (an exception element, a failed run, a timeout). Runs its own
    event loop in a worker thread (the caller may be inside one: Playwright's sync API keeps a loop running)."""
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(lambda: asyncio.run(_ws_wave(url, paths, timeout_s))).result()


async def _ws_wave(url: str, paths: list[str], timeout_s: float) -> list[dict]:
    import asyncio

    import websockets
    from streamlit.proto.BackMsg_pb2 import BackMsg
    from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

    ok = {ForwardMsg.FINISHED_SUCCESSFULLY, ForwardMsg.FINISHED_FRAGMENT_RUN_SUCCESSFULLY}
    finished, left = asyncio.Event(), [len(paths)]
    stream = url.replace("http://", "ws://", 1) + "/_stcore/stream"

    async def session(path: str) -> dict:
        page, _, query = path.lstrip("/").partition("?")
        out = {"first_s": None, "done_s": None, "error": None}
        t0 = time.perf_counter()
        try:
            async with asyncio.timeout(timeout_s):
                # no keep-alive pings (a browser sends none either): a server busy for 20 s would fail them
                async with websockets.connect(stream, subprotocols=["streamlit"], max_size=None,
                                              ping_interval=None) as ws:
                    msg = BackMsg()
                    msg.rerun_script.page_name, msg.rerun_script.query_string = page, query
                    await ws.send(msg.SerializeToString())
                    while out["done_s"] is None:
                        fwd = ForwardMsg()
                        fwd.ParseFromString(await ws.recv())
                        kind = fwd.WhichOneof("type")
                        if kind == "delta" and fwd.delta.WhichOneof("type") == "new_element":
                            el = fwd.delta.new_element
                            if el.WhichOneof("type") == "plotly_chart" and out["first_s"] is None:
                                out["first_s"] = round(time.perf_counter() - t0, 2)
                            elif el.WhichOneof("type") == "exception" and out["error"] is None:
                                out["error"] = f"{el.exception.type}: {el.exception.message}"[:300]
                        elif kind == "script_finished":
                            out["done_s"] = round(time.perf_counter() - t0, 2)
                            if fwd.script_finished not in ok and out["error"] is None:
                                out["error"] = f"script finished with status {fwd.script_finished}"
                    left[0] -= 1
                    if not left[0]:
                        finished.set()
                    await finished.wait()  # stay connected until the whole wave is served
        except TimeoutError:
            out["error"] = out["error"] or (f"no complete page within {timeout_s:.0f} s" if out["done_s"] is None
                                            else None)
        except Exception as e:  # noqa: BLE001 - a refused or dropped connection is the session's error
            out["error"] = f"{type(e).__name__}: {e}"[:300]
        finally:
            if out["done_s"] is None:
                left[0] -= 1
                if not left[0]:
                    finished.set()
        return out

    return list(await asyncio.gather(*(session(p) for p in paths)))


def wave(browser, url: str, paths: list[str], timeout_s: float = 240.0) -> list[dict]:
    """Open every path in its own browser context at once (all navigations are started before any is waited on);
    wait for each page's first run to end. Per session: first_s, done_s (None on a timeout) and error."""
    ctxs, pages = [], []
    for _ in paths:
        ctx = browser.new_context(viewport={"width": 1024, "height": 768})
        ctx.add_init_script(INIT)
        ctxs.append(ctx)
        pages.append(ctx.new_page())
    try:
        deadline = time.monotonic() + timeout_s
        for page, path in zip(pages, paths):
            page.goto(url + path, wait_until="commit")
        out = []
        for page in pages:
            left = max(1.0, deadline - time.monotonic())
            try:
                page.wait_for_function("() => window.__lab && (window.__lab.done !== undefined"
                                       " || window.__lab.error !== undefined)", timeout=left * 1000)
            except Exception:  # noqa: BLE001 - recorded as the session's error
                pass
            t = page.evaluate("() => window.__lab || {}")
            first, done = t.get("first"), t.get("done")
            error = t.get("error") or (None if done is not None else f"no complete page within {timeout_s:.0f} s")
            out.append({"first_s": None if first is None else round(first / 1000, 2),
                        "done_s": None if done is None else round(done / 1000, 2), "error": error})
        return out
    finally:
        for ctx in ctxs:
            ctx.close()


def summary(sessions: list[dict]) -> dict:
    first = [s["first_s"] for s in sessions if s["first_s"] is not None]
    done = [s["done_s"] for s in sessions if s["done_s"] is not None]
    return {"sessions": len(sessions), "errors": sum(s["error"] is not None for s in sessions),
            "first_median_s": statistics.median(first) if first else None, "first_max_s": max(first, default=None),
            "done_median_s": statistics.median(done) if done else None, "done_max_s": max(done, default=None)}


def run(n: int, seeds: str, client: str, idle: float, timeout_s: float, waves: int = 2) -> dict:
    """Start a server, a warm-up visit, then ``waves`` waves of ``n`` sessions through ``client`` ("ws" or
    "browser"); returns the results (see the module docstring)."""
    load_start = os.getloadavg()
    proc, url = _serve()
    pid = proc.pid
    sampler = Sampler(pid)
    res: dict = {"date": time.strftime("%Y-%m-%d %H:%M"), "page": PAGE, "sessions": n, "seeds": seeds,
                 "client": client, "cpu": f"{os.cpu_count()} cores, {platform.machine()}",
                 "threads": os.environ.get("LAB_NUM_THREADS", "1"), "growth_goal_pct": GROWTH_PCT}
    with contextlib.ExitStack() as stack:
        stack.callback(lambda: (proc.kill(), proc.wait(timeout=10)))
        stack.callback(sampler.stop)
        if client == "browser":
            from playwright.sync_api import sync_playwright

            pw = stack.enter_context(sync_playwright())
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            stack.callback(browser.close)
            visit = lambda paths: wave(browser, url, paths, timeout_s)  # noqa: E731
        else:
            visit = lambda paths: ws_wave(url, paths, timeout_s)  # noqa: E731
        time.sleep(1.0)
        res["rss_start_mb"] = round(rss_mb(pid), 1)
        sampler.start()
        res["warmup"] = visit([PAGE])[0]
        time.sleep(idle)
        res["rss_after_warmup_mb"] = round(rss_mb(pid), 1)
        res["waves"] = []
        for w in range(waves):
            paths = [PAGE if seeds == "same" else f"{PAGE}?seed={1000 * (w + 1) + i}" for i in range(n)]
            sampler.reset()
            t0 = time.perf_counter()
            sessions = visit(paths)
            wall = time.perf_counter() - t0
            peak = sampler.peak()
            time.sleep(idle)
            res["waves"].append({**summary(sessions), "wall_s": round(wall, 1), "rss_peak_mb": round(peak, 1),
                                 "rss_after_mb": round(rss_mb(pid), 1), "per_session": sessions})
            brief = {k: v for k, v in res["waves"][-1].items() if k != "per_session"}
            print(f"wave {w + 1}: {json.dumps(brief)}", flush=True)
        res["vm_hwm_mb"] = vm_hwm_mb(pid)
    a, b = res["waves"][-2]["rss_after_mb"], res["waves"][-1]["rss_after_mb"]
    res["growth_pct"] = round(100 * (b - a) / a, 1)
    res["bounded"] = res["growth_pct"] <= GROWTH_PCT
    res["errors"] = sum(w["errors"] for w in res["waves"]) + (res["warmup"]["error"] is not None)
    res["load_avg"] = {"start": [round(x, 2) for x in load_start], "end": [round(x, 2) for x in os.getloadavg()]}
    return res


def result_path(seeds: str, client: str) -> Path:
    return RESULTS / f"load_test_{client}_{seeds}.json"


CLIENTS = {"ws": "websocket clients (Streamlit's protocol, no browser: the server's own work)",
           "browser": "browser contexts in one headless Chromium (the renderers share the CPU with the server)"}


def table(res: dict) -> str:
    """The result as a markdown table (one row per wave), with a line on the set-up and the memory."""
    seeds = ("every session the default view" if res["seeds"] == "same" else
             "every session another seed (`?seed=...`: cache misses, each session samples its own panels)")
    f = lambda v: "–" if v is None else f"{v:.1f}"  # noqa: E731
    lines = [f"**{res['sessions']} concurrent sessions on {res['page']}**: {CLIENTS[res['client']]}; {seeds} "
             f"(`--client {res['client']} --seeds {res['seeds']}`, {res['date']}, {res['cpu']}; 1-minute load "
             f"average {res['load_avg']['start'][0]:.1f} at the start, {res['load_avg']['end'][0]:.1f} at the end). "
             f"Warm-up visit: first figure {f(res['warmup']['first_s'])} s, page complete "
             f"{f(res['warmup']['done_s'])} s.", "",
             "| wave | sessions | errors | first figure, median (s) | first figure, max (s) "
             "| page complete, median (s) | page complete, max (s) | server RSS peak (MB) | server RSS after (MB) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for i, w in enumerate(res["waves"], 1):
        lines.append(f"| {i} | {w['sessions']} | {w['errors']} | {f(w['first_median_s'])} | {f(w['first_max_s'])} | "
                     f"{f(w['done_median_s'])} | {f(w['done_max_s'])} | {w['rss_peak_mb']:.0f} | "
                     f"{w['rss_after_mb']:.0f} |")
    lines += ["", f"Server RSS: {res['rss_start_mb']:.0f} MB at start-up, {res['rss_after_warmup_mb']:.0f} MB after "
                  f"the warm-up visit, VmHWM (peak) {res['vm_hwm_mb'] or 0:.0f} MB. Wave {len(res['waves'])} "
                  f"settled {res['growth_pct']:+.1f}% against wave {len(res['waves']) - 1} "
                  f"(goal: at most +{res['growth_goal_pct']:g}%): "
                  f"{'bounded' if res['bounded'] else 'NOT bounded'}; errors: {res['errors']}."]
    return "\n".join(lines) + "\n"


def write(texts: list[str], path=None) -> None:
    """Rewrite the "Load test" section of RESULTS.md (``path``, default bench/RESULTS.md) in place; the rest stays."""
    intro = ("`python bench/load_test.py`: N sessions open the Generators page at once against one `streamlit run` "
             "on 127.0.0.1 (after one warm-up visit), then another wave of N once the one before has been served. "
             "First figure: the first plotly chart received (websocket clients) or drawn (browser, the page's own "
             "clock from its navigation); page complete: the page's first script run over. Memory: the server's "
             "resident set (psutil), its peak during a wave, and after it (the wave's sessions closed, then 5 s); "
             "bounded when the last wave adds at most 10% to the one before. The 1-minute load averages say how "
             "busy the 2 cores were (other jobs shared them): re-run on an idle machine for the reference numbers.")
    text = SECTION + "\n\n" + intro + "\n\n" + "\n".join(texts)
    from results_md import RESULTS_MD, replace_section  # bench/ is on the path when run as a script

    replace_section("load-test", text, RESULTS_MD if path is None else path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sessions", type=int, default=20)
    ap.add_argument("--seeds", choices=["same", "distinct"], default="same")
    ap.add_argument("--client", choices=list(CLIENTS), default="ws")
    ap.add_argument("--waves", type=int, default=2,
                    help="waves after the warm-up (at least 2); memory is bounded if the last adds at most "
                         f"{GROWTH_PCT:g}%% over the one before (--seeds distinct: caches fill for a few waves)")
    ap.add_argument("--idle", type=float, default=5.0, help="seconds after a wave before its memory is read")
    ap.add_argument("--timeout", type=float, default=300.0, help="seconds a wave may take")
    ap.add_argument("--write", action="store_true",
                    help="only rewrite RESULTS.md's Load test section from the JSON results present")
    a = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # a kill still stops the server (the cleanup runs)
    if a.write:
        found = [result_path(s, c) for c in CLIENTS for s in ("same", "distinct") if result_path(s, c).exists()]
        if not found:
            raise SystemExit("no bench/results/load_test_*.json yet; run `python bench/load_test.py` first")
        write([table(json.loads(p.read_text())) for p in found])
        print(f"wrote the {SECTION!r} section of bench/RESULTS.md from {', '.join(p.name for p in found)}")
        return
    if a.sessions < 1 or a.waves < 2:
        raise SystemExit(f"--sessions must be at least 1 and --waves at least 2, got {a.sessions} and {a.waves}")
    res = run(a.sessions, a.seeds, a.client, a.idle, a.timeout, a.waves)
    RESULTS.mkdir(parents=True, exist_ok=True)
    result_path(a.seeds, a.client).write_text(json.dumps(res, indent=1))
    print(table(res))

if __name__ == "__main__":
    main()
