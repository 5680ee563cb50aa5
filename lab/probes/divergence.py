"""The divergence explorer: which part of a two-mode teacher does a student land on under each divergence?

Returns data only (dicts, arrays, DataFrames); figures are in :mod:`lab.viz.divergence`.

Two settings, both minimising the divergences of :mod:`lab.losses` (student first, teacher second, as
everywhere in the lab):

- **categorical** (:func:`fit_categorical`): a teacher over K ordered classes with two modes
  (:func:`two_mode_teacher`: a mixture of two discretised Gaussian bumps plus a small floor, so every class
  has some mass). The student is either a free logit vector (``family="free"``: every divergence can reach
  the teacher exactly, so this only shows convergence) or a **one-mode student** (``family="one_mode"``,
  the default): ``softmax(-(k - mean)^2 / (2 width^2))`` over the class index k, with parameters
  (mean, log_width). A one-mode student cannot represent two modes, so the divergence decides between
  covering both (wide, centred: forward KL) and sitting on one (narrow, on a mode: reverse KL).
- **gaussian** (:func:`fit_gaussian`): a single Gaussian q (mean, log std) fit to a 1D mixture of two
  Gaussians p. The divergences are computed by quadrature on a fixed uniform grid: the grid points are the
  "classes", ``log density`` the logits (the grid spacing cancels in every ratio, and the softmax normalises
  both densities over the grid), so the very same :mod:`lab.losses` functions apply.

Divergence names (``DIVERGENCE_NAMES``): ``forward_kl`` KL(p||q), ``reverse_kl`` KL(q||p), ``jsd`` (the
generalised JSD of GKD, option ``beta``; the normalised form of :func:`lab.losses.generalized_jsd`, which is
forward KL at beta = 0 and reverse KL at beta = 1), ``skew_forward_kl`` / ``skew_reverse_kl`` (DistiLLM,
option ``alpha``), ``tvd``. A divergence is given as a name, or a ``(name, {option: value})`` pair.

"Where it lands": the mass the student puts on each side of the midpoint between the two teacher modes
(``mass_left``, ``mass_right``), the share of the larger side (``dominant_share``), the student's mean and
std over the class index (or x), ``overlap`` = sum_k min(p_k, q_k) = 1 - TV(p, q), and ``mode_seeking``:
the student puts at least ``MODE_SEEKING_SHARE`` of its mass on one side while the teacher does not.
"""
from __future__ import annotations

import math
from typing import Iterable

import numpy as np
import pandas as pd
import torch

from lab.errors import LabError
from lab.losses.logits import DIVERGENCES

__all__ = ["DIVERGENCE_NAMES", "DEFAULT_DIVERGENCES", "two_mode_teacher", "two_gaussians", "fit_categorical",
           "fit_gaussian", "explore", "divergence_label"]

#: the divergence names the explorer accepts, and the options each takes
DIVERGENCE_NAMES = {"forward_kl": (), "reverse_kl": (), "jsd": ("beta",), "skew_forward_kl": ("alpha",),
                    "skew_reverse_kl": ("alpha",), "tvd": ()}
_FUNCS = {"forward_kl": DIVERGENCES["forward_kl"], "reverse_kl": DIVERGENCES["reverse_kl"],
          "jsd": DIVERGENCES["generalized_jsd"], "skew_forward_kl": DIVERGENCES["skew_forward_kl"],
          "skew_reverse_kl": DIVERGENCES["skew_reverse_kl"], "tvd": DIVERGENCES["tvd"]}
#: the default sweep of :func:`explore`
DEFAULT_DIVERGENCES = ("forward_kl", ("jsd", {"beta": 0.1}), ("jsd", {"beta": 0.5}), ("jsd", {"beta": 0.9}),
                       "reverse_kl", ("skew_forward_kl", {"alpha": 0.1}), ("skew_reverse_kl", {"alpha": 0.1}), "tvd")
FAMILIES = ("one_mode", "free")
KINDS = ("categorical", "gaussian")
#: a student is mode-seeking when at least this share of its mass is on one side of the teacher's midpoint
MODE_SEEKING_SHARE = 0.9


# ----------------------------------------------------------------------------- validation helpers


