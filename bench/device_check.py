"""Check the whole lab path on a device against the CPU: same seed, same numbers within a stated tolerance.

Both sides run the same recipe, the way a user runs it (``lab.runs.recipes``: run folders, checkpoints, the
teacher reloaded from its folder, each student reloaded from its folder):

1. a flow-matching teacher trained on ``toy2d:8gaussians`` (a small MLP, ``train_teacher_run``);
2. three students distilled from that teacher folder, one per family (``distill_run``): ``consistency``
   (trajectory; Song et al. 2023, Consistency Models), ``dmd`` (distribution matching; Yin et al. 2024,
   One-step Diffusion with Distribution Matching Distillation) and ``reflow`` (straightening; Liu et al. 2023,
   Flow Straight and Fast);
3. samples from the teacher (16 Euler steps) and from each student at its smallest native NFE, from fixed
   seeded noise (drawn on the CPU, then moved, so both sides start from the same numbers).

The reference side always runs on the CPU in fp32; the device side runs on ``--device`` in ``--precision``
(autocast around each training step, fp16 with loss scaling; see ``lab.trainable.Trainable.set_precision``).
Compared, per network: the loss terms at the last step (``metrics.csv``), the sliced Wasserstein distance
(``lab.metrics.samples.sliced_wasserstein``) of the samples to a fixed draw of the data, and the samples
themselves (the largest coordinate difference). Each row passes when ``|diff| <= tol * scale``, where
``scale`` is ``max(|cpu value|, 1e-3)``; for the samples row the "cpu" and "device" columns are the RMS of
each side's samples and ``|diff|`` is the largest coordinate difference, so the tolerance is relative to the
data's scale. The table (metric, cpu, device, |diff|, tolerance, ok) is printed; the exit status is 1 when
any row fails or a run stops (e.g. diverges), 0 otherwise, 2 for a bad option.

Usage (on a machine with a GPU; the CPU side takes a few seconds, then the device side runs)::

    python bench/device_check.py                          # --device auto: cuda, else mps, else cpu
    python bench/device_check.py --device cuda:1 --precision bf16
    python bench/device_check.py --steps 1000,400 --tol 0.05 --json out.json
    python bench/device_check.py --judge out.json --tol 0.2   # re-judge a saved table, nothing is run

``--steps N`` trains the teacher and each student N steps; ``--steps T,D`` sets them apart (default 1000,400:
about 10 s for the two CPU-side runs on one thread of this project's 2-core CPU).

The default tolerance is 0.05 (5% of each row's scale) for fp32 and 0.5 for bf16 / fp16. A device does not
round like the CPU (other kernels and reduction orders; TF32 where enabled), and training carries those
differences forward. Measured on this project's CPU at the default steps, seeds 0, 1, 2 (largest ``|diff| /
scale`` over the rows): every initial teacher weight perturbed by a relative 1e-6 (fp32 rounding size): 7e-6,
3e-6, 6e-6; by a relative 1e-3 (TF32 size): 6e-3, 5e-3, 1.5e-2; ``--precision bf16`` on the CPU against fp32:
0.047, 0.22, 0.11 (the largest always the last minibatch loss of a small loss term, dmd's ``loss/dm``). The
fp32 default leaves a margin of 3x over the TF32-sized case, the bf16 / fp16 one 2x over the measured bf16
spread, while a broken kernel, a wrong dtype or a missed seed moves the samples by the data's scale (rows near
1.0). These defaults were NOT measured on a GPU (none was available here): if a sound device fails by a little,
the table's ``|diff|`` column says by how much. CPU against CPU (``--device cpu``) agrees exactly:
``tests/test_device_check.py`` asserts every difference is below 1e-6, and that a bf16 run is caught by a
tolerance below its measured difference and passes a looser one.

Fidelity notes: the configs are tiny (an MLP of width 64, batch 256 for the teacher; the methods' ``tiny``
configs with 512 precomputed teacher pairs for dmd and reflow), so the check is about numerical agreement of
the path, not about sample quality. Sampling is in fp32 on both sides (``--precision`` applies to training).
"""
from __future__ import annotations

import argparse
import math
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

DATA = "toy2d:8gaussians"
METHODS = ("consistency", "dmd", "reflow")
TEACHER_CONFIG = {"batch": 256, "lr": 2e-3, "net": {"type": "mlp", "hidden": 64, "depth": 2, "t_dim": 16}}
#: per-method overrides on top of the method's ``tiny`` config (fewer precomputed teacher pairs)
METHOD_EXTRA = {"dmd": {"n_pairs": 512, "pair_steps": 8}, "reflow": {"n_pairs": 512, "pair_steps": 8}}
TEACHER_NFE = 16
N_SAMPLES = 1000
DEFAULT_STEPS = (1000, 400)
DEFAULT_TOL = {"fp32": 0.05, "bf16": 0.5, "fp16": 0.5}
SCALE_FLOOR = 1e-3
PRECISION_CHOICES = ("fp32", "bf16", "fp16")


