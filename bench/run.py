"""Benchmark: teachers vs distilled students on 2D data. Writes bench/RESULTS.md.

For each dataset: the teacher's sliced Wasserstein distance (SWD) to fresh data at 1, 2,
4, 8 and 50 NFE, and the noise floor. For each method: a student distilled here with the
method's DEFAULT config (each in its own subprocess, so peak memory is its own), its SWD
at each NFE it serves natively (of 1, 2, 4, 8), the ratio of its best native-NFE SWD to
the teacher's 50-NFE SWD, the distillation wall time, and how fast it converged: the
distillation time (excluding the evaluations themselves) at which its SWD first came
within 1.5x and within 1.25x of the teacher's 50-NFE SWD, checked 20 times per run.

Datasets: 8gaussians, moons, checkerboard (zoo teachers) and ``smiley``, a point cloud
loaded from ``bench/data/smiley.npy`` whose teacher is trained once by ``lab teacher
train`` into ``bench/teachers/smiley`` (committed, so the benchmark compares students only).

Each (dataset, method) result is kept as a JSON row in ``bench/results/`` and the 2D section of
RESULTS.md is rebuilt from all rows, so methods can be (re)measured one at a time. Only that section is
rewritten (between its markers, ``bench/results_md.py``): the digits, KD and other sections stay as they are.
``readme_summary`` is the README's copy of the summary (``bench/readme_tables.py`` renders it).

    python bench/run.py                                  # everything
    python bench/run.py --datasets moons --methods reflow
    python bench/run.py --missing                        # only rows not measured yet
    python bench/run.py --write                          # rebuild the 2D section of RESULTS.md from the rows
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
FILE_DATA = {"smiley": ROOT / "bench" / "data" / "smiley.npy"}
FILE_TEACHERS = {"smiley": ROOT / "bench" / "teachers" / "smiley"}
DATASETS = ("8gaussians", "moons", "checkerboard", "smiley")
NFES = (1, 2, 4, 8)
N = 5000
CHECKS = 20
GOAL_RATIO, GOAL_S = 1.25, 60.0
SECTION = "## 2D points: teachers and students (`python bench/run.py`)"


def source(dataset: str):
    from lab.data import toy2d

    if dataset in FILE_DATA:
        return toy2d.load_points(FILE_DATA[dataset])
    return toy2d.get(dataset)


def teacher(dataset: str, method: str | None = None):
    import lab
    from lab.errors import LabError
    from lab.runs import Run

    if dataset in FILE_TEACHERS:
        folder = FILE_TEACHERS[dataset]
        if not (folder / "model.json").exists():
            raise LabError(f"no teacher for {dataset} at {folder}; train it with "
                           f"`lab teacher train --data {FILE_DATA[dataset]} --out {folder}`")
        return Run.open(folder).load_model()
    entry = lab.zoo.student_teacher(dataset, method) if method else lab.zoo.entry_name("toy2d", dataset)
    return lab.zoo.load(entry, train_if_missing=False)


def load_avg() -> float:
    try:
        return os.getloadavg()[0]
    except OSError:
        return float("nan")


def child(dataset: str, method: str, out: str, seed: int, zoo: bool = False) -> None:
    import torch

    import lab
    from lab.diffusion import make_noise
    from lab.metrics import sliced_wasserstein

    torch.set_num_threads(int(os.environ.get("LAB_NUM_THREADS", "1")))
    src, tea = source(dataset), teacher(dataset, method)
    ref = src.sample(N, 4242)
    z = make_noise(N, 2, seed=11)
    with torch.no_grad():
        t50 = sliced_wasserstein(tea.sample(z=z, nfe=50, seed=3).x, ref)
    ref_small, z_small = src.sample(2000, 4343), make_noise(2000, 2, seed=12)
    with torch.no_grad():  # the convergence curve is judged against the teacher on the same 2000-sample set
        t50_small = sliced_wasserstein(tea.sample(z=z_small, nfe=50, seed=3).x, ref_small)
    load0 = load_avg()
    try:
        m = lab.get_method(method)(tea, src, seed=seed)
    except lab.LabError as e:  # e.g. a class-conditional method on an unconditional teacher
        Path(out).write_text(json.dumps({"dataset": dataset, "method": method, "na": str(e),
                                         "date": time.strftime("%Y-%m-%d %H:%M")}))
        return
    every = max(1, m.total_steps // CHECKS)
    curve, spent, t0 = [], 0.0, time.perf_counter()
    cpu_spent, c0 = 0.0, time.process_time()
    for state in lab.distill(m):
        if state.it % every == 0 or state.it == m.total_steps:
            e0, ec0 = time.perf_counter(), time.process_time()
            gen = m.generator()
            with torch.no_grad():
                ks = [k for k in gen.native_nfe if k in NFES] or [min(gen.native_nfe)]  # progressive: early stages take more steps
                best = min(sliced_wasserstein(gen.sample(z=z_small, nfe=k, seed=3).x, ref_small) for k in ks)
            curve.append((state.it, e0 - t0 - spent, best))
            spent += time.perf_counter() - e0
            cpu_spent += time.process_time() - ec0
    wall = time.perf_counter() - t0 - spent
    cpu = time.process_time() - c0 - cpu_spent
    gen = m.generator()
    row = {"dataset": dataset, "method": method, "teacher": getattr(tea, "card", {}).get("entry", dataset), "distill_s": wall, "distill_cpu_s": cpu, "steps": m.total_steps, "seed": seed, "teacher_swd@50": t50, "teacher_swd@50_curve": t50_small,
           "native_nfe": [k for k in gen.native_nfe if k in NFES], "curve": curve, "load_avg": [load0, load_avg()],
           "date": time.strftime("%Y-%m-%d %H:%M"), "machine": machine()}
    for k in row["native_nfe"]:
        t1 = time.perf_counter()
        with torch.no_grad():
            x = gen.sample(z=z, nfe=k, seed=3).x
        row[f"sample_s@{k}"] = time.perf_counter() - t1
        row[f"swd@{k}"] = sliced_wasserstein(x, ref)
    row["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if zoo and method in lab.zoo.student_methods(dataset):
        # the same default student `lab zoo build` would make: ship it
        recipe = {"method": method, "teacher": lab.zoo.student_teacher(dataset, method), "config": m.config_dict(), "seed": seed}
        lab.zoo.save_entry(lab.zoo.entry_name("toy2d", dataset, method), gen, recipe, wall)
    Path(out).write_text(json.dumps(row))


def teacher_row(dataset: str) -> dict:
    import torch

    from lab.diffusion import make_noise
    from lab.metrics import noise_floor, sliced_wasserstein

    src, tea = source(dataset), teacher(dataset)
    ref = src.sample(N, 4242)
    z = make_noise(N, 2, seed=11)
    row = {"dataset": dataset, "floor": noise_floor(src, N), "date": time.strftime("%Y-%m-%d %H:%M")}
    for k in (1, 2, 4, 8, 50):
        t1 = time.perf_counter()
        with torch.no_grad():
            x = tea.sample(z=z, nfe=k, seed=3).x
        row[f"sample_s@{k}"] = time.perf_counter() - t1
        row[f"swd@{k}"] = sliced_wasserstein(x, ref)
    return row


def machine() -> str:
    import torch

    from results_md import cpu_name  # bench/ is on the path when run as a script

    cpu = cpu_name()
    return (f"{platform.system()} {platform.machine()}, {cpu}, {os.cpu_count()} cores visible, "
            f"torch {torch.__version__} ({torch.get_num_threads()} threads), Python {platform.python_version()}")


def _path(dataset: str, method: str) -> Path:
    return RESULTS / f"{dataset}__{method}.json"


def _save(row: dict, path: Path) -> None:
    from lab.io import atomic_write_json

    RESULTS.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, row)


def main() -> None:
    from lab.methods import list_methods

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS), metavar="DATASET")
    ap.add_argument("--methods", nargs="+", default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--missing", action="store_true", help="only measure rows without a result yet")
    ap.add_argument("--write", action="store_true", help="only rebuild the 2D section of RESULTS.md from bench/results")
    ap.add_argument("--out", default=str(ROOT / "bench" / "RESULTS.md"))
    ap.add_argument("--zoo", action="store_true", help="also write each default student on a zoo dataset to assets/zoo")
    ap.add_argument("--jobs", type=int, default=1,
                    help="children run at once (each uses LAB_NUM_THREADS threads; on 2 cores 2 jobs inflate timings a little)")
    ap.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        child(a.child[0], a.child[1], a.child[2], a.seed, a.zoo)
        return
    methods = a.methods or list_methods()
    bad = [m for m in methods if m not in list_methods()]
    if bad:
        ap.error(f"unknown method(s) {bad}; allowed: {', '.join(list_methods())}")
    if a.jobs < 1:
        ap.error(f"--jobs must be >= 1, got {a.jobs}")
    jobs: list = []
    if not a.write:
        for ds in a.datasets:
            tp = _path(ds, "_teacher")
            if not (a.missing and tp.exists()):
                _save(teacher_row(ds), tp)
            for meth in methods:
                p = _path(ds, meth)
                if a.missing and p.exists():
                    continue
                jobs.append((ds, meth, p))
        running: list = []

        def reap(block: bool) -> None:
            for item in list(running):
                proc, ds, meth, p, tmp = item
                if block or proc.poll() is not None:
                    rc = proc.wait()
                    running.remove(item)
                    if rc != 0 or not tmp.exists():
                        print(f"[bench] {ds} / {meth} FAILED (exit {rc})", flush=True)
                        continue
                    _save(json.loads(tmp.read_text()), p)
                    tmp.unlink()
                    print(f"[bench] {ds} / {meth} done", flush=True)
                    if not block:
                        return

        for ds, meth, p in jobs:
            while len(running) >= a.jobs:
                reap(block=False)
                time.sleep(0.2)
            tmp = p.with_suffix(".child.tmp")
            print(f"[bench] {ds} / {meth} ...", flush=True)
            proc = subprocess.Popen([sys.executable, __file__, "--seed", str(a.seed), *(["--zoo"] if a.zoo else []),
                                     "--child", ds, meth, str(tmp)])
            running.append((proc, ds, meth, p, tmp))
        while running:
            reap(block=True)
    write(a.out)


def _secs(s: dict) -> float:
    """Distillation seconds judged against the goal: the child's CPU time when recorded (one torch thread,
    so it is what the run takes on an idle core; wall time is inflated when other jobs share the cores)."""
    return s.get("distill_cpu_s", s["distill_s"])


def judge(s: dict) -> tuple[int, float, bool, bool]:
    """(best native NFE, its SWD over the row's own teacher's 50-NFE SWD, quality goal met, time goal met)."""
    k = min(s["native_nfe"], key=lambda k: s[f"swd@{k}"])
    r = s[f"swd@{k}"] / s["teacher_swd@50"]  # the row's own teacher (the analytic one for conditional methods)
    return k, r, r <= GOAL_RATIO, _secs(s) <= GOAL_S


def summary_table(students: list, teachers: dict) -> list[str]:
    """One row per method: best-native-NFE ratio to the teacher at 50 NFE (and that NFE) and distillation
    seconds on each dataset; a check mark where the goal is met. Also pasted into the README."""
    dsets = [d for d in DATASETS if any(s["dataset"] == d for s in students)]
    by = {(s["method"], s["dataset"]): s for s in students}
    out = ["| method | " + " | ".join(dsets) + " | goal met |", "|---|" + "---|" * (len(dsets) + 1)]
    for meth in sorted({s["method"] for s in students}):
        cells, met = [], 0
        for d in dsets:
            s = by.get((meth, d))
            if s is None:
                cells.append("")
                continue
            k, r, ok_q, ok_t = judge(s)
            ok = ok_q and ok_t
            met += ok
            cells.append(f"{r:.2f}x @{k} in {_secs(s):.0f} s{' ✓' if ok else ''}")
        out.append(f"| `{meth}` | " + " | ".join(cells) + f" | {met}/{sum(1 for d in dsets if (meth, d) in by)} |")
    return out


def _first_within(curve, bound):
    for it, s, d in curve:
        if d <= bound:
            return s
    return None


def rows_2d(results: Path | None = None) -> list[dict]:
    """The 2D rows in ``results`` (default ``RESULTS``; teacher and student rows, other benchmarks' JSON skipped)."""
    results = RESULTS if results is None else Path(results)
    rows = [json.loads(p.read_text()) for p in sorted(results.glob("*__*.json"))]
    return [r for r in rows if isinstance(r, dict) and "dataset" in r]


def readme_summary(results: Path | None = None) -> str:
    """The README's copy of the summary (``bench/readme_tables.py`` puts it between its markers): the summary table
    and the line saying when and where the rows were measured."""
    rows = rows_2d(results)
    students = [r for r in rows if "method" in r and "na" not in r]
    if not students:
        raise LookupError(f"no 2D student rows in {results or RESULTS}; run: python bench/run.py")
    teachers = {r["dataset"]: r for r in rows if "floor" in r}
    days = sorted({r["date"][:10] for r in students})
    when = days[0] if len(days) == 1 else f"from {days[0]} to {days[-1]}"
    cores = {m.group(1) for r in students if (m := re.search(r"(\d+) cores visible", r.get("machine", "")))}
    where = f"on {cores.pop()} cores" if len(cores) == 1 else "on machines of " + " and ".join(sorted(cores)) + " cores"
    return "\n".join(summary_table(students, teachers)) + f"\n\nMeasured {when} {where}, one torch thread per run."


def write(out=None) -> str:
    """Rewrite the 2D section of RESULTS.md (``out``, default ``bench/RESULTS.md``) from the rows; only that section."""
    out = ROOT / "bench" / "RESULTS.md" if out is None else out
    rows = rows_2d()
    teachers = {r["dataset"]: r for r in rows if "floor" in r}
    na = [r for r in rows if "na" in r]
    students = [r for r in rows if "method" in r and "na" not in r]
    order = {d: i for i, d in enumerate(DATASETS)}
    students.sort(key=lambda r: (order.get(r["dataset"], 99), r["method"]))
    mach = students[0]["machine"] if students else machine()
    dates = [r["date"] for r in rows if "date" in r]
    lines = [SECTION, "", "Generated by `python bench/run.py` (rows in `bench/results/`, measured "
             f"{min(dates, default='-')} to {max(dates, default='-')}).", "",
             f"Machine: {mach}.", "",
             f"Sliced Wasserstein distance (SWD, 256 fixed projections) between {N} samples and {N} fresh data points, "
             "all models sampled from the same noise. Noise floor: SWD between two fresh data draws of the same size "
             "(mean of 5). Lower is better; values near the floor are indistinguishable from data at this sample size.",
             "", "### Teachers (Euler sampler)", "",
             "| dataset | floor | 1 NFE | 2 NFE | 4 NFE | 8 NFE | 50 NFE | sample s @50 |", "|---|---|---|---|---|---|---|---|"]
    for d in sorted(teachers, key=lambda d: order.get(d, 99)):
        t = teachers[d]
        lines.append(f"| {d} | {t['floor']:.4f} | " + " | ".join(f"{t[f'swd@{k}']:.4f}" for k in (1, 2, 4, 8, 50))
                     + f" | {t['sample_s@50']:.3f} |")
    lines += ["", "### Students (default config of each method, distilled here)", "",
              f"ratio = the student's best SWD over its native NFEs divided by the teacher's 50-NFE SWD. Goal: ratio <= "
              f"{GOAL_RATIO} and distillation <= {GOAL_S:.0f} s, judged on `cpu s` where recorded: the child process's CPU "
              "seconds for distillation alone (one torch thread, so this is the wall time on an idle core; `distill s` "
              "is the wall time measured, inflated when other work shares the 2 cores). `to 1.5x` / `to 1.25x`: distillation seconds until the "
              f"student's SWD (2000 samples, checked {CHECKS} times per run) first came within that factor of the "
              "teacher's 50-NFE SWD on the same 2000-sample set (`-`: never). `load` is the 1-minute load average when the run started "
              "(2 cores: above ~1 the timings are inflated by other work). Peak RSS is the whole child process "
              "(torch alone is about 450 MB). `seed`: the distillation seed (the methods retuned for issue 16 were tuned on "
              "seed 0 and are measured on seed 1).", "",
              "| dataset | method | steps | seed | distill s | cpu s | 1 NFE | 2 NFE | 4 NFE | 8 NFE | ratio (best) | to 1.5x "
              "| to 1.25x | goal met | load | peak RSS MB |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    misses = []
    for s in students:
        nat = s["native_nfe"]
        best_k, ratio, ok_q, ok_t = judge(s)
        why = "yes" if ok_q and ok_t else "no: " + ", ".join(w for w, ok in (("quality", ok_q), ("time", ok_t)) if not ok)
        if not (ok_q and ok_t):
            misses.append(f"{s['method']} on {s['dataset']} ({why[4:]})")
        tc = s["teacher_swd@50_curve"]
        c15 = _first_within(s["curve"], 1.5 * tc)
        c125 = _first_within(s["curve"], GOAL_RATIO * tc)
        cells = " | ".join(f"{s[f'swd@{k}']:.4f}" if k in nat else "" for k in NFES)
        cpu = f"{s['distill_cpu_s']:.1f}" if "distill_cpu_s" in s else "-"
        label = s["method"] + (" (analytic teacher)" if str(s.get("teacher", "")).endswith("/analytic") else "")
        lines.append(f"| {s['dataset']} | {label} | {s['steps']} | {s.get('seed', 0)} | {s['distill_s']:.1f} | {cpu} | {cells} | "
                     f"{ratio:.2f} (@{best_k}) | {'-' if c15 is None else f'{c15:.0f}'} | "
                     f"{'-' if c125 is None else f'{c125:.0f}'} | {why} | {s['load_avg'][0]:.1f} | {s['peak_rss_mb']:.0f} |")
    lines += ["", "### Misses", ""] + ([f"- {m}" for m in misses] or ["- none"])
    lines += ["", "### Summary", ""] + summary_table(students, teachers)
    if na:
        lines += ["", "### Not applicable here", "", "Methods that cannot run on this dataset's teacher (the reason is the "
                  "method's own error message):", ""]
        lines += [f"- {r['method']} on {r['dataset']}: {r['na']}" for r in sorted(na, key=lambda r: (order.get(r['dataset'], 99), r['method']))]
    text = "\n".join(lines) + "\n"
    from results_md import replace_section  # bench/ is on the path when run as a script

    replace_section("2d", text, out)  # only this section: digits, KD and the rest of the file stay as they are
    print(text)
    return text


if __name__ == "__main__":
    main()
