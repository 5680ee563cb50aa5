"""How long the test suite takes: runs it (or reads a finished run's log) and keeps the figures in bench/results/suite.json.

Records the tests passed (and failed, errors, skipped), pytest's own time (its summary line), the wall time of
the whole command, the xdist workers, the commit and the machine, and rewrites the "Test suite" section of
bench/RESULTS.md. The README's and RELIABILITY.md's suite figures are rendered from suite.json by
``bench/readme_tables.py``.

    python bench/suite_time.py                  # make test's pytest command here (LAB_NUM_THREADS=1, -n 2 --dist loadfile)
    python bench/suite_time.py --clone          # a clean clone of HEAD in a temporary folder, `make test` there:
                                                # the wall time includes creating .venv and installing
    python bench/suite_time.py --log test.log --time-log time.log --clone-dir /tmp/cc
                                                # a finished run: its pytest output, and `time`'s output for the
                                                # wall time (a `make test` in a fresh clone: with the install)
    python bench/suite_time.py --cmd ".venv/bin/python -m pytest tests/test_io.py" --out /tmp/suite.json
    python bench/suite_time.py --write          # only rewrite the RESULTS.md section from suite.json

Only a run that covers the whole suite (the default command, ``--clone``, or a log of ``make test``) belongs in
bench/results/suite.json; point ``--out`` elsewhere for anything else.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "suite.json"
SECTION = "## Test suite (`python bench/suite_time.py`)"
WORKERS = 2  # the Makefile's TEST_WORKERS default
#: `make test`'s pytest command (Makefile: `$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile`)
MAKE_TEST = f".venv/bin/python -m pytest -n {WORKERS} --dist loadfile"
_COUNTS = ("passed", "failed", "errors", "error", "skipped", "xfailed", "xpassed", "deselected", "warnings", "warning")


def parse_pytest(text: str) -> dict:
    """Counts and seconds from pytest's last summary line (``== 1322 passed, 67 warnings in 696.30s (0:11:36) ==``, or
    ``-q``'s bare ``1 failed, 3 passed in 2.56s``), and the xdist worker count (``created: 2/2 workers``)."""
    lines = re.findall(r"(?m)^(?:=+ )?(\d+ \w+(?:, \d+ \w+)*) in ([\d.]+)s(?: \([\d:]+\))?(?: =+)?\s*$", text)
    if not lines:
        raise ValueError("no pytest summary line (`== N passed ... in S s ==`) in the log")
    body, secs = lines[-1]
    out = {"pytest_s": float(secs), "summary": f"{body} in {secs}s"}
    for n, word in re.findall(r"(\d+) (\w+)", body):
        if word in _COUNTS:
            key = {"error": "errors", "warning": "warnings"}.get(word, word)
            out[key] = int(n)
    for key in ("passed", "failed", "errors", "skipped"):
        out.setdefault(key, 0)
    w = re.findall(r"(?m)^created: (\d+)/\d+ workers", text)
    out["workers"] = int(w[-1]) if w else 1
    return out


def parse_time(text: str) -> float:
    """The wall seconds of a ``time`` output (bash's ``real 13m10.459s`` or GNU time's ``0:13:10.45elapsed``)."""
    m = re.search(r"(?m)^real\s+(?:(\d+)h)?(?:(\d+)m)?([\d.]+)s", text)
    if m:
        h, mi, s = m.groups()
        return int(h or 0) * 3600 + int(mi or 0) * 60 + float(s)
    m = re.search(r"(?:(\d+):)?(\d+):([\d.]+)elapsed", text)
    if m:
        h, mi, s = m.groups()
        return int(h or 0) * 3600 + int(mi) * 60 + float(s)
    raise ValueError("no wall time (`real 13m10.459s` or `0:13:10.45elapsed`) in the time log")


