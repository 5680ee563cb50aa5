"""Benchmark of dataset distillation on 8x8 digits: test accuracy of a fresh ConvNet trained only on the distilled
set, at 1 and 10 images per class, for every method, against random real images and the full training data.

For every method (``dc``, ``dm``, ``mtt``, ``ftd``) and ipc (1, 10): three distillation seeds at the config in
``CONFIGS``; each distilled set is judged by ``NETS`` fresh nets (the evaluation protocol of ``lab.dd.base``:
SGD momentum 0.9, 300 steps, lr x0.1 halfway; MTT/FTD with their learned lr) and the seed's value is their mean.
The baselines use the same protocol: ``ipc`` random real images per class (three seeds, ``NETS`` nets each), and
the whole training split (three nets). Reported: mean +- std over the three seeds, and each method's distillation
CPU time (process time of the distillation alone, one thread). MTT and FTD also get the accumulated trajectory
error of their seed-0 set (``lab.dd.trajectory``: test-loss gap to the expert at the same epoch, summed over the
epochs, mean over the experts).

Writes ``bench/results/dd.json``, its section of ``bench/RESULTS.md``, and the shipped showcase the app and the
notebook open first (``assets/zoo/dd/showcase.safetensors`` + ``.json``: every method's seed-0 set at ipc 1 and
10 with its frames over the iterations, the accuracy table and the trajectory-error rows).

    python bench/dd.py            # everything (2 jobs in parallel, one thread each; about 15 min on 2 cores)
    python bench/dd.py --write    # only rebuild the section of RESULTS.md from bench/results/dd.json
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "dd.json"
SECTION_KEY = "dd"
SECTION = "## Dataset distillation (8x8 digits)"
SEEDS = (0, 1, 2)
NETS = 2
IPCS = (1, 10)
METHODS = ("dc", "dm", "mtt", "ftd")
#: optimiser steps of the full-data baseline (about 270 epochs of batch 256; it is also reported at the 300 steps
#: the synthetic sets get, where it has not converged)
FULL_STEPS = 1500
#: the distillation config of each method and ipc
CONFIGS = {
    ("dc", 1): {"steps": 40, "outer_loop": 1, "inner_loop": 1},
    ("dc", 10): {"steps": 30, "outer_loop": 5, "inner_loop": 10},
    ("dm", 1): {"steps": 300},
    ("dm", 10): {"steps": 300},
    ("mtt", 1): {"steps": 150},
    ("mtt", 10): {"steps": 150},
    ("ftd", 1): {"steps": 150},
    ("ftd", 10): {"steps": 150},
}


def run_job(method: str, ipc: int, out: Path) -> dict:
    import torch

    torch.set_num_threads(1)
    import lab.dd as dd
    from lab.dd.base import EvalProtocol, evaluate_set
    from lab.dd.trajectory import accumulated_error, trajectory_error
    from lab.io import save_tensors

    cfg = {"ipc": ipc, **CONFIGS[(method, ipc)]}
    row = {"method": method, "ipc": ipc, "config": cfg, "seeds": [], "accs": [], "cpu_seconds": [], "lr": []}
    for s in SEEDS:
        m = dd.get(method)({**cfg, "eval_steps": 1}, seed=s)
        t0 = time.process_time()
        for _ in dd_loop(m):
            pass
        cpu = time.process_time() - t0
        ev = evaluate_set(m.images(), m.labels(), [100 * s + k for k in range(NETS)], EvalProtocol(lr=m.eval_lr()))
        row["seeds"].append(s)
        row["accs"].append(ev["acc"])
        row["cpu_seconds"].append(round(cpu, 2))
        row["lr"].append(m.eval_lr())
        print(f"{method} ipc {ipc} seed {s}: acc {ev['acc']:.4f} ({cpu:.1f} s)", flush=True)
        if s == SEEDS[0]:
            frames = torch.stack([f for _, f in m.frames])
            save_tensors(out / f"{method}_ipc{ipc}.safetensors",
                         {"images": m.images(), "labels": m.labels().float(), "frames": frames})
            row["its"] = [i for i, _ in m.frames]
            if method in ("mtt", "ftd"):
                rows = trajectory_error(m.images(), m.labels(), m.eval_lr(), m.experts,
                                        syn_steps=m.config.syn_steps, expert_epochs=m.config.expert_epochs)
                row["trajectory_error"] = rows
                row["accumulated_error"] = accumulated_error(rows)
    return row


def dd_loop(m):
    import lab

    return lab.distill(m)


def run_baselines() -> dict:
    import torch

    torch.set_num_threads(1)
    from lab.dd.base import EvalProtocol, evaluate_set, full_data, random_real

    out = {"random real": {}, "full data": {}}
    for ipc in IPCS:
        accs = []
        for s in SEEDS:
            x, y = random_real(ipc, s)
            accs.append(evaluate_set(x, y, [100 * s + k for k in range(NETS)], EvalProtocol())["acc"])
        out["random real"][str(ipc)] = {"accs": accs, "seeds": list(SEEDS)}
        print(f"random real ipc {ipc}: {accs}", flush=True)
    full = full_data(list(SEEDS), EvalProtocol(steps=FULL_STEPS))
    out["full data"]["all"] = {"accs": full["accs"], "seeds": list(SEEDS), "steps": FULL_STEPS}
    print(f"full data ({FULL_STEPS} steps): {full['accs']}", flush=True)
    short = full_data(list(SEEDS), EvalProtocol())
    out["full data, 300 steps"] = {"all": {"accs": short["accs"], "seeds": list(SEEDS), "steps": 300}}
    print(f"full data (300 steps): {short['accs']}", flush=True)
    return out


def _ms(a) -> str:
    import numpy as np

    a = np.asarray(a, dtype=float)
    return f"{a.mean():.3f} ± {a.std(ddof=1):.3f}" if len(a) > 1 else f"{a.mean():.3f}"


def readme_table() -> str:
    """README's dd table (``bench/readme_tables.py``): accuracy at 1 and 10 images per class and CPU time."""
    import numpy as np

    d = json.loads(RESULTS.read_text())
    acc, rows = d["accuracy"], {}
    for r in d["runs"]:
        rows.setdefault(r["method"], {})[r["ipc"]] = r
    out = ["| method | 1 image per class | 10 images per class | distillation CPU s (1 / 10) |", "|---|---|---|---|"]
    for m in METHODS:
        if m in rows:
            r1, r10 = rows[m].get(1), rows[m].get(10)
            cpu = " / ".join(f"{np.mean(r['cpu_seconds']):.1f}" for r in (r1, r10) if r)
            out.append(f"| `{m}` | {_ms(r1['accs']) if r1 else '–'} | {_ms(r10['accs']) if r10 else '–'} | {cpu} |")
    rr = acc["random real"]
    out.append(f"| random real images | {_ms(rr['1']['accs'])} | {_ms(rr['10']['accs'])} | – |")
    full = f"{_ms(acc['full data']['all']['accs'])} in {FULL_STEPS} steps" + (
        f", {_ms(acc['full data, 300 steps']['all']['accs'])} in 300" if "full data, 300 steps" in acc else "")
    out.append(f"| all 1,437 training images | {full} | (the same) | – |")
    return "\n".join(out)


