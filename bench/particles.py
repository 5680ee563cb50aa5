"""Score distillation on 2D particles: sds, vsd_particles, esd and dsd at equal steps, over seeds and two teachers.

For each teacher (the analytic 8-Gaussians mixture and the zoo's trained flow on the same data), each method and
each seed, the particles are trained from the same start (``lab.probes.particles.score_distillation_side_by_side``,
the probe the app's side-by-side view draws) with the claim test's settings (tests/test_claims_esd_dsd.py: 256
particles, 300 steps), and measured with ``lab.probes.particles.particle_metrics``: modes covered (>= 4 particles
within 3 std), spread (std around each particle cluster's own mean; the data's is 0.15), fidelity (mean distance
to the nearest mode centre; lower = closer), coverage (share of 2000 data points with a particle within 0.15),
the SWD of the particles against 2000 samples of the teacher (50 Euler steps), and the CPU seconds of the run.

It writes the rows, the means and stds over seeds, the arguments and the machine to bench/results/particles.json,
then its own section of bench/RESULTS.md (between ``<!-- results:particles:... -->`` markers).

    python bench/particles.py           # measure (about a minute on one thread), keep the JSON, write the section
    python bench/particles.py --write   # only rewrite the RESULTS.md section from the JSON
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "particles.json"
KEY = "particles"
SECTION = "## Score distillation on particles: sds, vsd_particles, esd, dsd (`python bench/particles.py`)"
STUDY = {"data": "8gaussians", "teachers": ["toy2d/8gaussians/analytic", "toy2d/8gaussians/teacher"],
         "methods": ["sds", "vsd_particles", "esd", "dsd"], "seeds": [0, 1, 2], "n_particles": 256, "steps": 300}
COLUMNS = ("modes_covered", "spread", "fidelity", "coverage", "swd", "seconds")


def measure(study: dict | None = None) -> dict:
    import numpy as np
    import torch

    torch.set_num_threads(1)
    sys.path.insert(0, str(ROOT))
    import lab
    from lab.diffusion import make_noise
    from lab.metrics import sliced_wasserstein
    from lab.probes.particles import score_distillation_side_by_side

    s = dict(STUDY if study is None else study)
    t_all = time.time()
    rows = []
    for teacher in s["teachers"]:
        gen = lab.zoo.load(teacher)
        ref = gen.sample(z=make_noise(2000, 2, seed=4321), nfe=50, seed=0).x
        for seed in s["seeds"]:
            side = score_distillation_side_by_side(teacher, s["data"], s["methods"], n_particles=s["n_particles"],
                                                   steps=s["steps"], every=s["steps"], seed=seed)
            p = side["paths"]
            for r in side["metrics"].to_dict("records"):
                last = p[(p.method == r["method"]) & (p.step == p.step.max())][["x", "y"]].to_numpy()
                rows.append({"teacher": teacher, "seed": seed, **{k: (float(v) if k != "method" else v)
                                                                   for k, v in r.items()},
                             "swd": sliced_wasserstein(torch.tensor(last), ref)})
    summary = []
    for teacher in s["teachers"]:
        for m in s["methods"]:
            sel = [r for r in rows if r["teacher"] == teacher and r["method"] == m]
            summary.append({"teacher": teacher, "method": m, "n": len(sel),
                            **{f"{c}_mean": float(np.mean([r[c] for r in sel])) for c in COLUMNS},
                            **{f"{c}_std": float(np.std([r[c] for r in sel], ddof=1)) for c in COLUMNS}})
    from results_md import cpu_name  # bench/ is on the path when run as a script

    return {"study": s, "rows": rows, "summary": summary, "seconds": time.time() - t_all, "cpu": cpu_name(),
            "platform": platform.platform(), "threads": 1, "date": time.strftime("%Y-%m-%d")}


def section(res: dict) -> str:
    s = res["study"]
    lines = [SECTION, "",
             f"Free particles ({s['n_particles']}, from the same N(0, I) start per seed) pushed by each method for "
             f"{s['steps']} steps on 8 Gaussians (mode std 0.15), mean ± std over seeds {s['seeds']}. Modes: modes "
             f"holding >= 4 particles within 3 std (of 8); spread: the particles' std around their cluster's own "
             f"mean (data 0.15; SDS's collapse removes it); to modes: mean distance to the nearest mode centre (the "
             f"data's is about 0.18; lower = tighter on the centres); coverage: share of 2000 data points with a "
             f"particle within 0.15; SWD against 2000 teacher samples (50 steps); CPU seconds of the run. "
             f"Claim test: tests/test_claims_esd_dsd.py.", "",
             f"Measured {res['date']}, {res['seconds']:.0f} s in all on one thread ({res['cpu']}).", "",
             "| teacher | method | modes | spread | to modes | coverage | SWD | CPU s |",
             "|---|---|---|---|---|---|---|---|"]
    for r in res["summary"]:
        cell = lambda c, f=".3f": f"{r[c + '_mean']:{f}} ± {r[c + '_std']:{f}}"  # noqa: E731
        lines.append(f"| {r['teacher'].split('/')[-1]} | `{r['method']}` | {cell('modes_covered', '.1f')} | "
                     f"{cell('spread')} | {cell('fidelity')} | {cell('coverage')} | {cell('swd')} | "
                     f"{cell('seconds', '.1f')} |")
    return "\n".join(lines) + "\n"


def write(path=None) -> str:
    """Rewrite this script's section of RESULTS.md (``path``, default bench/RESULTS.md) from ``RESULTS``."""
    import results_md as rm

    return rm.write_from_json(KEY, section, RESULTS, path)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--write", action="store_true", help=f"only rewrite the RESULTS.md section from {RESULTS.name}")
    a = ap.parse_args(argv)
    if not a.write:
        os.environ.setdefault("LAB_NUM_THREADS", "1")
        res = measure()
        sys.path.insert(0, str(ROOT))
        from lab.io import atomic_write_json

        atomic_write_json(RESULTS, res)
    print(write())


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    main()
