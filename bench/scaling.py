"""How the cost grows: sampling speed-ups, the sampler against diffusers, loop overhead, scaling curves, CKA at
large n and KD step times (issue 18, part 3).

One script, one subcommand per measurement; each writes ``bench/results/scaling_<name>.json`` and the whole
"scaling" section of ``bench/RESULTS.md`` is rebuilt from whichever of those files exist:

    python bench/scaling.py speedup      # a. each zoo student at 1, 2, 4 NFE against the teacher at 50 NFE
    python bench/scaling.py diffusers    # b. lab's Euler sampler against diffusers' pipeline on the same UNet
    python bench/scaling.py overhead     # c. lab.train + the CLI's callbacks against a bare PyTorch loop
    python bench/scaling.py scaling      # d. step time and peak RSS against batch, image size and width (subprocesses)
    python bench/scaling.py cka          # e. linear CKA at n = 10,000 x 512 against a naive n x n Gram version
    python bench/scaling.py kd           # f. step time of every KD method against scratch on digits
    python bench/scaling.py all          # every one of them, in that order
    python bench/scaling.py --write      # only rebuild the section from the JSON files

Every ratio is measured within one run: the baseline and the method alternate, repetition by repetition
(``--reps``, at least 5), and the table reports medians. The machine (``cpu_name()``), the thread count (1) and the
load average before and after each measurement are recorded with the results: the machine is shared, so absolute
times move from run to run while the interleaved ratios hold much better.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("LAB_NUM_THREADS", "1")

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
KEY = "scaling"
HEADING = "## How the cost grows (issue 18: speed-ups, overheads, scaling)"
NAMES = ("speedup", "diffusers", "overhead", "scaling", "cka", "kd")
TEACHER_NFE = 50
STUDENT_NFES = (1, 2, 4)


def result_path(name: str) -> Path:
    return RESULTS / f"scaling_{name}.json"


def _threads() -> None:
    import torch

    torch.set_num_threads(1)


def machine() -> dict:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from results_md import cpu_name

    import torch

    return {"cpu": cpu_name(), "threads": 1, "cores": os.cpu_count(), "torch": torch.__version__,
            "python": platform.python_version(), "load_average_start": list(os.getloadavg())}


def _finish(out: dict) -> dict:
    out["machine"]["load_average_end"] = list(os.getloadavg())
    return out


def median(xs) -> float:
    return float(statistics.median(xs))


def _clock(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


# ============================================================================ a. sampling speed-up
def speed_fraction(t_teacher: float, t_student: float, nfe_teacher: int, nfe_student: int) -> dict:
    """Wall-clock speed-up of a student over the teacher, the ideal (the NFE ratio) and their quotient."""
    speedup = t_teacher / t_student
    ideal = nfe_teacher / nfe_student
    return {"speedup": speedup, "ideal": ideal, "fraction": speedup / ideal}


def zoo_students() -> dict[str, list[str]]:
    """teacher entry -> the shipped students sampled against it (the 8-Gaussians 2D students and the digits ones)."""
    import lab

    toy = sorted(p.name for p in (ROOT / "assets" / "zoo" / "toy2d" / "8gaussians").iterdir()
                 if p.is_dir() and p.name != "teacher" and (p / "model.json").exists())
    zoo = ROOT / "assets" / "zoo" / "digits"
    dig = [m for m in lab.zoo.image_student_methods() if (zoo / m / "model.json").exists()]
    return {"toy2d/8gaussians/teacher": [f"toy2d/8gaussians/{m}" for m in toy],
            "digits/teacher": [f"digits/{m}" for m in dig]}


def run_speedup(reps: int = 5, n_points: int = 4096, n_images: int = 64) -> dict:
    import lab
    import torch

    from lab.errors import LabError

    _threads()
    out = {"machine": machine(), "reps": reps, "teacher_nfe": TEACHER_NFE, "rows": [], "teachers": {}}
    for teacher, students in zoo_students().items():
        n = n_images if teacher.startswith("digits") else n_points
        tg = lab.zoo.load(teacher, train_if_missing=False, progress=False)
        gens = {e: lab.zoo.load(e, train_if_missing=False, progress=False) for e in students}
        plan = []  # (entry, nfe, real nfe)
        for e, g in gens.items():
            for nfe in STUDENT_NFES:
                try:
                    r = g.sample(n=8, nfe=nfe, seed=0)
                except LabError:
                    continue
                if int(r.nfe) == nfe:  # a one-step generator asked for 2 or 4 still spends 1: not supported
                    plan.append((e, nfe, int(r.nfe)))
        with torch.no_grad():
            tg.sample(n=n, nfe=TEACHER_NFE, seed=0)  # warm-up
            for e, nfe, _ in plan:
                gens[e].sample(n=n, nfe=nfe, seed=0)
            t_teacher, t_student = [], {(e, nfe): [] for e, nfe, _ in plan}
            for rep in range(reps):  # interleaved: the teacher, then every student, rep after rep
                t_teacher.append(_clock(lambda: tg.sample(n=n, nfe=TEACHER_NFE, seed=rep)))
                for e, nfe, _ in plan:
                    t_student[(e, nfe)].append(_clock(lambda: gens[e].sample(n=n, nfe=nfe, seed=rep)))
        tt = median(t_teacher)
        out["teachers"][teacher] = {"n": n, "times_s": t_teacher, "median_s": tt}
        for e, nfe, real in plan:
            ts = median(t_student[(e, nfe)])
            native = tuple(getattr(gens[e], "native_nfe", ()) or ())
            out["rows"].append({"teacher": teacher, "student": e, "kind": gens[e].kind, "nfe": nfe, "evaluations": real,
                                "native": (nfe in native) if native else True, "n": n,
                                "times_s": t_student[(e, nfe)], "median_s": ts,
                                **speed_fraction(tt, ts, TEACHER_NFE, nfe)})
    return _finish(out)


def table_speedup(d: dict) -> str:
    rows = d["rows"]
    nat = [r for r in rows if r["native"]]
    lines = [f"### a. Sampling speed-up against the teacher at {d['teacher_nfe']} NFE (goal: >= 0.8 of the ideal)",
             "",
             f"Wall-clock time of one `sample(n, nfe)` call, median of {d['reps']} interleaved repetitions; "
             f"ideal = {d['teacher_nfe']} / NFE; fraction = speed-up / ideal. "
             + "; ".join(f"`{t}`: n = {v['n']}, {v['median_s'] * 1e3:.1f} ms at {d['teacher_nfe']} NFE"
                         for t, v in d["teachers"].items()) + ". Rows at an NFE the student was not trained for are "
             "marked (not native); NFEs a generator cannot spend (a one-step generator asked for 2 or 4) are left out. "
             "The ideal assumes the student's network costs what the teacher's does: a fraction far above 1 is a "
             "student that is cheaper per evaluation (particle sets with no network at sampling time, smaller "
             "networks); the goal applies to native rows.", "",
             "| student | kind | NFE | native | time (ms) | speed-up | ideal | fraction |",
             "|---|---|---:|:---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['student']} | {r['kind']} | {r['nfe']} | {'yes' if r['native'] else 'no'} | "
                     f"{r['median_s'] * 1e3:.2f} | {r['speedup']:.1f}x | {r['ideal']:.1f}x | {r['fraction']:.2f} |")
    if nat:
        fr = [r["fraction"] for r in nat]
        met = sum(f >= 0.8 for f in fr)
        lines += ["", f"Native rows: median fraction {median(fr):.2f} (min {min(fr):.2f}); {met} of {len(fr)} "
                      f"meet the 0.8 goal."]
    return "\n".join(lines)


# ============================================================================ b. lab sampler vs diffusers
def run_diffusers(reps: int = 5, n: int = 64, nfes=(4, 50)) -> dict:
    import lab
    import numpy as np
    import torch
    from diffusers import DDPMPipeline

    from lab.interop.diffusers import export_pipeline

    _threads()
    out = {"machine": machine(), "reps": reps, "n": n, "rows": []}
    gen = lab.zoo.load("digits/teacher", train_if_missing=False, progress=False).eval()
    import diffusers

    out["diffusers"] = diffusers.__version__
    with tempfile.TemporaryDirectory() as tmp:
        for nfe in nfes:
            folder = export_pipeline("digits/teacher", Path(tmp) / f"nfe{nfe}", nfe=nfe)
            pipe = DDPMPipeline.from_pretrained(folder)
            pipe.set_progress_bar_config(disable=True)

            def run_lab(seed=0):
                return gen.sample(n=n, nfe=nfe, seed=seed).x

            def run_hf(seed=0):
                return pipe(batch_size=n, num_inference_steps=nfe, generator=torch.Generator().manual_seed(seed),
                            output_type="np").images

            with torch.no_grad():
                a = (run_lab().clamp(-1, 1) / 2 + 0.5).clamp(0, 1).permute(0, 2, 3, 1).numpy()
                b = run_hf()
                diff = float(np.abs(a - b).max())
                t_lab, t_hf = [], []
                for rep in range(reps):
                    first, second = (run_lab, run_hf) if rep % 2 == 0 else (run_hf, run_lab)
                    ta = _clock(lambda: first(rep))
                    tb = _clock(lambda: second(rep))
                    (t_lab, t_hf)[0 if first is run_lab else 1].append(ta)
                    (t_hf, t_lab)[0 if first is run_lab else 1].append(tb)
            out["rows"].append({"nfe": nfe, "max_abs_diff": diff, "lab_s": t_lab, "diffusers_s": t_hf,
                                "lab_median_s": median(t_lab), "diffusers_median_s": median(t_hf),
                                "ratio": median(t_lab) / median(t_hf),
                                "ratio_median_of_pairs": median([x / y for x, y in zip(t_lab, t_hf)])})
    return _finish(out)


def table_diffusers(d: dict) -> str:
    lines = ["### b. lab's sampler against diffusers' pipeline on the same UNet (goal: <= 1.05x)", "",
             f"The digits teacher exported by `lab.interop.diffusers.export_pipeline` (a `DDPMPipeline`: "
             f"`UNet2DModel` + `FlowMatchEulerDiscreteScheduler`, exact at the exported NFE) against "
             f"`gen.sample(n={d['n']}, nfe)` (Euler), diffusers {d.get('diffusers', '?')}; medians of {d['reps']} "
             f"alternating repetitions (order swapped every repetition); the outputs agree to the max abs diff shown "
             f"(in [0, 1] pixel units).", "",
             "| NFE | lab (ms) | diffusers (ms) | lab / diffusers | median of per-pair ratios | max abs diff |",
             "|---:|---:|---:|---:|---:|---:|"]
    for r in d["rows"]:
        lines.append(f"| {r['nfe']} | {r['lab_median_s'] * 1e3:.1f} | {r['diffusers_median_s'] * 1e3:.1f} | "
                     f"{r['ratio']:.3f}x | {r['ratio_median_of_pairs']:.3f}x | {r['max_abs_diff']:.1e} |")
    return "\n".join(lines)


# ============================================================================ c. loop overhead
def _digits_tensors():
    from lab.data.images import resolve_image

    src = resolve_image("digits")
    return src


def bare_teacher_loss(net, x0, y, eps, t):
    """Flow matching on the linear process, written out: x_t = (1 - t) x0 + t eps, target v = eps - x0, the
    squared error summed over a sample's pixels and averaged over the batch."""
    tb = t.view(-1, *([1] * (x0.ndim - 1)))
    x_t = (1 - tb) * x0 + tb * eps
    return ((net(x_t, t, y) - (eps - x0)) ** 2).flatten(1).sum(1).mean()