def write(path: Path | None = None) -> str:
    import numpy as np

    d = json.loads(RESULTS.read_text())
    acc = d["accuracy"]
    out = [f"{SECTION} (`python bench/dd.py`)", "",
           "Test accuracy of a fresh ConvNet (width 32, 2 blocks) trained only on the distilled set (300 SGD steps, "
           "momentum 0.9, lr x0.1 halfway, DSA-style augmentation; MTT/FTD at their learned lr), mean ± std over "
           f"{len(SEEDS)} distillation seeds, each judged by {NETS} fresh nets; the 360 test digits. Random real: "
           "the same number of real training images per class, same net and protocol. Full data: all 1,437 training "
           f"images, {FULL_STEPS} steps (about 270 epochs), and at the synthetic sets' 300 steps.", "",
           "| method | ipc 1 | ipc 10 | distillation CPU s (ipc 1 / ipc 10, mean per seed) | config (ipc 1; ipc 10) |",
           "|---|---|---|---|---|"]
    rows = {r["method"]: {} for r in d["runs"]}
    for r in d["runs"]:
        rows[r["method"]][r["ipc"]] = r
    for m in METHODS:
        if m not in rows:
            continue
        r1, r10 = rows[m].get(1), rows[m].get(10)
        cfg = "; ".join(", ".join(f"{k}={v}" for k, v in r["config"].items() if k != "ipc") for r in (r1, r10) if r)
        cpu = " / ".join(f"{np.mean(r['cpu_seconds']):.1f}" for r in (r1, r10) if r)
        out.append(f"| `{m}` | {_ms(r1['accs']) if r1 else '–'} | {_ms(r10['accs']) if r10 else '–'} | {cpu} | "
                   f"{cfg} |")
    rr = acc["random real"]
    out.append(f"| random real | {_ms(rr['1']['accs'])} | {_ms(rr['10']['accs'])} | – | – |")
    full = _ms(acc["full data"]["all"]["accs"])
    out.append(f"| full data (1,437 images, {FULL_STEPS} steps) | {full} | | – | – |")
    if "full data, 300 steps" in acc:
        out.append(f"| full data (1,437 images, 300 steps) | {_ms(acc['full data, 300 steps']['all']['accs'])} | | – "
                   "| – |")
    ate = {r["method"]: r["accumulated_error"] for r in d["runs"] if "accumulated_error" in r and r["ipc"] == 10}
    ate1 = {r["method"]: r["accumulated_error"] for r in d["runs"] if "accumulated_error" in r and r["ipc"] == 1}
    if ate:
        out += ["", "Accumulated trajectory error (FTD's measure, seed-0 set; test loss of a net trained on the set "
                    "from the expert's init minus the expert's at the same epoch, summed over the 6 expert epochs, "
                    "mean over the 6 experts; each method against its own experts, SGD for MTT, SAM for FTD): "
                + ", ".join(f"`{m}` {ate1.get(m, float('nan')):.3f} (ipc 1) / {ate[m]:.3f} (ipc 10)"
                            for m in ("mtt", "ftd") if m in ate) + "."]
    out += ["", f"Machine: {d['machine']}, one thread per job, {d['date']}.", ""]
    text = "\n".join(out)
    import results_md  # bench/ is on the path when run as a script

    results_md.replace_section(SECTION_KEY, text, results_md.RESULTS_MD if path is None else path)
    return text


