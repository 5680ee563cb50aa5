"""Benchmark on 8x8 digits: the shipped class-conditional UNet teacher against students distilled here.

For the teacher: FD-digits, KID, precision/recall, class accuracy and within-class diversity
at 1, 2, 4, 8 and 50 NFE, and the noise floor (the train split against the test split at the
same sample size). For each method: a student distilled from ``digits/teacher`` with the
method's digits recipe (its class's ``digits_recipe``, which the zoo uses too; else ``SHORT_RECIPE``),
each in its own subprocess with one thread; the same metrics at each NFE it serves natively
of 1, 2, 4; and the distillation wall and CPU time.

Goal (issue 4): 1- to 2-step FD within 1.5x of the teacher's 50-NFE FD in at most 20
minutes per method on 2 cores. Samples: 1000, labels 0..9 cycled, the same noise for
every model.

    python bench/digits.py                          # every image method (data_kinds has "images")
    python bench/digits.py --methods dmd consistency
    python bench/digits.py --zoo                    # also write the zoo students (digits/<method>)
    python bench/digits.py --write                  # rebuild the digits section of RESULTS.md
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "digits"
NFES = (1, 2, 4)
TEACHER_NFES = (1, 2, 4, 8, 50)
N = 1000
GOAL_RATIO, GOAL_S = 1.5, 20 * 60.0
KEYS = ("fd", "kid", "precision", "recall", "accuracy", "diversity")
SECTION = "## Digits (8x8, class-conditional UNet teacher)"
#: methods without a zoo recipe run this short fixed budget (their defaults are sized for 2D MLPs)
SHORT_RECIPE = {"steps": 400, "batch": 32, "lr": 1e-4}


def _metrics(gen, nfe, **kw) -> dict:
    import torch

    from lab.diffusion import make_noise
    from lab.metrics import images as im

    y = torch.arange(N) % 10
    z = make_noise(N, (1, 8, 8), seed=99)
    x = gen.sample(z=z, nfe=nfe, seed=7, y=y, **kw).x
    m = im.image_metrics(x.cpu(), y)
    return {k: round(float(m[k]), 4) for k in KEYS}


def methods() -> list[str]:
    """The registered methods that take image data."""
    import lab  # inside, as everywhere here: `--write` runs without loading lab and torch

    return [m for m in lab.list_methods() if "images" in lab.get_method(m).data_kinds]


def method_recipe(method: str) -> dict:
    """The method's digits recipe (``digits_recipe``, the zoo's too), else the short fixed budget."""
    import lab  # inside: see methods()

    return dict(lab.get_method(method).digits_recipe or SHORT_RECIPE)


def run_teacher() -> dict:
    import lab
    from lab.metrics import images as im

    t = lab.zoo.load("digits/teacher", train_if_missing=False)
    row = {"model": "teacher", "nfe": {str(k): _metrics(t, k) for k in TEACHER_NFES}}
    row["floor"] = {k: round(float(v), 4) for k, v in im.noise_floor("digits", n=N).items() if k in KEYS}
    return row


def run_method(method: str, zoo: bool) -> dict:
    import torch

    import lab
    from lab.runs.loop import ProgressBar, run_to_end

    teacher = lab.zoo.load("digits/teacher", train_if_missing=False)
    m = lab.get_method(method)(teacher, "digits", method_recipe(method), seed=0)
    c0, t0 = time.process_time(), time.perf_counter()
    run_to_end(m, callbacks=[ProgressBar(f"digits {method}")])
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    gen = m.generator().eval()
    native = [k for k in NFES if not gen.native_nfe or k in gen.native_nfe] or [min(gen.native_nfe)]
    with torch.no_grad():
        row = {"model": method, "config": m.config_dict(), "wall_s": round(wall, 1), "cpu_s": round(cpu, 1),
               "nfe": {str(k): _metrics(gen, k) for k in native}}
    if zoo and m.zoo_digits:
        recipe = {"method": method, "teacher": "digits/teacher", "config": m.config_dict(), "seed": 0}
        lab.zoo.save_entry(lab.zoo.entry_name("images", "digits", method), gen, recipe, wall)
    return row


def _rows() -> dict:
    return {p.stem: json.loads(p.read_text()) for p in sorted(RESULTS.glob("*.json"))}


def readme_teacher() -> str:
    """The README's sentence on the teacher: its FD at each NFE, the noise floor, its class accuracy at 1 and 50."""
    t = _rows().get("teacher")
    if t is None:
        raise LookupError(f"no {RESULTS / 'teacher.json'}; run: python bench/digits.py")
    ks = [k for k in ("1", "2", "4", "50") if k in t["nfe"]]
    fds = " / ".join(f"{t['nfe'][k]['fd']:.2f}" for k in ks)
    return (f"Teacher: FD {fds} at {' / '.join(ks)} NFE (noise floor "
            f"{t['floor']['fd']:.2f}), class accuracy {t['nfe']['1']['accuracy']:.2f} at 1 step and "
            f"{t['nfe']['50']['accuracy']:.2f} at 50.")