def _pos_int(name: str, v, lo: int) -> int:
    if not (isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= lo):
        raise LabError(f"invalid {name}={v!r}; allowed: an integer >= {lo}")
    return int(v)


def _pos_float(name: str, v) -> float:
    if not (isinstance(v, (int, float, np.floating)) and not isinstance(v, bool) and math.isfinite(v) and v > 0):
        raise LabError(f"invalid {name}={v!r}; allowed: a finite number > 0")
    return float(v)


def _weights(weights) -> tuple[float, float]:
    try:
        w = tuple(float(x) for x in weights)
    except (TypeError, ValueError):
        raise LabError(f"invalid weights={weights!r}; allowed: two numbers > 0 (the modes' shares)") from None
    if len(w) != 2 or not all(math.isfinite(x) and x > 0 for x in w):
        raise LabError(f"invalid weights={weights!r}; allowed: two numbers > 0 (the modes' shares)")
    s = w[0] + w[1]
    return w[0] / s, w[1] / s


def _spec(div) -> tuple[str, dict]:
    """A divergence spec (name or (name, options)) -> (name, options), validated."""
    if isinstance(div, str):
        name, opts = div, {}
    elif isinstance(div, (tuple, list)) and len(div) == 2 and isinstance(div[0], str) and isinstance(div[1], dict):
        name, opts = div[0], dict(div[1])
    else:
        raise LabError(f"invalid divergence {div!r}; allowed: a name ({', '.join(DIVERGENCE_NAMES)}) "
                       "or a (name, {option: value}) pair")
    if name not in DIVERGENCE_NAMES:
        raise LabError(f"unknown divergence {name!r}; allowed: {', '.join(DIVERGENCE_NAMES)}")
    bad = sorted(set(opts) - set(DIVERGENCE_NAMES[name]))
    if bad:
        allowed = ", ".join(DIVERGENCE_NAMES[name]) or "none"
        raise LabError(f"unknown option(s) {bad} for divergence {name!r}; allowed: {allowed}")
    for k, v in opts.items():
        if not (isinstance(v, (int, float)) and not isinstance(v, bool) and 0.0 <= v <= 1.0):
            raise LabError(f"invalid {name} {k}={v!r}; allowed: a number in [0, 1]")
    return name, opts


def divergence_label(div) -> str:
    """A short label such as ``jsd beta=0.1`` for a divergence spec."""
    name, opts = _spec(div)
    return name + "".join(f" {k}={v:g}" for k, v in opts.items())


def _div_fn(div):
    name, opts = _spec(div)
    fn = _FUNCS[name]
    return lambda s, t: fn(s, t, reduction="none", **opts)


# ----------------------------------------------------------------------------- teachers


def two_mode_teacher(K: int = 24, separation: float = 12.0, weights=(0.5, 0.5), width: float = 1.5,
                     floor: float = 1e-3) -> np.ndarray:
    """A two-mode categorical teacher over K ordered classes: two discretised Gaussian bumps (std ``width``
    classes) centred ``separation`` classes apart around the middle, mixed with ``weights``, plus ``floor``
    times the uniform distribution (so reverse KL stays finite). Returns probabilities (K,) in float64."""
    K = _pos_int("K", K, 3)
    sep = _pos_float("separation", separation)
    width = _pos_float("width", width)
    w = _weights(weights)
    if not (isinstance(floor, (int, float)) and not isinstance(floor, bool) and 0 <= floor < 1):
        raise LabError(f"invalid floor={floor!r}; allowed: a number in [0, 1)")
    if sep >= K - 1:
        raise LabError(f"invalid separation={separation!r}; allowed: a number > 0 and < K - 1 = {K - 1}")
    k = np.arange(K, dtype=np.float64)
    c = (K - 1) / 2
    p = np.zeros(K)
    for wi, m in zip(w, (c - sep / 2, c + sep / 2)):
        b = np.exp(-0.5 * ((k - m) / width) ** 2)
        p += wi * b / b.sum()
    p = (1 - floor) * p + floor / K
    return p / p.sum()