def _steps(text: str) -> tuple[int, int]:
    parts = str(text).split(",")
    try:
        vals = [int(p) for p in parts]
    except ValueError:
        vals = []
    if len(vals) not in (1, 2) or min(vals, default=0) < 1:
        raise argparse.ArgumentTypeError(f"invalid --steps {text!r}; allowed: N or T,D (positive integers)")
    return (vals[0], vals[-1])


def _tol(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        v = float("nan")
    if not (math.isfinite(v) and v >= 0):
        raise argparse.ArgumentTypeError(f"invalid --tol {text!r}; allowed: a number >= 0")
    return v


def _samples(gen, nfe: int, seed: int, device):
    from lab.diffusion.generators import make_noise  # lazy: the parser answers without importing torch

    z = make_noise(N_SAMPLES, 2, seed=seed, device=device)
    return gen.sample(z=z, nfe=nfe, seed=seed).x.detach().to("cpu").double()


def _last_losses(run) -> dict:
    m = run.metrics()
    last = m.iloc[-1]
    return {k: float(last[k]) for k in m.columns if k.startswith("loss/") and math.isfinite(float(last[k]))}


def run_side(device: str, precision: str, steps: tuple[int, int], seed: int, methods, work: Path,
             bar=None) -> dict:
    """One side of the check: the teacher and every student trained, reloaded and sampled on ``device`` in
    ``precision``. Returns {network: {"losses": {...}, "nfe": int, "samples": (n, 2) float64 CPU tensor}}."""
    from lab.methods import get_method
    from lab.runs import Run
    from lab.runs.recipes import distill_run, train_teacher_run

    out = {}
    t_steps, d_steps = steps
    tdir = work / "teacher"
    train_teacher_run(DATA, tdir, steps=t_steps, seed=seed, device=device, progress=False, config=TEACHER_CONFIG,
                      precision=precision, checkpoint_every=t_steps)
    run = Run.open(tdir)
    out["teacher"] = {"losses": _last_losses(run), "nfe": TEACHER_NFE,
                      "samples": _samples(run.load_model(device), TEACHER_NFE, seed, device)}
    if bar is not None:
        bar.update(1)
    for m in methods:
        cls = get_method(m)
        cfg = {**cls.tiny, **METHOD_EXTRA.get(m, {})}
        mdir = work / m
        distill_run(m, str(tdir), mdir, steps=d_steps, config=cfg, seed=seed, device=device, progress=False,
                    precision=precision, checkpoint_every=d_steps)
        run = Run.open(mdir)
        gen = run.load_model(device)
        nfe = min(gen.native_nfe) if gen.native_nfe else gen.default_nfe
        out[m] = {"losses": _last_losses(run), "nfe": int(nfe), "samples": _samples(gen, int(nfe), seed, device)}
        if bar is not None:
            bar.update(1)
    return out


def compare(ref: dict, dev: dict, seed: int) -> list[dict]:
    """The rows of the table (without the verdict): metric, cpu, device, diff, scale."""
    import torch

    from lab.data.toy2d import resolve
    from lab.metrics.samples import sliced_wasserstein

    data = resolve(DATA).sample(N_SAMPLES, torch.Generator().manual_seed(seed + 10_000))
    rows = []

    def row(metric, a, b, diff=None, scale=None):
        d = abs(a - b) if diff is None else diff
        rows.append({"metric": metric, "cpu": float(a), "device": float(b), "diff": float(d),
                     "scale": float(max(abs(a) if scale is None else scale, SCALE_FLOOR))})

    for net, r in ref.items():
        d = dev[net]
        for k in sorted(set(r["losses"]) | set(d["losses"])):
            row(f"{net} {k} (last step)", r["losses"].get(k, float("nan")), d["losses"].get(k, float("nan")))
        row(f"{net} SWD to data ({r['nfe']} NFE)", sliced_wasserstein(r["samples"], data),
            sliced_wasserstein(d["samples"], data))
        xr, xd = r["samples"], d["samples"]
        row(f"{net} samples: rms, max|dx| ({r['nfe']} NFE)", float(xr.pow(2).mean().sqrt()),
            float(xd.pow(2).mean().sqrt()), diff=float((xr - xd).abs().max()) if xr.shape == xd.shape else math.inf)
    return rows


def judge(rows: list[dict], tol: float) -> list[dict]:
    """Each row with its tolerance (``tol * scale``) and verdict (a NaN difference fails)."""
    out = []
    for r in rows:
        t = tol * r["scale"]
        out.append({**r, "tolerance": t, "ok": bool(r["diff"] <= t)})
    return out


def table(rows: list[dict]) -> str:
    w = max(len("metric"), *(len(r["metric"]) for r in rows))
    lines = [f"{'metric':<{w}}  {'cpu':>12}  {'device':>12}  {'|diff|':>10}  {'tolerance':>10}  ok"]
    for r in rows:
        lines.append(f"{r['metric']:<{w}}  {r['cpu']:>12.6g}  {r['device']:>12.6g}  {r['diff']:>10.3g}  "
                     f"{r['tolerance']:>10.3g}  {'yes' if r['ok'] else 'NO'}")
    return "\n".join(lines)


def parse(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N, mps (the reference is always cpu)")
    p.add_argument("--precision", default="fp32", choices=PRECISION_CHOICES,
                   help="the device run's training precision (the reference is fp32)")
    p.add_argument("--steps", type=_steps, default=DEFAULT_STEPS,
                   help=f"N (teacher and each student) or T,D (default {DEFAULT_STEPS[0]},{DEFAULT_STEPS[1]})")
    p.add_argument("--tol", type=_tol, default=None,
                   help="relative tolerance of every row (default 0.05 for fp32, 0.5 for bf16/fp16)")
    p.add_argument("--seed", type=int, default=0, help="the seed of both sides (default 0)")
    p.add_argument("--methods", default=",".join(METHODS),
                   help=f"comma-separated distillation methods (default {','.join(METHODS)})")
    p.add_argument("--json", type=Path, default=None, metavar="OUT", help="save the table (and the run's settings)")
    p.add_argument("--judge", type=Path, default=None, metavar="JSON",
                   help="re-judge a table saved with --json at --tol; nothing is trained")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p.parse_args(argv)


def _fail(msg: str) -> int:
    print(f"error: {msg}", file=sys.stderr)
    return 2


def main(argv=None) -> int:
    a = parse(argv)
    os.environ.setdefault("LAB_NUM_THREADS", "1")
    import torch

    from lab.errors import LabError  # importing lab caps threads at $LAB_NUM_THREADS, installs the resolver
    from lab.io import atomic_write_json, read_json

    if a.judge is not None:
        try:
            saved = read_json(a.judge)
            rows = [{k: r[k] for k in ("metric", "cpu", "device", "diff", "scale")} for r in saved["rows"]]
        except (LabError, OSError, KeyError, TypeError, ValueError) as e:
            return _fail(f"--judge {a.judge}: not a table saved by --json ({str(e).splitlines()[0][:120]})")
        tol = a.tol if a.tol is not None else float(saved.get("tol_default", DEFAULT_TOL["fp32"]))
        judged = judge(rows, tol)
        print(table(judged))
        bad = sum(not r["ok"] for r in judged)
        print(f"{'FAIL' if bad else 'OK'}: {len(judged) - bad}/{len(judged)} rows within tolerance {tol:g} "
              f"(re-judged {a.judge})")
        return 1 if bad else 0

    from lab.methods import list_methods
    from lab.trainable import check_precision, resolve_device

    methods = tuple(m.strip() for m in a.methods.split(",") if m.strip())
    unknown = [m for m in methods if m not in list_methods()]
    if not methods or unknown:
        return _fail(f"invalid --methods {a.methods!r}; allowed: a comma-separated list of {', '.join(list_methods())}")
    try:
        device = resolve_device(a.device)
        check_precision(a.precision, device)
    except LabError as e:
        return _fail(str(e))
    tol = a.tol if a.tol is not None else DEFAULT_TOL[a.precision]
    torch.set_num_threads(max(1, int(os.environ.get("LAB_NUM_THREADS", "1"))))

    from tqdm import tqdm

    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="device_check_") as tmp, \
            tqdm(total=2 * (1 + len(methods)), desc="device check", disable=a.quiet) as bar:
        tmp = Path(tmp)
        side = "cpu fp32"
        try:
            bar.set_postfix_str(side)
            ref = run_side("cpu", "fp32", a.steps, a.seed, methods, tmp / "cpu", bar)
            side = f"{device} {a.precision}"
            bar.set_postfix_str(side)
            dev = run_side(str(device), a.precision, a.steps, a.seed, methods, tmp / "device", bar)
        except LabError as e:  # a run that stops (e.g. diverges) fails the check; the folders are temporary
            print(f"FAIL: the {side} run stopped: {str(e).splitlines()[0]}", file=sys.stderr)
            return 1
    wall = time.perf_counter() - t0
    rows = compare(ref, dev, a.seed)
    judged = judge(rows, tol)
    print(table(judged))
    bad = sum(not r["ok"] for r in judged)
    print(f"{'FAIL' if bad else 'OK'}: {len(judged) - bad}/{len(judged)} rows within tolerance {tol:g}; "
          f"cpu fp32 vs {device} {a.precision}, steps {a.steps[0]},{a.steps[1]}, seed {a.seed}, {wall:.1f} s")
    if a.json is not None:
        from bench.results_md import cpu_name

        atomic_write_json(a.json, {
            "device": str(device), "precision": a.precision, "steps": list(a.steps), "seed": a.seed,
            "methods": list(methods), "tol": tol, "tol_default": DEFAULT_TOL[a.precision], "ok": not bad,
            "wall_s": round(wall, 2), "torch": torch.__version__, "cpu": cpu_name(), "python": platform.python_version(),
            "rows": judged})
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