def _bare_teacher(seed: int, steps: int, batch: int, spec: dict, lr: float, timer: list):
    """Teacher training written as a plain PyTorch loop: the same network, data, noise, loss and optimiser."""
    import torch

    from lab.nets import build_net
    from lab.trainable import cosine_decay

    src = _digits_tensors()
    x_all, y_all = src.x, src.y
    torch.manual_seed(seed)
    net = build_net(spec)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: cosine_decay(i / steps, floor=0.05))
    g = torch.Generator().manual_seed(seed)
    n_cls = src.n_classes
    for it in range(steps):
        t0 = time.perf_counter()
        idx = torch.randint(0, x_all.shape[0], (batch,), generator=g)
        x0, y = x_all[idx], y_all[idx]
        y = torch.where(torch.rand(batch, generator=g) < 0.1, torch.full_like(y, n_cls), y)
        eps = torch.randn(x0.shape, generator=g)
        t = torch.rand(batch, generator=g)
        loss = bare_teacher_loss(net, x0, y, eps, t)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        loss.item()
        timer.append(time.perf_counter() - t0)


def _lab_loop(trainable, steps: int, callbacks, timer: list):
    import lab

    t0 = time.perf_counter()
    for _ in lab.train(trainable, steps=steps, callbacks=callbacks):
        t1 = time.perf_counter()
        timer.append(t1 - t0)
        t0 = t1


