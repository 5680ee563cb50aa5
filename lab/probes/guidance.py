"""Probes for guidance distillation and multi-student distillation (data only, no figures).

- ``guidance_sweep``: the w-conditioned student (1 pass per step) and the classifier-free-guided
  teacher (2 passes per step) at the same number of steps over a range of guidance weights,
  each compared with a many-step guided-teacher reference.
- ``student_split``: a routed multi-student generator's one-step samples per student and per class.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from lab.diffusion.generators import Generator, make_noise
from lab.errors import LabError
from lab.metrics import mode_stats, sliced_wasserstein
from lab.probes import to_numpy


def _class_swd(x, ref, y, n_classes):
    vals = [sliced_wasserstein(x[y == k], ref[y == k]) for k in range(n_classes) if int((y == k).sum()) > 1]
    return float(np.mean(vals))


def _spread(x, y, n_classes):
    """Mean over classes of the RMS distance of a class's samples to their own mean."""
    vals = [float((x[y == k] - x[y == k].mean(0)).norm(dim=1).pow(2).mean().sqrt())
            for k in range(n_classes) if int((y == k).sum()) > 1]
    return float(np.mean(vals))


@torch.no_grad()
def guidance_sweep(student: Generator, teacher: Generator, ws=(0.0, 1.0, 2.0, 4.0), nfe: int = 4, n: int = 2000,
                   seed: int = 99, ref_steps: int = 64, gmm=None, n_classes: int | None = None):
    """Student (``guided_flow``, ``nfe`` steps = nfe passes) vs guided teacher (``cfg``, the same
    number of steps = 2 nfe passes) at each guidance weight w, from the same noise and labels
    (labels y = i mod n_classes). The reference is the guided teacher with ``ref_steps`` steps
    from other noise.

    Returns ``(summary, samples)``: summary has one row per (w, model) with columns w, model,
    steps, passes, swd (to the reference, all classes together), class_swd (mean per-class
    SWD), pair (mean distance to the guided teacher's sample from the same noise and steps),
    spread (mean per-class RMS radius) and, with ``gmm``, high_quality (share within 3 std of
    a mode); samples has columns w, model, x, y, label.
    """
    if not isinstance(nfe, int) or nfe < 1:
        raise LabError(f"nfe must be a positive integer, got {nfe!r}")
    if not isinstance(n, int) or n < 2:
        raise LabError(f"n must be an integer >= 2, got {n!r}")
    if n_classes is None:
        n_classes = int(getattr(student.nets()["denoiser"], "n_classes", 0) or 0)
    if n_classes < 1:
        raise LabError("guidance_sweep needs a class-conditional student (n_classes >= 1)")
    z = make_noise(n, 2, seed=seed, device=student.device)
    z_ref = make_noise(n, 2, seed=seed + 1, device=student.device)
    y = torch.arange(n, device=z.device) % n_classes
    rows, samples = [], []
    for w in ws:
        w = float(w)
        ref = teacher.sample(z=z_ref, y=y, nfe=2 * ref_steps, w=w).x
        t = teacher.sample(z=z, y=y, nfe=2 * nfe, w=w).x
        s = student.sample(z=z, y=y, nfe=nfe, w=w).x
        for model, x, passes in (("teacher", t, 2 * nfe), ("student", s, nfe)):
            row = {"w": w, "model": model, "steps": nfe, "passes": passes, "swd": sliced_wasserstein(x, ref),
                   "class_swd": _class_swd(x, ref, y, n_classes), "pair": float((x - t).norm(dim=1).mean()),
                   "spread": _spread(x, y, n_classes)}
            if gmm is not None:
                row["high_quality"] = mode_stats(x, gmm)["high_quality"]
            rows.append(row)
            samples.append(pd.DataFrame({"w": w, "model": model, "x": to_numpy(x[:, 0]), "y": to_numpy(x[:, 1]), "label": to_numpy(y)}))
    return pd.DataFrame(rows), pd.concat(samples, ignore_index=True)


@torch.no_grad()
def student_split(generator: Generator, n: int = 2000, seed: int = 99) -> pd.DataFrame:
    """One-step samples of a ``routed`` multi-student generator: columns x, y, label, student."""
    route = getattr(generator, "route", None)
    if route is None:
        raise LabError(f"student_split needs a routed multi-student generator, got {type(generator).__name__}")
    z = make_noise(n, 2, seed=seed, device=generator.device)
    y = torch.arange(n, device=z.device) % len(route)
    x = generator.sample(z=z, y=y, nfe=1).x
    return pd.DataFrame({"x": to_numpy(x[:, 0]), "y": to_numpy(x[:, 1]), "label": to_numpy(y),
                         "student": np.asarray(route)[to_numpy(y)]})
