"""The method's own field: one tidy DataFrame per 2D method, from the probe that fits what the method is.

``method_field(method)`` returns arrows (and, for a discriminator, a scalar field) on the plane, with columns

    x, y     where the arrow starts
    u, v     the arrow (in data units)
    kind     what it is (see below)
    units    "offset": the arrow ends at a meaningful point (draw it as it is);
             "direction": only its direction and relative length mean something (scale it to the grid)
    value    a scalar at (x, y) (the discriminator's logit), NaN elsewhere
    t, method

and extra columns per kind. Which field a method gets (:func:`field_kind`):

- ``scores`` (dmd, dmd2, sid, vsd, rcm: a fake score fitted online, ``lab.probes.dm``): real minus fake score
  on a grid of x_t (kind "real - fake score"); dmd2 with its GAN head on also gets "discriminator" rows;
- ``decision`` (add, ``lab.probes.adversarial``): the discriminator's logit on a grid and its gradient;
- ``targets`` (consistency, scm, progressive, reflow, guidance, flowmap, boot; ``lab.probes.targets``): from
  x_t to the clean sample the regression target implies (a velocity target converted with the process);
- ``segments`` (tscd, shortcut, ``lab.probes.segments``): the teacher's ODE paths ("teacher path") and the
  student's jumps between segment boundaries ("student jump", with the gap to the teacher at its end);
- ``particles`` (sds, vsd_particles, esd, dsd): each particle and its score-distillation force averaged over noise
  levels and draws ("particle force");
- ``pairs`` (msd: no fake score; each student regresses the teacher's ODE endpoints): from each student sample
  G(z) to its target ODE(z) ("pair target", with the serving ``student``).

Probes draw their own seeded noise: calling them never moves the method's random stream.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from lab.diffusion.generators import make_noise
from lab.errors import LabError
from lab.methods import get_method
from lab.methods.distribution_matching.base import FakeScoreMixin
from lab.probes import targets as targets_probe
from lab.probes import to_numpy
from lab.probes.adversarial import decision_field
from lab.probes.dm import score_field
from lab.probes.segments import segment_boundaries

COLUMNS = ["x", "y", "u", "v", "kind", "units", "value", "t", "method"]
#: the methods whose student jumps between segment boundaries
SEGMENT_METHODS = ("tscd", "shortcut")
#: each kind's default time (segments span the whole path; particles average over their schedule)
DEFAULT_T = {"scores": 0.5, "decision": 0.1, "targets": 0.5, "segments": 1.0, "particles": 0.5, "pairs": 1.0}


def field_kind(method) -> str:
    """Which field ``method`` (a name, a Method class or instance) gets: scores, decision, targets, segments,
    particles or pairs (see the module docstring)."""
    cls = get_method(method) if isinstance(method, str) else (method if isinstance(method, type) else type(method))
    if hasattr(cls, "push_points"):
        return "particles"
    if cls.name in SEGMENT_METHODS:
        return "segments"
    if issubclass(cls, FakeScoreMixin):
        return "scores"
    if hasattr(cls, "discriminator_logits"):
        return "decision"
    if getattr(cls, "needs_conditional_teacher", False) and getattr(cls, "handles_labels", False) \
            and hasattr(cls, "make_pairs"):
        return "pairs"
    return "targets"


def _frame(x, y, u, v, kind, units, t, method, value=None, **extra) -> pd.DataFrame:
    df = pd.DataFrame({"x": np.asarray(x, float), "y": np.asarray(y, float), "u": np.asarray(u, float),
                       "v": np.asarray(v, float)})
    df["kind"], df["units"] = kind, units
    df["value"] = np.nan if value is None else np.asarray(value, float)
    df["t"], df["method"] = float(t), method.name
    for k, col in extra.items():
        df[k] = col
    return df


def _scores(method, t, lim, n) -> pd.DataFrame:
    d = score_field(method, t, lim, n)
    out = [_frame(d.x, d.y, d.diff_dx, d.diff_dy, "real - fake score", "direction", t, method)]
    if getattr(method, "disc", None) is not None and hasattr(method, "discriminator_logits"):  # dmd2's GAN head
        out.append(_decision(method, DEFAULT_T["decision"], lim, n))
    return pd.concat(out, ignore_index=True)


def _decision(method, t, lim, n) -> pd.DataFrame:
    d = decision_field(method, t, lim, n)
    xs, ys = np.unique(d.x.values), np.unique(d.y.values)
    z = d.logit.values.reshape(len(ys), len(xs))  # rows: y, columns: x (the grid is row-major, x fastest)
    gy, gx = np.gradient(z, ys, xs)  # toward "looks real": where the adversarial term moves samples
    return _frame(d.x, d.y, gx.ravel(), gy.ravel(), "discriminator", "direction", t, method, value=d.logit)


def _targets(method, t, lim, n) -> pd.DataFrame:
    d = targets_probe(method, t=t, n=n * n, lim=lim)
    end = d[["target_x", "target_y"]].to_numpy()
    if d.space.iloc[0] == "v":  # a velocity target: the clean sample it implies at x_t
        x_t = torch.tensor(d[["x", "y"]].to_numpy(), dtype=torch.float32, device=method.device)
        tt = torch.full((len(d),), float(t), device=method.device)
        v = torch.tensor(end, dtype=torch.float32, device=method.device)
        end = to_numpy(method.process.x0_eps_from_v(x_t, tt, v)[0])
    return _frame(d.x, d.y, end[:, 0] - d.x, end[:, 1] - d.y, "target", "offset", t, method, space=d.space.iloc[0],
                  on=d.on.iloc[0])


def segment_k(method) -> int:
    """The number of segments shown: tscd's current stage K, else 4 jumps when native (shortcut), else its most."""
    if hasattr(method, "K_at"):
        return int(method.K_at(method.it))
    nat = sorted(int(k) for k in method.generator().native_nfe)
    return 4 if 4 in nat else max([k for k in nat if k <= 8] or nat[:1])