def _direct_loop(trainable, steps: int, timer: list):
    """The trainable's own sample_batch / step, called from a plain for loop: no LoopState, no callbacks."""
    for it in range(trainable.it, steps):
        t0 = time.perf_counter()
        b = trainable.sample_batch(it)
        trainable.step(b, it)
        trainable.it = it + 1
        timer.append(time.perf_counter() - t0)


def run_overhead(reps: int = 5, steps: int = 25, batch: int = 32) -> dict:
    """Per-step and whole-run time of: a bare loop, the trainable's step in a for loop, lab.train with no
    callbacks, lab.train with the CLI's callbacks (Guard, Recorder, Checkpoint to a run folder, progress bar); for
    teacher training and DMD. The trainables are configured for
    their usual run lengths (the digits zoo recipes' order: 4000 and 900 steps), so the recorder's snapshot
    cadence is the real one; ``steps`` of them are timed."""
    import lab
    from lab.diffusion.train import TeacherTraining
    from lab.nets import spec_for

    _threads()
    out = {"machine": machine(), "reps": reps, "steps": steps, "batch": batch, "rows": []}
    src = _digits_tensors()
    t_cfg = {"steps": 4000, "batch": batch, "lr": 2e-3, "conditional": True}
    spec = spec_for(src.shape, {"type": "mlp"}, n_classes=src.n_classes)
    dmd_cfg = {**lab.methods.get_method("dmd").digits_recipe, "batch": batch, "n_pairs": 64}
    out["configured_steps"] = {"teacher": t_cfg["steps"], "dmd": dmd_cfg["steps"]}
    teacher = lab.zoo.load("digits/teacher", train_if_missing=False, progress=False)

    mk_t = lambda: TeacherTraining("digits", t_cfg, seed=0)  # noqa: E731
    mk_d = lambda: _dmd(teacher, dmd_cfg)  # noqa: E731
    variants = {
        "teacher": {
            "bare PyTorch loop": lambda tm, _tmp: _bare_teacher(0, steps, batch, spec, 2e-3, tm),
            "trainable.step in a for loop": lambda tm, _tmp: _direct_loop(mk_t(), steps, tm),
            "lab.train, no callbacks": lambda tm, _tmp: _lab_loop(mk_t(), steps, [], tm),
            "lab.train + CLI callbacks": lambda tm, tmp: _with_run(mk_t(), steps, tmp, tm),
        },
        "dmd": {
            "trainable.step in a for loop": lambda tm, _tmp: _direct_loop(mk_d(), steps, tm),
            "lab.train, no callbacks": lambda tm, _tmp: _lab_loop(mk_d(), steps, [], tm),
            "lab.train + CLI callbacks": lambda tm, tmp: _with_run(mk_d(), steps, tmp, tm),
        },
    }
    for what, vs in variants.items():
        per_step = {v: [] for v in vs}
        whole = {v: [] for v in vs}
        for rep in range(reps):
            order = list(vs) if rep % 2 == 0 else list(vs)[::-1]
            for v in order:
                with tempfile.TemporaryDirectory() as tmp:
                    tm: list = []
                    vs[v](tm, Path(tmp) / "run")
                per_step[v].append(median(tm[2:]))
                whole[v].append(sum(tm))
        base = list(vs)[0]
        for v in vs:
            out["rows"].append({"trainable": what, "variant": v, "step_s": per_step[v], "run_s": whole[v],
                                "step_median_s": median(per_step[v]), "run_median_s": median(whole[v]),
                                "baseline": base,
                                "step_overhead": median(per_step[v]) / median(per_step[base]) - 1,
                                "run_overhead": median(whole[v]) / median(whole[base]) - 1})
    return _finish(out)


def _dmd(teacher, cfg):
    import lab

    return lab.methods.get_method("dmd")(teacher, "digits", cfg, seed=0)


def _with_run(trainable, steps, folder, timer):
    from lab.runs.recipes import run_callbacks
    from lab.runs.run import Run

    run = Run.create(folder, {"bench": "overhead"})
    try:
        _lab_loop(trainable, steps, run_callbacks(run, trainable, ema=None, progress=True), timer)
    finally:
        run.release()