def two_gaussians(separation: float = 4.0, std: float = 0.5, weights=(0.5, 0.5)) -> dict:
    """A 1D two-Gaussian mixture for :func:`fit_gaussian`: means ±separation/2, a common std."""
    sep = _pos_float("separation", separation)
    std = _pos_float("std", std)
    w = _weights(weights)
    return {"means": (-sep / 2, sep / 2), "stds": (std, std), "weights": w}


def _check_mixture(mixture) -> dict:
    if not isinstance(mixture, dict) or not {"means", "stds", "weights"} <= set(mixture):
        raise LabError(f"invalid mixture={mixture!r}; allowed: a dict with means, stds, weights "
                       "(two of each; see two_gaussians())")
    try:
        means = tuple(float(v) for v in mixture["means"])
        stds = tuple(float(v) for v in mixture["stds"])
    except (TypeError, ValueError):
        raise LabError(f"invalid mixture={mixture!r}; allowed: two finite means and two stds > 0") from None
    if len(means) != 2 or len(stds) != 2 or not all(math.isfinite(v) for v in means) \
            or not all(math.isfinite(v) and v > 0 for v in stds):
        raise LabError(f"invalid mixture={mixture!r}; allowed: two finite means and two stds > 0")
    return {"means": means, "stds": stds, "weights": _weights(mixture["weights"])}


def _teacher_probs(teacher_probs) -> torch.Tensor:
    p = torch.as_tensor(np.asarray(teacher_probs, dtype=np.float64) if not torch.is_tensor(teacher_probs)
                        else teacher_probs.detach().cpu().double())
    if p.ndim != 1 or p.numel() < 3:
        raise LabError(f"teacher_probs has shape {tuple(p.shape)}; allowed: a 1D array of K >= 3 probabilities")
    if not torch.isfinite(p).all() or (p < 0).any():
        raise LabError("teacher_probs has negative or non-finite entries; allowed: probabilities >= 0")
    if abs(float(p.sum()) - 1.0) > 1e-6:
        raise LabError(f"teacher_probs sums to {float(p.sum()):.6g}; allowed: probabilities summing to 1")
    return p


# ----------------------------------------------------------------------------- where the student lands


def _modes_of(p: np.ndarray, x: np.ndarray) -> tuple[float, float]:
    """The two highest local maxima of p over the ordered points x (left one first)."""
    inner = [i for i in range(len(p)) if (i == 0 or p[i] >= p[i - 1]) and (i == len(p) - 1 or p[i] >= p[i + 1])]
    top = sorted(sorted(inner, key=lambda i: -p[i])[:2])
    if len(top) < 2:
        raise LabError("the teacher has a single mode; allowed: a two-mode teacher (see two_mode_teacher())")
    return float(x[top[0]]), float(x[top[1]])


def _landing(p: np.ndarray, q: np.ndarray, x: np.ndarray, modes: tuple[float, float]) -> dict:
    mid = (modes[0] + modes[1]) / 2
    left, right = x < mid, x > mid
    on = ~(left | right)
    qL, qR = float(q[left].sum() + q[on].sum() / 2), float(q[right].sum() + q[on].sum() / 2)
    pL, pR = float(p[left].sum() + p[on].sum() / 2), float(p[right].sum() + p[on].sum() / 2)
    mean = float((q * x).sum())
    std = float(np.sqrt(max((q * (x - mean) ** 2).sum(), 0.0)))
    dom, tdom = max(qL, qR) / (qL + qR), max(pL, pR) / (pL + pR)
    side_std = []
    for side in (left, right):
        ps = p[side] / p[side].sum()
        ms = (ps * x[side]).sum()
        side_std.append(float(np.sqrt((ps * (x[side] - ms) ** 2).sum())))
    return {"mode_std": float(np.mean(side_std)), "mean": mean, "std": std, "mass_left": qL, "mass_right": qR,
            "dominant_share": dom, "teacher_dominant_share": tdom, "overlap": float(np.minimum(p, q).sum()),
            "mode_seeking": bool(dom >= MODE_SEEKING_SHARE and tdom < MODE_SEEKING_SHARE)}