def _commit(folder: Path) -> str | None:
    try:
        return subprocess.run(["git", "-C", str(folder), "rev-parse", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def _dirty(folder: Path) -> bool:
    try:
        out = subprocess.run(["git", "-C", str(folder), "status", "--porcelain", "--untracked-files=no"],
                             capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return False
    return bool(out.strip())


def machine() -> dict:
    from results_md import cpu_name

    cpu = cpu_name()
    return {"platform": platform.platform(), "cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version()}


def _load() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def run(cmd: list[str], cwd: Path, log: Path) -> tuple[float, str, int]:
    """Run ``cmd`` in ``cwd`` (LAB_NUM_THREADS=1 as the Makefile exports), its output teed to ``log``: (wall s, output,
    exit code)."""
    env = {**os.environ, "LAB_NUM_THREADS": "1"}
    t0 = time.perf_counter()
    with open(log, "w") as f:
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for line in proc.stdout:
            f.write(line)
            sys.stdout.write(line)
        rc = proc.wait()
    return time.perf_counter() - t0, log.read_text(), rc


def minutes(s: float) -> str:
    """``696.3`` -> ``11 min 36 s`` (the README's style)."""
    s = int(round(s))
    return f"{s // 60} min {s % 60} s" if s >= 60 else f"{s} s"


def _or_dash(v) -> str:
    return "–" if v is None else str(v)


def section(r: dict) -> str:
    counts = ", ".join(f"{r[k]:,} {k}" for k in ("passed", "failed", "errors", "skipped") if r.get(k) or k == "passed")
    wall = f"{minutes(r['wall_s'])}" + (" (including the install in a fresh clone)" if r.get("with_install") else "")
    lines = [SECTION, "",
             f"The whole suite, as `make test` runs it (`{r['command']}`, {r['workers']} xdist worker(s), one torch "
             f"thread each), on commit `{(r.get('commit') or 'unknown')[:12]}`"
             f"{' with uncommitted changes' if r.get('dirty') else ''}, {r['date']}; source: {r['source']}.", "",
             "| tests | pytest time | wall time | machine | load average (start, end) |", "|---|---|---|---|---|",
             f"| {counts} | {minutes(r['pytest_s'])} ({r['pytest_s']:.1f} s) | {wall} | {r['machine']['cores']} cores, "
             f"{r['machine']['cpu']}, Python {r['machine']['python']} | "
             f"{_or_dash(r.get('load_start'))}, {_or_dash(r.get('load_end'))} |"]
    return "\n".join(lines) + "\n"


def write(path=None, results: Path = RESULTS) -> str:
    """Rewrite the Test suite section of RESULTS.md (``path``, default bench/RESULTS.md) from ``results``."""
    from results_md import RESULTS_MD, replace_section  # bench/ is on the path when run as a script

    text = section(json.loads(Path(results).read_text()))
    replace_section("suite", text, RESULTS_MD if path is None else path)
    return text


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    how = ap.add_mutually_exclusive_group()
    how.add_argument("--cmd", default=None, help=f"the command to time (default: `{MAKE_TEST}`)")
    how.add_argument("--clone", action="store_true", help="clone HEAD into a temporary folder and run `make test` there")
    how.add_argument("--log", type=Path, default=None, help="parse this finished run's pytest output instead")
    ap.add_argument("--time-log", type=Path, default=None, help="with --log: `time`'s output, for the wall time")
    ap.add_argument("--clone-dir", type=Path, default=None,
                    help="with --log: the fresh clone the logged `make test` ran in (its commit is recorded, and the "
                         "wall time counts as including the install)")
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--write", action="store_true", help="only rewrite the RESULTS.md section from --out")
    a = ap.parse_args(argv)
    if a.write:
        print(write(results=a.out))
        return 0
    rec = {"date": time.strftime("%Y-%m-%d %H:%M"), "machine": machine(), "load_start": _load()}
    if a.log:
        text = a.log.read_text(errors="replace")
        rec.update(parse_pytest(text))
        rec["wall_s"] = parse_time(a.time_log.read_text()) if a.time_log else None
        rec["with_install"] = bool(a.clone_dir and a.time_log)
        rec["commit"] = _commit(a.clone_dir) if a.clone_dir else None
        rec["dirty"] = _dirty(a.clone_dir) if a.clone_dir else None
        rec["command"] = "make test" if a.clone_dir else MAKE_TEST
        rec["source"] = ("`make test` in a fresh clone" if a.clone_dir else "a finished run") + (
            ", its pytest output" + (" and `time`'s output" if a.time_log else "") + " parsed (`--log`)")
        rec["date"] = time.strftime("%Y-%m-%d %H:%M", time.localtime(a.log.stat().st_mtime))
        rec.pop("load_start")
        rc = 0 if not rec["failed"] and not rec["errors"] else 1
    elif a.clone:
        with tempfile.TemporaryDirectory(prefix="suite-clone-") as tmp:
            clone = Path(tmp) / "repo"
            subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True)
            wall, text, rc = run(["make", "test"], clone, Path(tmp) / "test.log")
            rec.update(parse_pytest(text))
            rec.update({"wall_s": wall, "with_install": True, "commit": _commit(clone), "dirty": False,
                        "command": "make test", "source": "`make test` in a clean clone of HEAD (bench/suite_time.py --clone)"})
    else:
        cmd = a.cmd or MAKE_TEST
        with tempfile.TemporaryDirectory(prefix="suite-") as tmp:
            wall, text, rc = run(shlex.split(cmd), ROOT, Path(tmp) / "test.log")
        rec.update(parse_pytest(text))
        rec.update({"wall_s": wall, "with_install": False, "commit": _commit(ROOT), "dirty": _dirty(ROOT),
                    "command": cmd, "source": "bench/suite_time.py, run in the working tree"})
    if rec.get("wall_s") is None:
        rec["wall_s"] = rec["pytest_s"]
    rec["load_end"] = _load() if "load_start" in rec else None
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(rec, indent=1))
    print(f"{rec['summary']}; wall {minutes(rec['wall_s'])} -> {a.out}")
    if a.out.resolve() == RESULTS.resolve():
        print(write())
    return rc


if __name__ == "__main__":
    sys.exit(main())