def table_overhead(d: dict) -> str:
    lines = ["### c. Overhead of lab's loop, recorder and callbacks (goal: <= 5%)", "",
             f"Digits (8x8, class-conditional UNet), batch {d['batch']}, {d['steps']} steps per run; medians of "
             f"{d['reps']} repetitions, the variants alternating (order reversed every repetition); the trainables are "
             f"configured for {d.get('configured_steps', {})} steps (the recorder snapshots every tenth of that, so "
             f"none falls in the timed steps). Per step: median step time within a run (the first two steps left "
             "out); per run: the sum "
             "of the step times as the loop sees them, including the callbacks' start and end work (the step-0 "
             "checkpoint, the final save). Overheads are against the first row of each block. \"CLI callbacks\" is "
             "`lab.runs.recipes.run_callbacks` (Guard, Recorder, Checkpoint every 5 s or 20x its last save's "
             "duration, progress bar).",
             "", "| trainable | variant | step (ms) | step overhead | run (s) | run overhead |",
             "|---|---|---:|---:|---:|---:|"]
    for r in d["rows"]:
        lines.append(f"| {r['trainable']} | {r['variant']} | {r['step_median_s'] * 1e3:.2f} | "
                     f"{r['step_overhead'] * 100:+.1f}% | {r['run_median_s']:.2f} | {r['run_overhead'] * 100:+.1f}% |")
    before = RESULTS / "scaling_overhead_before.json"
    if before.exists():  # the same measurement before Guard's fused check and the stretched checkpoint interval
        b = {(r["trainable"], r["variant"]): r for r in json.loads(before.read_text())["rows"]}
        cli = [(k, b[(k, "lab.train + CLI callbacks")]) for k in ("teacher", "dmd") if (k, "lab.train + CLI callbacks") in b]
        lines += ["", "Before Guard's fused finiteness check and the stretched checkpoint interval (issue 18; "
                  f"`{before.name}`), the CLI callbacks cost per step: "
                  + ", ".join(f"{k} {r['step_overhead'] * 100:+.1f}% ({r['step_median_s'] * 1e3:.2f} ms)" for k, r in cli)
                  + "."]
    return "\n".join(lines)


# ============================================================================ d. scaling curves
SCALING_KINDS = ("teacher", "progressive", "consistency", "dmd")
BASE_POINT = {"batch": 32, "size": 8, "width": 32, "channels": 1}
AXES = {"batch": (8, 16, 32, 64, 128), "size": (8, 16, 32), "width": (16, 32, 64)}
#: the point the curves extrapolate to: CIFAR-like 32x32 RGB, batch 128, a UNet of widths (128, 256, 256)
TARGET = {"batch": 128, "size": 32, "width": 128, "channels": 3}
#: one GPU, stated assumptions: sustained fp32 throughput of an A100-class card on small convolutions, and a
#: fixed cost per launched kernel (the floor of tiny networks)
GPU = {"name": "one A100-class GPU (assumed)", "flops_per_s": 19.5e12 * 0.4, "s_per_op": 10e-6}


def fit_power(xs, ys) -> dict:
    """Least-squares fit of log y = log a + b log x: {"exponent": b, "prefactor": a, "r2": ...}."""
    import numpy as np

    lx, ly = np.log(np.asarray(xs, float)), np.log(np.asarray(ys, float))
    b, la = np.polyfit(lx, ly, 1)
    pred = la + b * lx
    ss = float(np.sum((ly - ly.mean()) ** 2))
    r2 = 1.0 - float(np.sum((ly - pred) ** 2)) / ss if ss > 0 else 1.0
    return {"exponent": float(b), "prefactor": float(math.exp(la)), "r2": r2}


def extrapolate(fits: dict, base: dict, base_value: float, target: dict) -> float:
    """base_value * prod over axes of (target/base)^exponent (axes multiply independently: the stated assumption)."""
    v = base_value
    for axis, f in fits.items():
        v *= (target[axis] / base[axis]) ** f["exponent"]
    return v


def _image_data(size: int, channels: int, folder: Path) -> str:
    """The data spec of digits at ``size`` px with ``channels`` channels (8: digits; else an .npz of the digits
    resized, written once into ``folder``)."""
    if size == 8 and channels == 1:
        return "digits"
    if size == 16 and channels == 1:
        return "digits16"
    import numpy as np
    import torch
    import torch.nn.functional as F

    from lab.data.images import resolve_image

    p = folder / f"digits_{size}_{channels}.npz"
    if not p.exists():
        src = resolve_image("digits")
        x = F.interpolate(src.x, size=(size, size), mode="bilinear", align_corners=False).clamp(-1, 1)
        if channels == 3:
            x = torch.cat([x, x.flip(-1), -x], 1)
        np.savez(p, x=((x.numpy() + 1) * 127.5).round().astype(np.uint8), y=src.y.numpy())
    return f"images:{p}"


class _OpCount:
    """Counts the aten operators (a proxy for GPU kernel launches) run under it."""

    def __init__(self):
        from torch.utils._python_dispatch import TorchDispatchMode

        counter = self

        class Mode(TorchDispatchMode):
            def __torch_dispatch__(self, func, types, args=(), kwargs=None):
                counter.n += 1
                return func(*args, **(kwargs or {}))

        self.n, self.mode = 0, Mode()


def _build(kind: str, point: dict, folder: Path):
    import lab
    from lab.diffusion.train import TeacherTraining

    data = _image_data(point["size"], point["channels"], folder)
    w = point["width"]
    net = {"type": "unet", "block_out_channels": [w, 2 * w, 2 * w], "layers_per_block": 1, "norm_num_groups": 8,
           "attention": False}
    if kind == "teacher":
        return TeacherTraining(data, {"steps": 1000, "batch": point["batch"], "conditional": True, "net": net}, seed=0)
    teacher = TeacherTraining(data, {"steps": 1, "batch": 2, "conditional": True, "net": net}, seed=0).generator()
    cls = lab.methods.get_method(kind)
    cfg = {**(cls.digits_recipe or {}), "steps": 1000, "batch": point["batch"], "student_net": net}
    if "n_pairs" in cfg:
        cfg["n_pairs"] = 16
    return cls(teacher, data, cfg, seed=0)