def _fit(fn, logits_of, params: list[torch.Tensor], t_logits: torch.Tensor, steps: int, lr: float):
    """Adam on every restart at once: ``logits_of()`` gives (R, K) student logits, one row per restart, each
    with its own parameters, so summing the rows' divergences trains them independently.
    Returns (index of the restart with the lowest final loss, its loss trace, every restart's final loss)."""
    opt = torch.optim.Adam(params, lr=lr)
    trace = []
    for _ in range(steps):
        opt.zero_grad(set_to_none=True)
        z = logits_of()
        rows = fn(z, t_logits.expand_as(z))
        if not torch.isfinite(rows).all():
            raise LabError(f"the divergence became {rows.tolist()} during the fit; allowed: a smaller lr")
        rows.sum().backward()
        opt.step()
        trace.append(rows.detach())
    with torch.no_grad():
        final = fn(logits_of(), t_logits.expand(len(trace[0]), -1))
    best = int(torch.argmin(final))
    return best, np.asarray([float(r[best]) for r in trace] + [float(final[best])]), final.numpy()


def _starts(init, seed: int, restarts: int, lo: float, hi: float, spread: float, jitter: float):
    """(means, widths) of the R restarts of a one-mode / Gaussian student. Restart 0 is the neutral start:
    centred between the modes (plus a seeded jitter that breaks the symmetry) and as wide as the teacher (or
    ``init``, a dict with "mean" and/or "width"); the others draw the mean uniformly between the two modes and
    the width log-uniformly in [spread / 8, spread] (seeded). The fit keeps the restart with the lowest loss,
    so it reports the best of several local minima (reverse KL has one per mode and a wide one in between)."""
    g = torch.Generator().manual_seed(int(seed))
    mean0 = (lo + hi) / 2 + jitter * float(torch.randn((), generator=g, dtype=torch.float64))
    width0 = spread
    if init is not None:
        if not isinstance(init, dict) or not set(init) <= {"mean", "width"}:
            raise LabError(f"invalid init={init!r}; allowed: None or a dict with 'mean' and/or 'width'")
        mean0 = float(init.get("mean", mean0))
        width0 = _pos_float("init width", init.get("width", width0))
    u = torch.rand(restarts - 1, 2, generator=g, dtype=torch.float64)
    means = torch.cat([torch.tensor([mean0], dtype=torch.float64), lo + (hi - lo) * u[:, 0]])
    widths = torch.cat([torch.tensor([width0], dtype=torch.float64), spread * 8.0 ** (u[:, 1] - 1)])
    return means, widths


# ----------------------------------------------------------------------------- fits


def fit_categorical(teacher_probs, divergence="reverse_kl", steps: int = 800, lr: float = 0.05, seed: int = 0,
                    init: dict | None = None, family: str = "one_mode", restarts: int = 8) -> dict:
    """Fit a student over the teacher's K ordered classes by minimising ``divergence(student, teacher)``.

    ``family="one_mode"`` (default): the student is softmax(-(k - mean)^2 / (2 width^2)), params
    (mean, log width). Its divergence has several local minima (reverse KL: one per mode, and a wide one
    between them), so ``restarts`` starts are fitted at once (Adam, ``steps`` steps, ``lr``) and the one
    with the lowest final loss is kept: the first starts at ``init`` (dict with "mean" and/or "width";
    default: between the teacher's two modes plus a seeded jitter of 0.5 classes, as wide as the teacher),
    the others at seeded random means between the modes and widths in [teacher std / 8, teacher std].
    ``family="free"``: K free logits started at zero (uniform) plus a seeded jitter of 0.01 (``init`` and
    ``restarts`` ignored).

    Returns a dict: ``divergence`` (label), ``family``, ``teacher`` and ``student`` probabilities (K,),
    ``classes`` (0..K-1), ``trace`` (the kept start's loss per step), ``loss`` (final), ``restart_losses``
    (every start's final loss), the teacher's ``modes`` (class
    index), the one-mode params ``student_mean`` / ``student_width`` (None for free) and the landing numbers
    (``mean``, ``std`` over the class index, ``mass_left``, ``mass_right``, ``dominant_share``,
    ``overlap``, ``mode_seeking``, the teacher's within-mode ``mode_std``; see the module docstring)."""
    p = _teacher_probs(teacher_probs)
    fn = _div_fn(divergence)
    steps = _pos_int("steps", steps, 1)
    lr = _pos_float("lr", lr)
    if family not in FAMILIES:
        raise LabError(f"unknown family {family!r}; allowed: {', '.join(FAMILIES)}")
    K = p.numel()
    k = torch.arange(K, dtype=torch.float64)
    pn = p.numpy()
    modes = _modes_of(pn, k.numpy())
    t_logits = torch.log(p.clamp_min(1e-300))
    t_mean = float((p * k).sum())
    t_std = float(((p * (k - t_mean) ** 2).sum()).sqrt())
    if family == "one_mode":
        restarts = _pos_int("restarts", restarts, 1)
        m0, w0 = _starts(init, seed, restarts, modes[0], modes[1], t_std, 0.5)
        mean = m0.clone().requires_grad_(True)
        logw = w0.log().requires_grad_(True)
        logits = lambda: -0.5 * ((k[None] - mean[:, None]) / logw.exp()[:, None]) ** 2  # noqa: E731
        params = [mean, logw]
    else:
        g = torch.Generator().manual_seed(int(seed))
        z = (0.01 * torch.randn(1, K, generator=g, dtype=torch.float64)).requires_grad_(True)
        logits = lambda: z  # noqa: E731
        params = [z]
    best, trace, finals = _fit(fn, logits, params, t_logits, steps, lr)
    with torch.no_grad():
        q = torch.softmax(logits()[best], -1).numpy()
    out = {"divergence": divergence_label(divergence), "family": family, "classes": k.numpy(), "teacher": pn,
           "student": q, "trace": trace, "loss": float(trace[-1]), "restart_losses": finals, "modes": modes,
           "teacher_mean": t_mean, "teacher_std": t_std,
           "student_mean": float(params[0][best].detach()) if family == "one_mode" else None,
           "student_width": float(params[1][best].detach().exp()) if family == "one_mode" else None}
    out.update(_landing(pn, q, k.numpy(), modes))
    return out


