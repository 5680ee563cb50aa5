"""Particle paths: where score-distillation particles (``sds``, ``vsd_particles``) go during training.

Returns data only (tidy DataFrames); ``lab.viz.particles`` draws them.

    rec = ParticleRecorder(every=10, n=128)
    for _ in lab.distill(method, callbacks=[rec]): pass
    paths = rec.frame()                        # step, particle, x, y

    paths = particle_paths(method, every=10)   # the same, training ``method`` to its end
    paths = particle_paths("runs/my_sds_run")  # from a run folder's snapshots
    summary = particle_summary(paths, source.gmm)
    side = score_distillation_side_by_side()   # sds, vsd_particles, esd, dsd from the same start: paths, forces
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from lab.diffusion.generators import make_noise
from lab.errors import LabError
from lab.methods import get_method
from lab.runs.loop import Callback, train
from lab.runs.run import Run

COLUMNS = ["step", "particle", "x", "y"]


def current_points(method, n: int | None = None, seed: int = 2024) -> np.ndarray:
    """The method's current points: its first n particles, or its generator on fixed noise."""
    gen = method.generator()
    if n is None:
        n = method.config.n_particles if hasattr(method.config, "n_particles") else 512
    z = make_noise(n, 2, seed=seed, device=method.device)
    nfe = min(gen.native_nfe) if gen.native_nfe else 1
    with torch.no_grad():
        return gen.sample(z=z, nfe=nfe, seed=0).x.detach().cpu().numpy()


class ParticleRecorder(Callback):
    """Records the first ``n`` points every ``every`` steps (and the starting positions)."""

    def __init__(self, every: int = 10, n: int | None = 128):
        if not isinstance(every, int) or every < 1:
            raise LabError(f"every must be a positive integer, got {every!r}")
        self.every, self.n = every, n
        self.steps: list[int] = []
        self.points: list[np.ndarray] = []

    def _record(self, step, trainable):
        if self.steps and self.steps[-1] == step:
            return
        self.steps.append(int(step))
        self.points.append(current_points(trainable, self.n))

    def on_start(self, trainable, total):
        self._record(trainable.it, trainable)

    def on_step(self, state):
        if state.it % self.every == 0 or state.it == state.total:
            self._record(state.it, state.trainable)

    def frame(self) -> pd.DataFrame:
        if not self.points:
            return pd.DataFrame(columns=COLUMNS)
        return _frame(self.steps, self.points)


def _frame(steps, points) -> pd.DataFrame:
    parts = []
    for s, p in zip(steps, points):
        parts.append(pd.DataFrame({"step": s, "particle": np.arange(p.shape[0]), "x": p[:, 0], "y": p[:, 1]}))
    return pd.concat(parts, ignore_index=True)


def particle_paths(method_or_run, every: int = 10, n: int | None = 128, steps: int | None = None) -> pd.DataFrame:
    """Particle positions over training: DataFrame(step, particle, x, y).

    ``method_or_run`` is a method (trained here from its current step to ``steps`` or its
    own total, recording every ``every`` steps) or a run folder / :class:`lab.runs.Run`
    (read from its snapshots: the first ``n`` of each snapshot's ``samples``).
    """
    if isinstance(method_or_run, (str, Path, Run)):
        run = method_or_run if isinstance(method_or_run, Run) else Run.open(method_or_run)
        snaps = run.snapshots()
        if not snaps:
            raise LabError(f"run {run.folder} has no snapshots; train it with a Recorder (distill_run does)")
        steps_, pts = [], []
        for p in snaps:
            with np.load(p, allow_pickle=False) as z:
                if "samples" not in z:
                    continue
                steps_.append(int(p.stem.split("_")[1]))
                pts.append(z["samples"][:n] if n else z["samples"])
        if not pts:
            raise LabError(f"run {run.folder}'s snapshots hold no samples")
        return _frame(steps_, pts)
    if not hasattr(method_or_run, "generator"):
        raise LabError(f"particle_paths needs a method or a run folder, got {type(method_or_run).__name__}")
    rec = ParticleRecorder(every, n)
    for _ in train(method_or_run, steps, [rec]):
        pass
    return rec.frame()


def nearest_mode_distance(points, gmm) -> np.ndarray:
    """Distance from each point to the nearest mixture-component centre."""
    x = torch.tensor(np.array(points, dtype=np.float64))
    return torch.cdist(x, gmm.means.to(torch.float64)).min(1).values.numpy()


def particle_summary(paths: pd.DataFrame, gmm=None) -> pd.DataFrame:
    """Per recorded step: mean step length since the previous record, spread (std of x and y), and,
    with a GMM, the mean distance to the nearest mode centre. Columns: step, n, move, spread, mode_dist."""
    rows, prev = [], None
    for step, g in paths.sort_values(["step", "particle"]).groupby("step", sort=True):
        p = g[["x", "y"]].to_numpy()
        move = float(np.linalg.norm(p - prev, axis=1).mean()) if prev is not None and prev.shape == p.shape else np.nan
        rows.append({"step": int(step), "n": len(p), "move": move, "spread": float(p.std(0).mean()),
                     "mode_dist": float(nearest_mode_distance(p, gmm).mean()) if gmm is not None else np.nan})
        prev = p
    return pd.DataFrame(rows)