def measure_point(kind: str, point: dict, folder: Path, steps: int = 5, warmup: int = 2) -> dict:
    """In this (fresh) process: median step time, the peak-RSS growth over the steps, parameter count, FLOPs and
    operator count of one step."""
    import resource

    from torch.utils.flop_counter import FlopCounterMode

    _threads()
    tr = _build(kind, point, folder)
    params = sum(p.numel() for n in tr.nets().values() for p in n.parameters())
    if hasattr(tr, "teacher"):  # a method's frozen teacher (not one of its trained nets)
        params += sum(p.numel() for p in tr.teacher.parameters())
    trained = sum(p.numel() for n in tr.nets().values() for p in n.parameters() if p.requires_grad)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    times = []
    for it in range(warmup + steps):
        t0 = time.perf_counter()
        b = tr.sample_batch(it)
        tr.step(b, it)
        tr.it = it + 1
        times.append(time.perf_counter() - t0)
    rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    it = tr.it
    fc = FlopCounterMode(display=False)
    with fc:
        tr.step(tr.sample_batch(it), it)
    oc = _OpCount()
    with oc.mode:
        tr.step(tr.sample_batch(it + 1), it + 1)
    return {"kind": kind, **point, "step_s": times[warmup:], "step_median_s": median(times[warmup:]),
            "rss_growth_mb": (rss1 - rss0) / 1024.0, "rss_peak_mb": rss1 / 1024.0, "params": params,
            "trained_params": trained, "n_nets": len(tr.nets()) + (1 if hasattr(tr, "teacher") else 0),
            "flops": int(fc.get_total_flops()), "ops": oc.n}


def scaling_points() -> list[tuple[str, dict]]:
    pts = []
    for kind in SCALING_KINDS:
        seen = set()
        for axis, values in AXES.items():
            for v in values:
                p = {**BASE_POINT, axis: v}
                key = tuple(sorted(p.items()))
                if key not in seen:
                    seen.add(key)
                    pts.append((kind, p))
        pts.append((kind, {**BASE_POINT, "size": 32, "channels": 3}))  # the 32x32 RGB check point
    return pts


def run_scaling(steps: int = 5) -> dict:
    from tqdm.auto import tqdm

    out = {"machine": machine(), "steps": steps, "warmup": 2, "base": BASE_POINT, "axes": AXES, "target": TARGET,
           "gpu": GPU, "rows": []}
    with tempfile.TemporaryDirectory() as tmp:
        for kind, p in tqdm(scaling_points(), desc="scaling points"):
            cmd = [sys.executable, str(Path(__file__).resolve()), "--point",
                   json.dumps({"kind": kind, "point": p, "folder": tmp, "steps": steps})]
            r = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "LAB_NUM_THREADS": "1"})
            if r.returncode:
                raise RuntimeError(f"point {kind} {p} failed:\n{r.stderr[-2000:]}")
            out["rows"].append(json.loads(r.stdout.strip().splitlines()[-1]))
    out["fits"] = fits_of(out)
    return _finish(out)


def fits_of(d: dict) -> dict:
    """kind -> axis -> {"time": fit, "memory": fit}, plus the extrapolations to TARGET (CPU and one GPU)."""
    base, fits = d["base"], {}
    for kind in dict.fromkeys(r["kind"] for r in d["rows"]):
        rows = [r for r in d["rows"] if r["kind"] == kind and r["channels"] == base["channels"]]
        f = {}
        for axis in d["axes"]:
            on = sorted((r for r in rows if all(r[k] == base[k] for k in ("batch", "size", "width") if k != axis)),
                        key=lambda r: r[axis])
            f[axis] = {"time": fit_power([r[axis] for r in on], [r["step_median_s"] for r in on]),
                       "flops": fit_power([r[axis] for r in on], [max(r["flops"], 1) for r in on]),
                       "memory": fit_power([r[axis] for r in on], [max(r["rss_growth_mb"], 1.0) for r in on])}
        b = next(r for r in rows if all(r[k] == base[k] for k in ("batch", "size", "width")))
        rgb = next((r for r in d["rows"] if r["kind"] == kind and r["channels"] == 3), None)
        tgt = d["target"]
        t_cpu = extrapolate({a: v["time"] for a, v in f.items()}, base, b["step_median_s"], tgt)
        flops = extrapolate({a: v["flops"] for a, v in f.items()}, base, b["flops"], tgt)
        mem = extrapolate({a: v["memory"] for a, v in f.items()}, base, max(b["rss_growth_mb"], 1.0), tgt)
        big = max(rows, key=lambda r: r["flops"])  # the largest measured point: fixed per-step costs amortised
        gpu = d["gpu"]
        t_gpu = max(flops / gpu["flops_per_s"], b["ops"] * gpu["s_per_op"])
        fits[kind] = {"axes": f, "base_step_s": b["step_median_s"], "base_flops": b["flops"], "base_ops": b["ops"],
                      "cpu_flops_per_s": b["flops"] / b["step_median_s"],
                      "target_cpu_step_s": t_cpu, "target_flops": flops,
                      "big_flops_per_s": big["flops"] / big["step_median_s"],
                      "target_cpu_step_from_flops_s": flops / (big["flops"] / big["step_median_s"]),
                      "target_rss_growth_mb": mem,
                      "target_gpu_step_s": t_gpu,
                      "rgb32_measured_s": rgb["step_median_s"] if rgb else None,
                      "rgb32_predicted_s": extrapolate({"size": f["size"]["time"]}, base, b["step_median_s"],
                                                       {**base, "size": 32}) if rgb else None}
    return fits


