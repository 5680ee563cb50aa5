"""Benchmark of the knowledge-distillation methods against the same student trained from scratch.

For every registered KD method: its benchmark task and config (``cls.bench_task``, ``cls.bench_config``),
three seeds, and the ``scratch`` baseline at equal compute (the same student, steps, batch, optimiser,
training subset and augmentation; cross-entropy only). Reported as mean +- std over seeds, at the best
evaluation and at the last one (ten evaluations per run on the test split). The metric is test accuracy
(higher is better), or KL(true language || model) per token on the language task (lower is better).
Each method runs in its own subprocess with one thread.

    python bench/kd.py                        # every KD method
    python bench/kd.py --methods kd taid
    python bench/kd.py --write                # only rebuild the KD section of RESULTS.md
    python bench/kd.py --setting all_labels   # a named setting off the bench config (``SETTINGS``): method vs scratch

A setting is one method against scratch at a config other than the method's bench config, measured the same way
(the same seeds, scratch at equal compute); its rows go to ``bench/results/kd_settings/<setting>.json`` and to a
table of its own in the KD section. ``all_labels``: Hinton KD with all 1,437 training digits, where the soft
targets add nothing the labels do not already carry (the README's "All labels" line).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "kd"
SEEDS = (0, 1, 2)
SECTION = "## Knowledge distillation (classifiers and a tiny language model)"
#: config fields the scratch baseline shares with the method (equal compute, same data)
SHARED = ("steps", "batch", "lr", "weight_decay", "student", "n_train", "augment", "eval_every")
SETTINGS_DIR = ROOT / "bench" / "results" / "kd_settings"
#: named settings off the bench configs: name -> (method, task, config overrides, what it shows)
SETTINGS = {
    "all_labels": ("kd", "digits", {"steps": 1000, "n_train": 0},
                   "all 1,437 training digits (n_train=0), the bench's 1000 steps: KD against scratch with every label"),
}


def _one_run(name: str, task: str, cfg: dict, seed: int) -> dict:
    import lab

    cls = lab.kd.get(name)
    teacher = lab.zoo.entry_name("kd", task) if cls.needs_teacher else None
    m = cls(teacher, task, cfg, seed=seed)
    t0 = time.perf_counter()
    for _ in lab.train(m):
        pass
    s = m.summary()
    return {"seed": seed, "wall_s": time.perf_counter() - t0, **{k: v for k, v in s.items()}}


def run_method(name: str) -> dict:
    import lab

    cls = lab.kd.get(name)
    task, cfg = cls.bench_task, dict(cls.bench_config)
    full = cls.Config(**cfg).__dict__
    base = {k: full[k] for k in SHARED if k in full}
    rows = [_one_run(name, task, cfg, s) for s in SEEDS]
    scratch = [_one_run("scratch", task, base, s) for s in SEEDS]
    refs = {label: {"method": ref, "config": {**base, **over}, "runs": [_one_run(ref, task, {**base, **over}, s)
                                                                        for s in SEEDS]}
            for label, (ref, over) in cls.bench_references.items()}
    return {"method": name, "task": task, "config": cfg, "scratch_config": base, "runs": rows, "scratch": scratch,
            "references": refs, "metric": "kl_truth" if lab.kd.get_task(task).kind == "lm" else "acc"}


def run_setting(setting: str) -> dict:
    """One named setting (``SETTINGS``): the method and scratch at equal compute on ``SEEDS``."""
    import lab

    method, task, over, what = SETTINGS[setting]
    full = lab.kd.get(method).Config(**over).__dict__
    base = {k: full[k] for k in SHARED if k in full}
    return {"setting": setting, "what": what, "method": method, "task": task, "config": dict(over),
            "scratch_config": base, "runs": [_one_run(method, task, over, s) for s in SEEDS],
            "scratch": [_one_run("scratch", task, base, s) for s in SEEDS],
            "metric": "kl_truth" if lab.kd.get_task(task).kind == "lm" else "acc"}


def readme_setting(setting: str) -> str:
    """The README's clause for a named setting: whether the method beats scratch there, with both means (last
    evaluation, mean over seeds)."""
    p = SETTINGS_DIR / f"{setting}.json"
    if not p.exists():
        raise LookupError(f"no {p}; run: python bench/kd.py --setting {setting}")
    r = json.loads(p.read_text())
    k = r["metric"]
    ml, sl = _ms(r["runs"], f"last/{k}")[0], _ms(r["scratch"], f"last/{k}")[0]
    better = ml < sl if k == "kl_truth" else ml > sl
    return f"`{r['method']}` {'beats' if better else 'does not beat'} scratch: {ml:.3f} vs {sl:.3f}"


def _better(d: float, metric: str) -> bool:
    """Whether a method-minus-baseline difference ``d`` in ``metric`` favours the method (KL: lower is better)."""
    return d < 0 if metric == "kl_truth" else d > 0


def _ms(rows, key):
    import numpy as np

    v = np.array([r[key] for r in rows if key in r], dtype=float)
    return (float(v.mean()), float(v.std())) if len(v) else (float("nan"), float("nan"))


def _fmt(ms, digits=3):
    return f"{ms[0]:.{digits}f} ± {ms[1]:.{digits}f}"


def write(path=None) -> str:
    """Rewrite this benchmark's section of RESULTS.md (``path``, default ``bench/RESULTS.md``) from the rows in
    ``RESULTS``; every other section of the file stays byte for byte."""
    rows = [json.loads(p.read_text()) for p in sorted(RESULTS.glob("*.json"))]
    if not rows:
        return ""
    out = [SECTION, "",
           f"Each method against the same student trained from scratch at equal compute (same student network, steps, "
           f"batch, optimiser, training subset and augmentation; cross-entropy only). Mean ± std over seeds "
           f"{', '.join(map(str, SEEDS))}; best = the best of ten test evaluations during the run, last = the final "
           f"one. Metric: test accuracy (↑), or KL(true language ‖ model) per token on `language` (↓). ECE at the "
           f"last evaluation. `python bench/kd.py` reproduces it (one thread per method).", "",
           "| method | task | setting | metric | method best | method last | scratch best | scratch last | "
           "last − scratch | ECE method / scratch | wall s / run |",
           "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        k = r["metric"]
        mb, ml = _ms(r["runs"], f"best/{k}"), _ms(r["runs"], f"last/{k}")
        sb, sl = _ms(r["scratch"], f"best/{k}"), _ms(r["scratch"], f"last/{k}")
        em, es = _ms(r["runs"], "last/ece"), _ms(r["scratch"], "last/ece")
        setting = ", ".join(f"{a}={b}" for a, b in r["config"].items() if a != "student") or "defaults"
        d = ml[0] - sl[0]
        better = _better(d, k)
        out.append(f"| `{r['method']}` | {r['task']} | {setting} | {k} | {_fmt(mb)} | {_fmt(ml)} | {_fmt(sb)} | "
                   f"{_fmt(sl)} | {d:+.3f} {'✓' if better else '✗'} | {em[0]:.3f} / {es[0]:.3f} | "
                   f"{_ms(r['runs'], 'wall_s')[0]:.0f} |")
    refs = [(r, label, ref) for r in rows for label, ref in r.get("references", {}).items()]
    if refs:
        out += ["", "The comparison each paper makes, besides scratch: the same shared config (student, steps, batch, "
                    "optimiser, data) with the reference method (its overrides in the setting column).", "",
                "| method | reference | setting | metric | method last | reference last | method − reference | "
                "ECE method / reference | accuracy method / reference |", "|---|---|---|---|---|---|---|---|---|"]
        for r, label, ref in refs:
            k = r["metric"]
            ml, rl = _ms(r["runs"], f"last/{k}"), _ms(ref["runs"], f"last/{k}")
            d = ml[0] - rl[0]
            better = _better(d, k)
            over = {a: b for a, b in ref["config"].items() if a not in r["scratch_config"] or r["scratch_config"][a] != b}
            setting = ", ".join(f"{a}={b}" for a, b in over.items()) or "the method's shared config"
            out.append(f"| `{r['method']}` | {label} (`{ref['method']}`) | {setting} | {k} | {_fmt(ml)} | {_fmt(rl)} | "
                       f"{d:+.3f} {'✓' if better else '✗'} | {_ms(r['runs'], 'last/ece')[0]:.3f} / "
                       f"{_ms(ref['runs'], 'last/ece')[0]:.3f} | {_ms(r['runs'], 'last/acc')[0]:.3f} / "
                       f"{_ms(ref['runs'], 'last/acc')[0]:.3f} |")
    settings = [json.loads(p.read_text()) for p in sorted(SETTINGS_DIR.glob("*.json"))]
    if settings:
        out += ["", "Other settings (`python bench/kd.py --setting NAME`): the method against scratch at a config other "
                    "than its bench config, measured the same way (same seeds, scratch at equal compute).", "",
                "| setting | method | task | config | metric | method best | method last | scratch best | "
                "scratch last | last − scratch | per-seed last, method / scratch |",
                "|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in settings:
            k = r["metric"]
            ml, sl = _ms(r["runs"], f"last/{k}"), _ms(r["scratch"], f"last/{k}")
            d = ml[0] - sl[0]
            better = _better(d, k)
            seeds = ", ".join(f"{a[f'last/{k}']:.3f} / {b[f'last/{k}']:.3f}" for a, b in zip(r["runs"], r["scratch"]))
            config = ", ".join(f"{a}={b}" for a, b in r["config"].items())
            out.append(f"| `{r['setting']}` | `{r['method']}` | {r['task']} | {config} | {k} | "
                       f"{_fmt(_ms(r['runs'], f'best/{k}'))} | {_fmt(ml)} | {_fmt(_ms(r['scratch'], f'best/{k}'))} | "
                       f"{_fmt(sl)} | {d:+.3f} {'✓' if better else '✗'} | {seeds} |")
    meta = rows[0].get("platform", "")
    out += ["", f"✓: the method's last evaluation beats scratch's (first table) or the reference's (second table) on "
                f"the mean of the metric column; the ECE column is the calibration comparison (lower is better). "
                f"Machine: {meta}, one thread per run.", ""]
    text = "\n".join(out)
    from results_md import RESULTS_MD, replace_section  # bench/ is on the path when run as a script

    replace_section("kd", text, RESULTS_MD if path is None else path)
    return text


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--methods", nargs="*", default=None)
    ap.add_argument("--write", action="store_true", help="only rebuild the KD section of RESULTS.md")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--setting", choices=sorted(SETTINGS), default=None,
                    help="measure one named setting (method vs scratch off the bench config), then rewrite the section")
    ap.add_argument("--one", default=None, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    RESULTS.mkdir(parents=True, exist_ok=True)
    if a.setting:
        import torch

        torch.set_num_threads(int(os.environ.setdefault("LAB_NUM_THREADS", "1")))
        row = run_setting(a.setting)
        row.update({"platform": platform.platform(), "threads": os.environ.get("LAB_NUM_THREADS"),
                    "date": time.strftime("%Y-%m-%d")})
        SETTINGS_DIR.mkdir(parents=True, exist_ok=True)
        (SETTINGS_DIR / f"{a.setting}.json").write_text(json.dumps(row, indent=1))
        print(write())
        return
    if a.one:
        row = run_method(a.one)
        row.update({"platform": platform.platform(), "threads": os.environ.get("LAB_NUM_THREADS"),
                    "date": time.strftime("%Y-%m-%d")})
        (RESULTS / f"{a.one}.json").write_text(json.dumps(row, indent=1))
        return
    if not a.write:
        import lab

        allowed = [m for m in lab.kd.list_methods() if m != "scratch"]
        bad = [m for m in (a.methods or []) if m not in allowed]
        if bad:
            sys.exit(f"unknown KD method(s) {', '.join(bad)}; allowed: {', '.join(allowed)}")
        env = {**os.environ, "LAB_NUM_THREADS": "1"}
        procs: list = []
        for name in a.methods or allowed:
            while len([p for p in procs if p.poll() is None]) >= a.jobs:
                time.sleep(2)
            procs.append(subprocess.Popen([sys.executable, __file__, "--one", name], env=env))
        for p in procs:
            p.wait()
    print(write())


if __name__ == "__main__":
    main()