def showcase(parts: Path, d: dict) -> None:
    """The seed-0 sets of every job as ``assets/zoo/dd/showcase.*`` (what the app and notebook open first)."""
    import torch

    from lab.dd.experts import ASSETS
    from lab.io import atomic_write_json, load_tensors, save_tensors

    tensors, sets = {}, {}
    for r in d["runs"]:
        key = f"{r['method']}/ipc{r['ipc']}"
        t = load_tensors(parts / f"{r['method']}_ipc{r['ipc']}.safetensors")
        tensors[f"{key}/images"] = t["images"]
        tensors[f"{key}/labels"] = t["labels"].to(torch.int64)
        tensors[f"{key}/frames"] = t["frames"]
        sets[key] = {"lr": r["lr"][0], "its": r["its"], "acc_seed0": r["accs"][0]}
    save_tensors(ASSETS / "showcase.safetensors", tensors)
    traj = {f"{r['method']}/ipc{r['ipc']}": r["trajectory_error"] for r in d["runs"] if "trajectory_error" in r}
    atomic_write_json(ASSETS / "showcase.json", {"sets": sets, "accuracy": d["accuracy"], "trajectory_error": traj,
                                                 "machine": d["machine"], "date": d["date"],
                                                 "written_by": "bench/dd.py"})


def _update_showcase_card(d: dict) -> None:
    from lab.dd.experts import ASSETS
    from lab.io import atomic_write_json, read_json

    card = read_json(ASSETS / "showcase.json")
    card["accuracy"] = d["accuracy"]
    atomic_write_json(ASSETS / "showcase.json", card)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--write", action="store_true", help="only rebuild the section of RESULTS.md")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--baselines", action="store_true",
                    help="recompute only the random-real and full-data baselines into bench/results/dd.json")
    ap.add_argument("--one", nargs=3, default=None, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    sys.path.insert(0, str(ROOT / "bench"))
    if a.one:
        method, ipc, out = a.one[0], int(a.one[1]), Path(a.one[2])
        row = run_baselines() if method == "baselines" else run_job(method, ipc, out)
        (out / f"{method}_ipc{ipc}.json").write_text(json.dumps(row))
        return
    if a.baselines:
        d = json.loads(RESULTS.read_text())
        d["accuracy"].update(run_baselines())
        RESULTS.write_text(json.dumps(d, indent=1))
        _update_showcase_card(d)
    elif not a.write:
        from results_md import cpu_name

        env = {**os.environ, "LAB_NUM_THREADS": "1"}
        with tempfile.TemporaryDirectory() as tmp:
            parts = Path(tmp)
            jobs = [("baselines", 0)] + [(m, i) for i in IPCS[::-1] for m in METHODS]
            procs = []
            t0 = time.time()
            for m, i in jobs:
                while len([p for p in procs if p.poll() is None]) >= a.jobs:
                    time.sleep(1)
                procs.append(subprocess.Popen([sys.executable, __file__, "--one", m, str(i), tmp], env=env))
            for p in procs:
                p.wait()
            bad = [j for j, p in zip(jobs, procs) if p.returncode]
            if bad:
                sys.exit(f"bench jobs failed: {bad}")
            runs = [json.loads((parts / f"{m}_ipc{i}.json").read_text()) for m, i in jobs[1:]]
            base = json.loads((parts / "baselines_ipc0.json").read_text())
            acc = {**{m: {} for m in METHODS}, **base}
            for r in runs:
                acc[r["method"]][str(r["ipc"])] = {"accs": r["accs"], "seeds": r["seeds"]}
            d = {"runs": runs, "accuracy": acc, "machine": f"{cpu_name()}, {platform.platform()}",
                 "date": time.strftime("%Y-%m-%d %H:%M"), "wall_seconds": round(time.time() - t0, 1),
                 "seeds": list(SEEDS), "nets": NETS}
            RESULTS.parent.mkdir(parents=True, exist_ok=True)
            RESULTS.write_text(json.dumps(d, indent=1))
            showcase(parts, d)
    print(write())


if __name__ == "__main__":
    main()