def table_scaling(d: dict) -> str:
    fits = fits_of(d)  # recomputed from the rows (deterministic): the JSON's copy is for readers
    base, tgt, gpu = d["base"], d["target"], d["gpu"]
    lines = ["### d. Scaling: time per training step and peak memory against batch, image size and width", "",
             f"One fresh subprocess per point (one thread); median of {d['steps']} steps after {d['warmup']} warm-up "
             f"steps; memory = growth of the process's peak RSS (`getrusage` max RSS) over those steps, after the "
             f"networks and data were built (activations, gradients, optimiser state). Base point: batch "
             f"{base['batch']}, {base['size']}x{base['size']} px, UNet widths ({base['width']}, {2 * base['width']}, "
             f"{2 * base['width']}); each axis moves alone. Methods: progressive (trajectory, one student + the "
             f"frozen teacher), consistency (student + target + teacher), dmd (distribution matching: generator, "
             f"fake score, teacher). Exponents are log-log least-squares slopes.", "",
             "| trainable | nets | params | step at base (ms) | time ~ batch^b | ~ size^b | ~ width^b "
             "| FLOPs ~ batch^b | ~ size^b | ~ width^b | memory ~ batch^b | ~ size^b | ~ width^b |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for kind, f in fits.items():
        b = next(r for r in d["rows"] if r["kind"] == kind and all(r[k] == base[k] for k in base))
        ax = f["axes"]
        lines.append(f"| {kind} | {b['n_nets']} | {b['params'] / 1e6:.2f} M | {f['base_step_s'] * 1e3:.1f} | "
                     + " | ".join(f"{ax[a][m]['exponent']:.2f}" for m in ("time", "flops", "memory")
                                  for a in ("batch", "size", "width")) + " |")
    lines += ["", "FLOPs are counted (`torch.utils.flop_counter`, one step: forward and backward of every network), "
                  "so their exponents are exact properties of the code; the time exponents carry the machine's load "
                  "(shared with other jobs while this ran: see the load average below) and the fixed per-step costs "
                  "of small tensors (exponents below the FLOP ones at small sizes). Memory growth includes the Adam "
                  "moments created at the first step, a fixed share that flattens the batch exponent."]
    lines += ["", "Measured points (step ms / peak-RSS growth MB):", "",
              "| trainable | batch | size | width | channels | step (ms) | RSS growth (MB) | GFLOP per step |",
              "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in d["rows"]:
        lines.append(f"| {r['kind']} | {r['batch']} | {r['size']} | {r['width']} | {r['channels']} | "
                     f"{r['step_median_s'] * 1e3:.1f} | {r['rss_growth_mb']:.0f} | {r['flops'] / 1e9:.2f} |")
    lines += ["", f"Extrapolation to batch {tgt['batch']}, {tgt['size']}x{tgt['size']} RGB, widths ({tgt['width']}, "
                  f"{2 * tgt['width']}, {2 * tgt['width']}) (CIFAR-10 scale). Assumptions: the three axes multiply "
                  f"independently (each fitted exponent applied to its own ratio); 3 input channels instead of 1 "
                  f"change "
                  f"only the first and last convolution (checked by the measured 32x32 RGB point at the base batch and "
                  f"width against the size-only prediction); on {gpu['name']} a step takes max(FLOPs / "
                  f"{gpu['flops_per_s'] / 1e12:.1f} TFLOP/s (40% of 19.5 TFLOP/s fp32), operators x "
                  f"{gpu['s_per_op'] * 1e6:.0f} us per launch), FLOPs counted by `torch.utils.flop_counter` and "
                  f"extrapolated with their own fitted exponents, the operator count taken from the base point "
                  f"(it does not grow with batch or size).", "",
              "Two CPU estimates: the fitted time exponents (noisy, see above), and the target's FLOPs at the CPU "
              "rate measured at the largest point (32 px, base batch and width).", "",
              "| trainable | 32 px RGB at base: measured / predicted (ms) | CPU GFLOP/s at base / at 32 px "
              "| target step, CPU from time fits (s) | from FLOPs (s) | target TFLOP per step | target RSS growth (GB) "
              "| target step, one GPU (ms) |",
              "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for kind, f in fits.items():
        rgb = (f"{f['rgb32_measured_s'] * 1e3:.0f} / {f['rgb32_predicted_s'] * 1e3:.0f}"
               if f.get("rgb32_measured_s") else "-")
        lines.append(f"| {kind} | {rgb} | {f['cpu_flops_per_s'] / 1e9:.1f} / {f['big_flops_per_s'] / 1e9:.1f} | "
                     f"{f['target_cpu_step_s']:.1f} | {f['target_cpu_step_from_flops_s']:.1f} | "
                     f"{f['target_flops'] / 1e12:.2f} | {f['target_rss_growth_mb'] / 1024:.1f} | "
                     f"{f['target_gpu_step_s'] * 1e3:.1f} |")
    return "\n".join(lines)


# ============================================================================ e. CKA at large n
def naive_linear_cka(x, y, debiased: bool = False) -> float:
    """The textbook version: n x n Gram matrices K = X X^T, L = Y Y^T, then HSIC on them (Kornblith et al. 2019;
    Song et al. 2012 for the debiased estimator). O(n^2) memory, O(n^2 d) time."""
    import numpy as np

    from lab.metrics.similarity import hsic_biased_gram, hsic_unbiased_gram

    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    x = x - x.mean(0)
    y = y - y.mean(0)
    k, l = x @ x.T, y @ y.T
    h = hsic_unbiased_gram if debiased else hsic_biased_gram
    kl, kk, ll = h(k, l), h(k, k), h(l, l)
    return float(kl / math.sqrt(kk * ll))


def cka_data(n: int, d: int, seed: int = 0):
    import numpy as np

    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d)).astype(np.float32)
    y = (np.tanh(x @ rng.standard_normal((d, d)).astype(np.float32) / math.sqrt(d))
         + 0.5 * rng.standard_normal((n, d)).astype(np.float32))
    return x, y


def _peak_mb(fn) -> float:
    import tracemalloc

    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1] / 2 ** 20
    finally:
        tracemalloc.stop()