def particle_metrics(points, gmm, k: int = 4, n_sigma: float = 3.0, data=None, radius: float | None = None) -> dict:
    """Mode coverage, spread and fidelity of a particle set against a Gaussian mixture's modes.

    ``modes_covered``: modes holding at least ``k`` particles within ``n_sigma`` of their std;
    ``spread``: the particles' std around their own cluster's mean (per nearest mode, x and y averaged, modes
    with at least 2 particles, weighted by their counts): what SDS's collapse removes;
    ``fidelity``: the mean distance to the nearest mode centre (lower is closer to the modes);
    ``data_spread``: the mixture's own per-mode std (mean over modes) for scale;
    with ``data`` (reference samples): ``coverage``, the share of data points with a particle within ``radius``
    (default: the mixture's mean std), a recall that a collapsed set loses."""
    x = torch.as_tensor(np.asarray(points, dtype=np.float64))
    means = gmm.means.to(torch.float64)
    stds = gmm.stds.to(torch.float64).reshape(means.shape[0], -1).mean(1)
    d = torch.cdist(x, means)
    near = d.argmin(1)
    dn = d.gather(1, near[:, None])[:, 0]
    good = dn <= n_sigma * stds[near]
    counts = torch.bincount(near[good], minlength=means.shape[0])
    num, den = 0.0, 0
    for j in range(means.shape[0]):
        pj = x[near == j]
        if pj.shape[0] >= 2:
            num += float(pj.std(0, unbiased=True).mean()) * pj.shape[0]
            den += pj.shape[0]
    out = {"modes_covered": int((counts >= k).sum()), "n_modes": int(means.shape[0]),
           "spread": num / max(den, 1), "fidelity": float(dn.mean()), "data_spread": float(stds.mean())}
    if data is not None:
        r = float(stds.mean()) if radius is None else float(radius)
        ref = torch.as_tensor(np.asarray(data, dtype=np.float64))
        out["coverage"] = float((torch.cdist(ref, x).min(1).values <= r).to(torch.float64).mean())
    return out


#: the score-distillation methods compared side by side (mode seeking, fitted fake score, entropy mix, own seeds)
SIDE_BY_SIDE = ("sds", "vsd_particles", "esd", "dsd")


class _ForceRecorder(Callback):
    """The mean force on each of the first ``n`` particles (``lab.probes.fields.method_field``) at given steps."""

    def __init__(self, at: tuple[int, ...], n: int, seed: int):
        self.at, self.n, self.seed, self.frames = set(int(a) for a in at), n, seed, []

    def _record(self, step, trainable):
        from lab.probes.fields import method_field  # same layer; imported late as it pulls every probe in

        f = method_field(trainable, points=self.n, seed=self.seed)
        self.frames.append(pd.DataFrame({"step": int(step), "particle": np.arange(len(f)), "x": f.x.to_numpy(),
                                         "y": f.y.to_numpy(), "u": f.u.to_numpy(), "v": f.v.to_numpy()}))

    def on_start(self, trainable, total):
        if trainable.it in self.at:
            self._record(trainable.it, trainable)

    def on_step(self, state):
        if state.it in self.at:
            self._record(state.it, state.trainable)


def score_distillation_side_by_side(teacher: str = "toy2d/8gaussians/analytic", data: str = "8gaussians",
                                    methods=SIDE_BY_SIDE, n_particles: int = 128, steps: int = 300,
                                    every: int = 10, n_forces: int = 64, force_at=(0.0, 0.5, 1.0), seed: int = 0,
                                    config: dict | None = None, progress=None) -> dict:
    """Score-distillation methods trained side by side from the SAME initial particles (same seed and count).

    Returns a dict of DataFrames: ``paths`` (method, step, particle, x, y; every ``every`` steps, all particles),
    ``forces`` (method, step, particle, x, y, u, v: each of the first ``n_forces`` particles and its mean
    score-distillation push, -grad averaged over noise levels and draws, at the fractions ``force_at`` of the run)
    and ``metrics`` (method, modes_covered, spread, fidelity, coverage, seconds; see :func:`particle_metrics`,
    coverage against 2000 data samples). ``config``: per-method overrides ``{"dsd": {...}}``; ``progress(fraction,
    text)`` is called per method."""
    import time

    from lab.data import resolve  # lazy: only the side-by-side run resolves a dataset

    if not isinstance(steps, int) or steps < 1:
        raise LabError(f"steps must be a positive integer, got {steps!r}")
    unknown = [m for m in methods if m not in SIDE_BY_SIDE]
    if unknown:
        raise LabError(f"unknown side-by-side method(s) {unknown}; allowed: {', '.join(SIDE_BY_SIDE)}")
    src = resolve(data)
    gmm = getattr(src, "gmm", None)
    ref = src.sample(2000, 1234).cpu().numpy()
    at = sorted({int(round(f * steps)) for f in force_at})
    paths, forces, rows = [], [], []
    for i, name in enumerate(methods):
        if progress is not None:
            progress(i / len(methods), f"training {name}")
        cfg = {"n_particles": n_particles, "steps": steps, **(config or {}).get(name, {})}
        m = get_method(name)(teacher, data, cfg, seed=seed)
        rec, frc = ParticleRecorder(every=every, n=None), _ForceRecorder(tuple(at), n_forces, seed)
        t0 = time.process_time()
        for _ in train(m, None, [rec, frc]):
            pass
        secs = time.process_time() - t0
        p = rec.frame()
        p.insert(0, "method", name)
        paths.append(p)
        f = pd.concat(frc.frames, ignore_index=True)
        f.insert(0, "method", name)
        forces.append(f)
        x = p[p.step == p.step.max()][["x", "y"]].to_numpy()
        met = particle_metrics(x, gmm, data=ref) if gmm is not None else {}
        rows.append({"method": name, **{k: met.get(k, np.nan) for k in ("modes_covered", "spread", "fidelity",
                                                                          "coverage")}, "seconds": secs})
    if progress is not None:
        progress(1.0, "done")
    return {"paths": pd.concat(paths, ignore_index=True), "forces": pd.concat(forces, ignore_index=True),
            "metrics": pd.DataFrame(rows)}