def readme_table() -> str:
    """The README's goal table: each method's best 1- or 2-NFE FD over the teacher's 50-NFE FD (its other native NFEs
    in brackets), CPU minutes of distillation, and whether the goal is met; best ratio first."""
    rows = _rows()
    if "teacher" not in rows or len(rows) < 2:
        raise LookupError(f"no digits rows in {RESULTS}; run: python bench/digits.py")
    fd50 = rows["teacher"]["nfe"]["50"]["fd"]
    out = []
    for name, r in rows.items():
        if name == "teacher":
            continue
        ratios = {int(k): m["fd"] / fd50 for k, m in r["nfe"].items()}
        few = {k: v for k, v in ratios.items() if k <= 2}
        best = min(few, key=few.get) if few else None
        other = ", ".join(f"{v:.2f}x @{k}" for k, v in sorted(ratios.items()) if k != best)
        cell = (f"{few[best]:.2f}x @{best}" if best is not None else "no 1-2 step sampler") + (f" ({other})" if other else "")
        ok = best is not None and few[best] <= GOAL_RATIO and r["cpu_s"] <= GOAL_S
        out.append((few[best] if best is not None else float("inf"), name,
                    f"| `{name}` | {cell} | {r['cpu_s'] / 60:.1f} | {'✓' if ok else 'no'} |"))
    return "\n".join(["| method | best 1-2 NFE FD ratio (other NFEs) | CPU minutes | goal met |", "|---|---|---|---|",
                      *(line for _, _, line in sorted(out))])


def write(path=None) -> str:
    """Rewrite this benchmark's section of RESULTS.md (``path``, default ``bench/RESULTS.md``) from the rows in
    ``RESULTS``; every other section of the file stays byte for byte."""
    rows = {p.stem: json.loads(p.read_text()) for p in sorted(RESULTS.glob("*.json"))}
    if "teacher" not in rows:
        return ""
    t = rows["teacher"]
    fd50 = t["nfe"]["50"]["fd"]
    out = [SECTION, "",
           f"Metrics from {N} class-conditional samples (labels 0..9 cycled, same noise for every model) against the "
           f"360 test images; features and classifier are the shipped judges (`lab.metrics.images`). "
           f"Goal: 1- to 2-step FD within {GOAL_RATIO}x of the teacher at 50 NFE in at most {GOAL_S / 60:.0f} min per method.",
           "", "| model | NFE | FD | KID | precision | recall | accuracy | diversity | FD / teacher@50 | train (wall / CPU s) |",
           "|---|---|---|---|---|---|---|---|---|---|"]
    fl = t["floor"]
    out.append(f"| noise floor (train vs test) | - | {fl['fd']:.2f} | {fl['kid']:.4f} | {fl['precision']:.3f} | "
               f"{fl['recall']:.3f} | {fl.get('accuracy', float('nan')):.3f} | {fl['diversity']:.2f} | | |")
    for k, m in t["nfe"].items():
        out.append(f"| teacher | {k} | {m['fd']:.2f} | {m['kid']:.4f} | {m['precision']:.3f} | {m['recall']:.3f} | "
                   f"{m['accuracy']:.3f} | {m['diversity']:.2f} | {m['fd'] / fd50:.2f}x | |")
    summary = []
    for name, r in rows.items():
        if name == "teacher":
            continue
        best = None
        for k, m in r["nfe"].items():
            ratio = m["fd"] / fd50
            out.append(f"| `{name}` | {k} | {m['fd']:.2f} | {m['kid']:.4f} | {m['precision']:.3f} | {m['recall']:.3f} | "
                       f"{m['accuracy']:.3f} | {m['diversity']:.2f} | {ratio:.2f}x | {r['wall_s']:.0f} / {r['cpu_s']:.0f} |")
            if int(k) <= 2 and (best is None or ratio < best[1]):
                best = (k, ratio)
        ok = best is not None and best[1] <= GOAL_RATIO and r["cpu_s"] <= GOAL_S
        summary.append(f"| `{name}` | " + (f"{best[1]:.2f}x @{best[0]}" if best else "no 1-2 step sampler") +
                       f" | {r['cpu_s'] / 60:.1f} min | {'yes' if ok else 'no'} |")
    out += ["", "Goal check (best 1- or 2-NFE FD over the teacher's 50-NFE FD; CPU minutes of distillation):", "",
            "| method | best 1-2 NFE FD ratio | CPU time | goal met |", "|---|---|---|---|", *summary, ""]
    text = "\n".join(out)
    from results_md import RESULTS_MD, replace_section  # bench/ is on the path when run as a script

    replace_section("digits", text, RESULTS_MD if path is None else path)
    return text


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--methods", nargs="*", default=None)
    ap.add_argument("--zoo", action="store_true", help="also write the zoo students digits/<method>")
    ap.add_argument("--write", action="store_true", help="only rebuild the digits section of RESULTS.md")
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--one", default=None, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    RESULTS.mkdir(parents=True, exist_ok=True)
    if a.one:
        row = run_teacher() if a.one == "teacher" else run_method(a.one, a.zoo)
        row.update({"platform": platform.platform(), "threads": os.environ.get("LAB_NUM_THREADS"),
                    "date": time.strftime("%Y-%m-%d"), "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024})
        (RESULTS / f"{a.one}.json").write_text(json.dumps(row, indent=1))
        return
    if not a.write:
        allowed = methods()
        bad = [m for m in (a.methods or []) if m not in allowed]
        if bad:
            sys.exit(f"unknown or non-image method(s) {', '.join(bad)}; allowed: {', '.join(allowed)}")
        todo = ((["teacher"] if a.methods is None or not (RESULTS / "teacher.json").exists() else [])
                + list(a.methods or allowed))
        env = {**os.environ, "LAB_NUM_THREADS": "1"}
        procs: list = []
        for name in todo:
            while len([p for p in procs if p.poll() is None]) >= a.jobs:
                time.sleep(2)
            cmd = [sys.executable, __file__, "--one", name] + (["--zoo"] if a.zoo else [])
            procs.append(subprocess.Popen(cmd, env=env))
        for p in procs:
            p.wait()
    print(write())


if __name__ == "__main__":
    main()