def _module_from(path: str, name: str):
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def run_cka(reps: int = 5, n: int = 10_000, d: int = 512, layers: int = 4, before: str | None = None) -> dict:
    """linear_cka (both estimators) against the naive Gram version, and cka_matrix against its version before the
    fix (``before``: the path of that lab/metrics/similarity.py, e.g. from ``git show``); numpy allocations are
    traced by tracemalloc, so its peak is the memory of each call."""
    import numpy as np

    from lab.metrics.similarity import cka_matrix, linear_cka

    _threads()
    x, y = cka_data(n, d)
    out = {"machine": machine(), "reps": reps, "n": n, "d": d, "layers": layers, "rows": []}
    fns = {}
    for deb in (False, True):
        tag = "debiased" if deb else "biased"
        fns[f"linear_cka ({tag})"] = ("naive n x n Gram", lambda deb=deb: linear_cka(x, y, debiased=deb),
                                      lambda deb=deb: naive_linear_cka(x, y, debiased=deb))
    if before:
        old = _module_from(before, "similarity_before")
        out["before"] = {"path": str(before), "note": "lab/metrics/similarity.py before the cka_matrix fix"}
        rng = np.random.default_rng(1)
        feats = {f"layer{i}": x @ rng.standard_normal((d, d)).astype(np.float32) / math.sqrt(d) for i in range(layers)}
        for deb in (False, True):
            tag = "debiased" if deb else "biased"
            fns[f"cka_matrix {layers}x{layers} ({tag})"] = (
                "cka_matrix before the fix", lambda deb=deb: cka_matrix(feats, feats, debiased=deb).to_numpy(),
                lambda deb=deb: old.cka_matrix(feats, feats, debiased=deb).to_numpy())
    for name, (base, fast, slow) in fns.items():
        vf, vn = np.asarray(fast()), np.asarray(slow())
        tf, tn = [], []
        for rep in range(reps):
            first = rep % 2 == 0
            if first:
                tf.append(_clock(fast))
            tn.append(_clock(slow))
            if not first:
                tf.append(_clock(fast))
        mf, mn = _peak_mb(fast), _peak_mb(slow)
        out["rows"].append({"what": name, "baseline": base, "fast_s": tf, "naive_s": tn, "fast_median_s": median(tf),
                            "naive_median_s": median(tn), "fast_peak_mb": mf, "naive_peak_mb": mn,
                            "max_abs_diff": float(np.max(np.abs(vf - vn))), "value": float(np.mean(vf))})
    return _finish(out)