def _segments(method, n, seed) -> pd.DataFrame:
    K = segment_k(method)
    d = segment_boundaries(method, n=n, seed=seed, stages=[K], teacher_steps=max(32, K))
    out = []
    for kind, rows in (("teacher path", d[d.kind == "teacher"]), ("student jump", d[d.kind == "student"])):
        rows = rows.sort_values(["path", "k"])
        nxt = rows.groupby("path")[["x", "y", "t", "gap"]].shift(-1)
        keep = nxt.x.notna()
        r, e = rows[keep], nxt[keep]
        out.append(_frame(r.x, r.y, e.x - r.x, e.y - r.y, kind, "offset", 1.0, method, K=K, path=r.path.values,
                          t_start=r.t.values, t_end=e.t.values, gap=e.gap.values))
    return pd.concat(out, ignore_index=True)


@torch.no_grad()
def _particles(method, n, seed, draws: int = 8) -> pd.DataFrame:
    c = method.config
    m = min(n, int(getattr(c, "n_particles", n)))
    t_hi = method.t_max_at(method.it) if hasattr(method, "t_max_at") else getattr(c, "t_max", 0.98)
    ts = np.linspace(getattr(c, "t_min", 0.02), t_hi, draws)
    b0 = method.probe_batch(m, float(ts[0]), seed)
    force, pts = 0.0, None
    for k, t in enumerate(ts):  # E over t and eps of -grad: the expected push on each particle
        b = dict(b0, eps=make_noise(m, 2, seed=seed + 1 + k, device=method.device))
        tg = method.targets(b, t=float(t))
        force = force - tg.info["grad"] / draws
        pts = tg.info["point"]
    pts, force = to_numpy(pts), to_numpy(force)
    return _frame(pts[:, 0], pts[:, 1], force[:, 0], force[:, 1], "particle force", "direction", float(ts.mean()),
                  method)


@torch.no_grad()
def _pairs(method, n) -> pd.DataFrame:
    if method.pairs is None:
        method.make_pairs()  # seeded and made once: the same pairs training uses
    total = method.pairs["z"].shape[0]
    idx = torch.linspace(0, total - 1, min(n, total)).long().to(method.device)
    tg = method.targets({"idx": idx})
    s, e = to_numpy(tg.student), to_numpy(tg.target)
    route = np.asarray(method.route)[to_numpy(tg.info["y"]).astype(int)]
    return _frame(s[:, 0], s[:, 1], e[:, 0] - s[:, 0], e[:, 1] - s[:, 1], "pair target", "offset", 1.0, method,
                  student=route)