def _log_mixture(x: torch.Tensor, mix: dict) -> torch.Tensor:
    comps = [math.log(w) - 0.5 * ((x - m) / s) ** 2 - math.log(s) - 0.5 * math.log(2 * math.pi)
             for m, s, w in zip(mix["means"], mix["stds"], mix["weights"])]
    return torch.logsumexp(torch.stack(comps), 0)


def fit_gaussian(mixture: dict | None = None, divergence="reverse_kl", steps: int = 800, lr: float = 0.05,
                 seed: int = 0, init: dict | None = None, grid: int = 401, restarts: int = 8) -> dict:
    """Fit a single Gaussian q = N(mean, std^2) to a 1D two-Gaussian mixture p (default :func:`two_gaussians`)
    by minimising ``divergence(q, p)`` estimated by quadrature on ``grid`` uniform points spanning the
    mixture's means ± 6 stds (and ± the separation).

    ``restarts`` starts are fitted at once and the lowest final loss is kept (see :func:`fit_categorical`);
    the first starts at ``init`` (dict with "mean" and/or "width" = std; default: between the two means plus
    a seeded jitter of 0.1 separations, with the mixture's own std). Returns a dict: ``divergence``, ``x``
    (grid), ``teacher`` and ``student`` densities on the grid, ``trace`` (the kept start's loss per step),
    ``loss``, ``restart_losses``, ``modes`` (the mixture means), ``student_mean`` / ``student_std`` (the
    fitted parameters), ``teacher_mean`` / ``teacher_std`` and the landing numbers (``mean``, ``std``,
    ``mass_left``, ..., ``mode_std``, computed on the grid)."""
    mix = _check_mixture(two_gaussians() if mixture is None else mixture)
    fn = _div_fn(divergence)
    steps = _pos_int("steps", steps, 1)
    lr = _pos_float("lr", lr)
    grid = _pos_int("grid", grid, 16)
    (m1, m2), (s1, s2), (w1, w2) = mix["means"], mix["stds"], mix["weights"]
    if m1 == m2:
        raise LabError(f"invalid mixture means={mix['means']!r}; allowed: two different means")
    sep, smax = abs(m2 - m1), max(s1, s2)
    lo, hi = min(m1, m2) - max(6 * smax, sep), max(m1, m2) + max(6 * smax, sep)
    x = torch.linspace(lo, hi, grid, dtype=torch.float64)
    dx = (hi - lo) / (grid - 1)
    t_logits = _log_mixture(x, mix)
    t_mean = w1 * m1 + w2 * m2
    t_std = math.sqrt(w1 * (s1 ** 2 + m1 ** 2) + w2 * (s2 ** 2 + m2 ** 2) - t_mean ** 2)
    restarts = _pos_int("restarts", restarts, 1)
    m0, sd0 = _starts(init, seed, restarts, min(m1, m2), max(m1, m2), t_std, 0.1 * sep)
    mean = m0.clone().requires_grad_(True)
    logs = sd0.log().requires_grad_(True)
    logits = lambda: -0.5 * ((x[None] - mean[:, None]) / logs.exp()[:, None]) ** 2 - logs[:, None]  # noqa: E731
    best, trace, finals = _fit(fn, logits, [mean, logs], t_logits, steps, lr)
    with torch.no_grad():
        q = torch.softmax(logits()[best], -1).numpy()
    p = torch.softmax(t_logits, -1).numpy()
    xs = x.numpy()
    modes = (min(m1, m2), max(m1, m2))
    out = {"divergence": divergence_label(divergence), "family": "gaussian", "x": xs, "teacher": p / dx,
           "student": q / dx, "trace": trace, "loss": float(trace[-1]), "restart_losses": finals, "modes": modes,
           "teacher_mean": t_mean, "teacher_std": t_std,
           "student_mean": float(mean[best].detach()), "student_std": float(logs[best].detach().exp())}
    out.update(_landing(p, q, xs, modes))
    return out