def table_cka(d: dict) -> str:
    lines = [f"### e. Linear CKA at n = {d['n']:,} x {d['d']} features against the naive n x n Gram version", "",
             f"`lab.metrics.similarity` works in feature space (d x d products; no n x n matrix); the naive version "
             f"forms K = X X^T and L = Y Y^T and applies the same HSIC estimators to them. `cka_matrix` "
             f"({d.get('layers', 4)} layers against themselves) is compared with its version before this issue's fix "
             f"(which recomputed every layer's conversion, centring and self-HSIC for every pair). Medians of "
             f"{d['reps']} alternating repetitions; peak memory by tracemalloc (numpy's allocations are traced).", "",
             "| computation | baseline | lab (s) | baseline (s) | speed-up | lab peak (MB) | baseline peak (MB) "
             "| max abs diff | value |", "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in d["rows"]:
        lines.append(f"| {r['what']} | {r.get('baseline', 'naive n x n Gram')} | {r['fast_median_s']:.3f} | "
                     f"{r['naive_median_s']:.3f} | {r['naive_median_s'] / r['fast_median_s']:.1f}x | "
                     f"{r['fast_peak_mb']:.0f} | {r['naive_peak_mb']:.0f} | {r['max_abs_diff']:.1e} | "
                     f"{r['value']:.4f} |")
    return "\n".join(lines)


# ============================================================================ f. KD step time
KD_SHARED = ("batch", "student", "n_train", "augment")


def run_kd(reps: int = 5, steps: int = 20) -> dict:
    """Every KD method with a classification kind on digits (its bench config when that is on digits, else the
    defaults), against scratch training of the same student at the same batch (one scratch per distinct student);
    the methods and their baselines alternate, repetition after repetition."""
    import lab
    import torch

    _threads()
    out = {"machine": machine(), "reps": reps, "steps": steps, "task": "digits", "rows": [], "skipped": {}}
    task = lab.kd.get_task("digits")
    teacher = lab.zoo.entry_name("kd", "digits")
    cfgs, bases = {}, {}
    for name in lab.kd.list_methods():
        cls = lab.kd.get(name)
        if task.kind not in cls.kinds:
            out["skipped"][name] = f"supports {', '.join(cls.kinds)} tasks only"
            continue
        if name == "scratch":
            continue
        cfg = {**(cls.bench_config if cls.bench_task == "digits" else {}), "steps": 10_000}
        full = cls.Config(**cfg).__dict__
        cfgs[name] = cfg
        bases[name] = {k: full[k] for k in KD_SHARED if k in full}

    def make(name, cfg):
        cls = lab.kd.get(name)
        return cls(teacher if cls.needs_teacher else None, "digits", cfg, seed=0)

    scratch_keys = {n: json.dumps(b, sort_keys=True) for n, b in bases.items()}
    trainers = {n: make(n, c) for n, c in cfgs.items()}
    for k in dict.fromkeys(scratch_keys.values()):
        trainers[f"scratch {k}"] = make("scratch", {**json.loads(k), "steps": 10_000})
    for tr in trainers.values():  # warm-up
        _direct_loop(tr, 3, [])
    tnet = trainers["kd"].teacher
    times = {n: [] for n in trainers}
    t_fwd = []
    batch = lab.kd.get("scratch").Config().batch
    xb = task.x_train[:batch]
    for rep in range(reps):
        order = list(trainers) if rep % 2 == 0 else list(trainers)[::-1]
        for name in order:
            tr = trainers[name]
            tm: list = []
            _direct_loop(tr, tr.it + steps, tm)
            times[name].append(median(tm))
        with torch.no_grad():
            t_fwd.append(median([_clock(lambda: tnet(xb)) for _ in range(steps)]))
    fwd = median(t_fwd)
    out["batch"] = batch
    out["teacher_forward_s"] = fwd
    out["scratch"] = {k: {"config": json.loads(k), "step_s": times[f"scratch {k}"],
                          "step_median_s": median(times[f"scratch {k}"])} for k in dict.fromkeys(scratch_keys.values())}
    for name in cfgs:
        m = median(times[name])
        sc_ = out["scratch"][scratch_keys[name]]["step_median_s"]
        needs = lab.kd.get(name).needs_teacher
        student = bases[name].get("student") or {}
        nets = trainers[name].nets()
        size = lambda net: sum(p.numel() for p in net.parameters() if p.requires_grad)  # noqa: E731
        peers = sum(size(v) == size(nets["student"]) for v in nets.values())  # dml trains a cohort of students
        out["rows"].append({"method": name, "needs_teacher": needs, "student": student.get("type", "task default"),
                            "scratch_key": scratch_keys[name], "scratch_step_s": sc_,
                            "step_s": times[name], "step_median_s": m, "ratio": m / sc_,
                            "students": peers, "expected_ratio": (peers * sc_ + (fwd if needs else 0.0)) / sc_})
    return _finish(out)


def table_kd(d: dict) -> str:
    lines = [f"### f. KD step time against scratch ({d['task']}, batch {d['batch']})", "",
             f"Median step time over {d['steps']} steps per repetition, median of {d['reps']} repetitions with every "
             f"method and its scratch baseline (the same student, batch and training subset, cross-entropy only) "
             f"interleaved. The teacher's forward pass on one batch: {d['teacher_forward_s'] * 1e3:.2f} ms; expected "
             f"= (students x scratch + teacher forward) / scratch (students: the student-sized networks trained, 2 "
             f"for dml's cohort; no teacher forward for methods without a teacher). Extra networks (fitnets' "
             f"regressor, ofa's branches) are not in the expectation.", "",
             "| method | student | step (ms) | scratch (ms) | / scratch | expected | excess over expected |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for r in sorted(d["rows"], key=lambda r: r["ratio"]):
        lines.append(f"| {r['method']} | {r['student']} | {r['step_median_s'] * 1e3:.2f} | "
                     f"{r['scratch_step_s'] * 1e3:.2f} | {r['ratio']:.2f}x | {r['expected_ratio']:.2f}x | "
                     f"{(r['ratio'] / r['expected_ratio'] - 1) * 100:+.0f}% |")
    if d.get("skipped"):
        lines += ["", "Not run on digits: " + "; ".join(f"{k} ({v})" for k, v in d["skipped"].items()) + "."]
    return "\n".join(lines)


# ============================================================================ the section
TABLES = {"speedup": table_speedup, "diffusers": table_diffusers, "overhead": table_overhead,
          "scaling": table_scaling, "cka": table_cka, "kd": table_kd}
RUNS = {"speedup": run_speedup, "diffusers": run_diffusers, "overhead": run_overhead, "scaling": run_scaling,
        "cka": run_cka, "kd": run_kd}


def section(results: dict[str, dict]) -> str:
    """The RESULTS.md section from ``results`` (name -> the JSON of that measurement; any subset of NAMES)."""
    parts = [HEADING, "",
             "Written by `bench/scaling.py` (one subcommand per table, rows in `bench/results/scaling_<name>.json`). "
             "Every ratio is measured within one run, baseline and method interleaved; one thread on a shared "
             "2-core machine, so absolute times move with the load recorded under each table."]
    for name in NAMES:
        if name in results:
            d = results[name]
            m = d["machine"]
            la = m.get("load_average_start", [0, 0, 0])
            le = m.get("load_average_end", la)
            parts += ["", TABLES[name](d), "",
                      f"Machine: {m['cpu']}, {m['threads']} thread, torch {m['torch']}; load average (1 min) "
                      f"{la[0]:.2f} at the start, {le[0]:.2f} at the end."]
    return "\n".join(parts) + "\n"


def load_results() -> dict[str, dict]:
    return {n: json.loads(result_path(n).read_text()) for n in NAMES if result_path(n).exists()}


def write(path=None) -> str:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from results_md import RESULTS_MD, replace_section

    text = section(load_results())
    replace_section(KEY, text, path or RESULTS_MD)
    return text


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("what", nargs="*", default=[], help=f"any of: {', '.join(NAMES)}, all")
    ap.add_argument("--write", action="store_true", help="only rebuild the section of RESULTS.md from the JSON files")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--point", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--cka-before", default=None,
                    help="cka: a copy of lab/metrics/similarity.py from before the fix, timed against the current one")
    a = ap.parse_args(argv)
    if a.point:
        spec = json.loads(a.point)
        print(json.dumps(measure_point(spec["kind"], spec["point"], Path(spec["folder"]), spec["steps"])))
        return
    if a.reps < 5:
        ap.error("--reps must be at least 5 (medians of at least 5 repetitions)")
    if not a.write:
        todo = list(NAMES) if "all" in a.what else a.what
        bad = [w for w in todo if w not in NAMES]
        if bad:
            ap.error(f"unknown measurement {bad[0]!r}; allowed: {', '.join(NAMES)}, all")
        if not todo:
            ap.error("name a measurement (or all), or pass --write")
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from lab.io import atomic_write_json

        for name in todo:
            t0 = time.perf_counter()
            kw = {"before": a.cka_before} if name == "cka" else {}
            d = RUNS[name]() if name == "scaling" else RUNS[name](reps=a.reps, **kw)
            d["wall_s"] = time.perf_counter() - t0
            atomic_write_json(result_path(name), d)
            print(TABLES[name](d), flush=True)
            print(f"[{name}: {d['wall_s']:.0f} s]", flush=True)
    write()


if __name__ == "__main__":
    main()
