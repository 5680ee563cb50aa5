"""Quality against NFE and against measured latency: the teacher's curve and each student's points, from the
same noise (and the same class labels) at every NFE.

What to look for: a good student sits left of (fewer NFE) or below (better quality) the teacher's curve at
the same cost; the noise floor is where a perfect generator would sit at this sample size, so a point on it
cannot be told apart from the data. Quality is a distance (lower is better): the sliced Wasserstein distance
to fresh data for 2D, the Frechet distance in the features of the zoo's digits feature net for images
(:mod:`lab.metrics.images`; FD is biased by the sample count, so compare at the same ``n`` only).

Fidelity note: papers plot FID on 50k ImageNet or CIFAR samples against NFE and GPU latency; here the sample
sets are hundreds of toy points or 8x8 digits and the latency is a CPU wall clock of one batch, so only the
shape of the curves (who is below whom, how steep) carries over, not the numbers.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from lab.data import ImageSource
from lab.data import resolve as resolve_data
from lab.diffusion.generators import Generator, make_noise
from lab.errors import LabError, check_int
from lab.metrics import noise_floor, sliced_wasserstein
from lab.probes import panel_nfes, timed_sample
from lab.probes.images import n_classes_of

COLUMNS = ["model", "kind", "nfe", "native", "quality", "metric", "floor", "ms"]
#: a call predicted (from the same model at a smaller NFE) to take longer than this many seconds is timed once
#: after its warm-up instead of ``repeats`` times: the digits teacher at 50 NFE takes seconds per batch of 500
SLOW_CALL = 0.25


def _nfes(name: str, v) -> tuple[int, ...]:
    try:
        vals = tuple(v)
    except TypeError:
        vals = None
    if not vals or any(isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1 for k in vals):
        r = repr(v)
        raise LabError(f"{name} must be a non-empty list of integers >= 1, got {r if len(r) <= 60 else r[:57] + '...'}")
    return tuple(sorted({int(k) for k in vals}))


def _scorer(teacher: Generator, data, n: int, seed: int):
    """(metric name, noise floor at n, score(x) -> distance to data) for the teacher's kind of samples."""
    shape = tuple(teacher.shape)
    src = resolve_data(data)
    if len(shape) == 3:
        from lab.metrics import images as im  # lazy: scipy and scikit-learn only when images are measured

        name = getattr(src, "name", None)
        if not isinstance(src, ImageSource) or name not in im.DATA:
            got = getattr(src, "spec", data)
            raise LabError(f"image quality is measured on {', '.join(im.DATA)}; got data {got!r}")
        size = 8 if name == "digits" else 16
        if shape != (1, size, size):
            raise LabError(f"data {name} holds (1, {size}, {size}) images, the teacher makes {shape}")
        ref = im.features(resolve_data(f"{name}:test").x)  # the test split, as image_metrics and noise_floor
        floor = float(im.noise_floor(name, n=n, seed=seed)["fd"])
        return "fd", floor, lambda x: im.frechet_distance(ref, im.features(x))
    if isinstance(src, ImageSource):
        raise LabError(f"data {src.spec!r} holds images; the teacher makes points of shape {shape}")
    ref = src.sample(n, torch.Generator().manual_seed(seed + 777))
    if tuple(ref.shape[1:]) != shape:
        raise LabError(f"data {src.spec!r} has points of shape {tuple(ref.shape[1:])}, the teacher makes {shape}")
    return "swd", float(noise_floor(src, n)), lambda x: sliced_wasserstein(x, ref)


@torch.no_grad()
def quality_curves(teacher: Generator, students: dict[str, Generator], data, *, nfes=(1, 2, 4, 8),
                   teacher_nfes=(1, 2, 4, 8, 16, 32, 50), n: int = 1000, seed: int = 0, native_only: bool = True,
                   repeats: int = 3, progress=None) -> pd.DataFrame:
    """Quality and warm latency of the teacher at each of ``teacher_nfes`` and of each student at each of ``nfes``
    (with ``native_only``, only those it was trained for, chosen by :func:`lab.probes.panel_nfes`; a one-step
    student appears at 1 NFE only).

    ``data``: a toy2d source or spec (``"toy2d:8gaussians"``) for 2D generators; ``"digits"`` / ``"digits16"``
    (or that image source) for image generators. Every model starts from ``make_noise(n, teacher.shape, seed)``
    at every NFE; class-conditional models all get the labels ``arange(n) % n_classes`` (as
    :func:`lab.probes.images.sample_grid`). Latency: :func:`lab.probes.timed_sample` (an untimed warm-up call,
    then the median of ``repeats`` timed calls of the whole batch of n; a call predicted from the same model's
    smaller NFE to take over ``SLOW_CALL`` seconds is timed once); the quality is measured on the timed sample.
    ``progress(done, total)`` is called after each (model, NFE).

    One row per (model, NFE): model ("teacher" or the student's name), kind ("teacher"/"student"), nfe,
    native (the model was trained for this NFE; always True for an ODE sampler without native NFEs), quality
    (lower is better), metric ("swd": sliced Wasserstein to fresh data, or "fd": Frechet distance in the digits
    feature net's features to the test split), floor (the metric's noise floor at n), ms (per batch of n).
    """
    nfes, teacher_nfes = _nfes("nfes", nfes), _nfes("teacher_nfes", teacher_nfes)
    n, seed = check_int("n", n, 2), check_int("seed", seed, 0)
    check_int("repeats", repeats, 1)
    students = dict(students or {})
    shape = tuple(teacher.shape)
    for name, g in students.items():
        if name == "teacher":
            raise LabError("a student may not be named 'teacher'")
        if tuple(g.shape) != shape:
            raise LabError(f"student {name!r} makes samples of shape {tuple(g.shape)}, the teacher {shape}")
    metric, floor, score = _scorer(teacher, data, n, seed)
    k = n_classes_of(teacher)
    y = (torch.arange(n) % k) if k else None
    z = make_noise(n, shape, seed)
    plan = [("teacher", "teacher", teacher, teacher_nfes)]
    plan += [(name, "student", g, panel_nfes(g, nfes, native_only)) for name, g in students.items()]
    total, rows = sum(len(p[3]) for p in plan), []
    for model, kind, gen, ks in plan:
        nat, last = tuple(getattr(gen, "native_nfe", ()) or ()), None
        yy = y if (y is not None and n_classes_of(gen)) else None
        for nfe in ks:
            slow = last is not None and last[1] * nfe / last[0] > SLOW_CALL
            res, sec, _ = timed_sample(gen, z, nfe, seed=seed, y=yy, repeats=1 if slow else repeats)
            last = (nfe, sec)
            rows.append({"model": model, "kind": kind, "nfe": int(nfe), "native": (not nat) or nfe in nat,
                         "quality": float(score(res.x)), "metric": metric, "floor": floor, "ms": 1000.0 * sec})
            if progress is not None:
                progress(len(rows), total)
    return pd.DataFrame(rows, columns=COLUMNS)


__all__ = ["quality_curves", "COLUMNS", "SLOW_CALL"]