def method_field(method, t: float | None = None, lim: float = 3.0, n: int = 13, points: int = 128,
                 seed: int = 0) -> pd.DataFrame:
    """The field of ``method`` (a 2D method instance) that shows its own mechanism (see the module docstring).

    ``t``: the noise level of grid fields (default per kind, :data:`DEFAULT_T`); ``lim``, ``n``: an n x n grid on
    [-lim, lim]^2 (keep it coarse: it is drawn every frame); ``points``: particles, paths or pairs shown."""
    if tuple(getattr(method, "shape", (2,))) != (2,):
        raise LabError(f"method_field is for 2D points; {method.name} runs on samples of shape {method.shape}")
    if not isinstance(n, int) or n < 2:
        raise LabError(f"n must be an integer >= 2 (grid side), got {n!r}")
    kind = field_kind(method)
    t = DEFAULT_T[kind] if t is None else float(t)
    if not 0.0 < t <= 1.0:
        raise LabError(f"t must be in (0, 1], got {t}")
    if kind == "scores":
        df = _scores(method, t, lim, n)
    elif kind == "decision":
        df = _decision(method, t, lim, n)
    elif kind == "targets":
        df = _targets(method, t, lim, n)
    elif kind == "segments":
        df = _segments(method, min(points, 16), seed)
    elif kind == "particles":
        df = _particles(method, points, seed)
    else:
        df = _pairs(method, points)
    return df[COLUMNS + [c for c in df.columns if c not in COLUMNS]]


_CAPTIONS = {
    "scores": ("Arrows: the real (teacher) score minus the fake score that {m} fits to its own samples, on a grid of "
               "noisy points at t = {t:g}: the direction in which {m} pushes the student's samples there. "
               "Look for arrows leading from where the student has too much mass toward the modes it misses; "
               "they fade as the student's distribution matches the teacher's."),
    "decision": ("Shading: {m}'s discriminator logit on points noised to t = {t:g} (blue: looks like real data, "
                 "red: looks like the student); arrows: its gradient, the direction the adversarial term moves "
                 "samples. Look for red where the student puts mass that the data lacks; the field flattens "
                 "as the discriminator can no longer tell the two apart."),
    "targets": ("Arrows: from noisy points x_t at t = {t:g} to the clean sample that {m}'s regression target "
                "(built from the teacher) implies there. Look at where the arrows land: on the data when the "
                "targets are good, and the student's samples follow them as training goes on."),
    "segments": ("Thin lines: the teacher's ODE paths from fixed noise; arrows: {m}'s jumps between the boundaries "
                 "of its segments, from the same noise. Look at the gap between where each jump lands and the "
                 "teacher's path at the same time: it shrinks as the student learns each segment."),
    "particles": ("Arrows: the force on each of {m}'s particles (the samples it optimises directly): the teacher's "
                  "score-distillation gradient averaged over noise levels and draws. Look for mode seeking: plain "
                  "SDS drives particles onto the modes' centres, while vsd_particles' fake score keeps them spread "
                  "like the data."),
    "pairs": ("Arrows: from each student sample G(z) to its regression target, the teacher's ODE endpoint from the "
              "same noise z, for the class that routes it to one of {m}'s small students. Look at the arrows "
              "shrinking as each student learns its own classes; long arrows mark classes a student still misses."),
}


def field_caption(method, t: float | None = None) -> str:
    """Two sentences: what :func:`method_field` shows for ``method`` (a name, class or instance) and what to
    look for."""
    kind = field_kind(method)
    name = method if isinstance(method, str) else method.name
    text = _CAPTIONS[kind].format(m=name, t=DEFAULT_T[kind] if t is None else float(t))
    if kind == "scores" and getattr(method, "disc", None) is not None:
        text += " Shading: the GAN head's logit on noised points (blue: looks real)."
    return text


__all__ = ["method_field", "field_caption", "field_kind", "segment_k", "SEGMENT_METHODS", "DEFAULT_T"]