# ----------------------------------------------------------------------------- the sweep


def explore(divergences: Iterable = DEFAULT_DIVERGENCES, kind: str = "categorical", teacher=None,
            steps: int = 800, lr: float = 0.05, seed: int = 0, family: str = "one_mode", restarts: int = 8,
            return_fits: bool = False):
    """Fit the same one-mode student (categorical) or single Gaussian (gaussian) under each divergence.

    ``teacher``: the teacher probabilities (categorical; default :func:`two_mode_teacher`) or the mixture
    dict (gaussian; default :func:`two_gaussians`). Returns a DataFrame with one row per divergence:
    divergence, kind, mean, std (over the class index or x), mass_left, mass_right, dominant_share, overlap,
    mode_seeking, loss, the teacher's mean / std / dominant share, and ``mode_std``: the teacher's std within
    one mode (the std of p restricted to each side of the midpoint, averaged over the two sides). With
    ``return_fits=True`` returns ``(DataFrame, {label: fit dict})`` (what
    :func:`lab.viz.divergence.explorer_figure` draws)."""
    if kind not in KINDS:
        raise LabError(f"unknown kind {kind!r}; allowed: {', '.join(KINDS)}")
    divs = list(divergences) if not isinstance(divergences, str) else [divergences]
    if not divs:
        raise LabError("explore got no divergences; allowed: a non-empty list of names or (name, options) pairs")
    labels = [divergence_label(d) for d in divs]  # validates every spec before any fit
    if len(set(labels)) != len(labels):
        raise LabError(f"duplicate divergences in {labels}; allowed: each divergence once")
    rows, fits = [], {}
    for d, lab_ in zip(divs, labels):
        if kind == "categorical":
            f = fit_categorical(two_mode_teacher() if teacher is None else teacher, d, steps=steps, lr=lr,
                                seed=seed, family=family, restarts=restarts)
        else:
            f = fit_gaussian(teacher, d, steps=steps, lr=lr, seed=seed, restarts=restarts)
        fits[lab_] = f
        rows.append({"divergence": lab_, "kind": kind, "mean": f["mean"], "std": f["std"],
                     "mass_left": f["mass_left"], "mass_right": f["mass_right"],
                     "dominant_share": f["dominant_share"], "overlap": f["overlap"],
                     "mode_seeking": f["mode_seeking"], "loss": f["loss"], "teacher_mean": f["teacher_mean"],
                     "teacher_std": f["teacher_std"], "teacher_dominant_share": f["teacher_dominant_share"],
                     "mode_std": f["mode_std"]})
    df = pd.DataFrame(rows)
    return (df, fits) if return_fits else df
