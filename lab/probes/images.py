"""Image probes (data only, no figures): few-step sample grids, the diffusion-target (x0) view and a
guidance-weight sweep grid. Images are numpy arrays (..., C, H, W) in the data range [-1, 1].

- ``sample_grid``: the teacher at N steps, the teacher at 1, 2, 4 steps (the baseline a student
  must beat) and each student at the step counts it serves, all from the same noise and labels.
- ``x0_view`` / ``x0_views``: the noisy state x_t and the model's clean-sample prediction x0 at every
  sampling step (Diffusion Target visualisation, Gandikota & Bau, "Distilling Diversity and Control
  in Diffusion Models", 2025): early steps decide the composition, later steps refine details.
- ``guidance_grid``: classifier-free guidance v_u + w (v_c - v_u) over guidance weights w from the
  same noise and labels, for a class-conditional flow teacher or a w-conditioned guidance student.
"""
from __future__ import annotations

import numpy as np
import torch

from lab.diffusion.generators import ConsistencyGenerator, FlowGenerator, Generator, ReflowGenerator, make_noise
from lab.errors import LabError
from lab.probes import panel_nfes

X0_KINDS = ("flow", "consistency", "reflow", "cfg", "guided_flow")
GUIDANCE_KINDS = ("flow", "cfg", "guided_flow")


def _np(x):
    return x.detach().cpu().numpy() if torch.is_tensor(x) else np.asarray(x)


def _check_image_gen(gen, what: str) -> tuple:
    shape = tuple(gen.shape)
    if len(shape) != 3:
        raise LabError(f"{what} needs an image generator (sample shape (C, H, W)), got {type(gen).__name__} "
                       f"with sample shape {shape}")
    return shape


def _check_count(name, v, lo=1):
    if isinstance(v, bool) or not isinstance(v, int) or v < lo:
        raise LabError(f"{name} must be an integer >= {lo}, got {v!r}")


def n_classes_of(gen) -> int:
    """Number of classes of a generator's network (0 when unconditional): the denoiser's net first,
    else any of its networks with an ``n_classes`` attribute."""
    d = getattr(gen, "denoiser", None)
    net = getattr(d, "net", None)
    if net is not None:
        return int(getattr(net, "n_classes", 0) or 0)
    for net in gen.nets().values():
        k = int(getattr(net, "n_classes", 0) or 0)
        if k:
            return k
    return 0


def _labels(gen, labels, n: int, default_when_conditional: bool = True):
    """Labels as a long tensor of length n (None for an unconditional generator without labels)."""
    k = n_classes_of(gen)
    if labels is None:
        return (torch.arange(n) % k) if (k and default_when_conditional) else None
    y = torch.as_tensor(np.asarray(_np(labels))).long().flatten()
    if y.shape[0] != n:
        raise LabError(f"labels must have one entry per sample (n={n}), got {y.shape[0]}")
    if k and (int(y.min()) < 0 or int(y.max()) >= k):
        raise LabError(f"labels must be in [0, {k - 1}] for this {k}-class generator, got "
                       f"{sorted(set(int(v) for v in y if not 0 <= int(v) < k))}")
    return y


def _to(y, gen):
    return None if y is None else y.to(gen.device)


@torch.no_grad()
def sample_grid(teacher: Generator, students: dict[str, Generator] | None = None, teacher_nfe: int = 50,
                student_nfe=(1, 2, 4), labels=None, n: int = 10, seed: int = 0, native_only: bool = True) -> dict:
    """Few-step sample grid from the same noise ``make_noise(n, teacher.shape, seed)`` and the same labels.

    Rows: teacher @ ``teacher_nfe``, teacher @ each of ``student_nfe`` (the baseline a student must
    beat), then each student at the NFEs of ``student_nfe`` it serves (``panel_nfes``; all of them with
    ``native_only=False``). Labels default to ``arange(n) % n_classes`` for a class-conditional teacher
    (None otherwise); every generator gets the same labels (a generator that cannot take them raises).

    Returns {"rows": [{"model", "nfe"}], "images": (R, n, C, H, W) float32 in the data range,
    "labels": (n,) int64 or None}.
    """
    students = dict(students or {})
    _check_count("n", n)
    _check_count("teacher_nfe", teacher_nfe)
    student_nfe = tuple(student_nfe)
    if not student_nfe:
        raise LabError("student_nfe must list at least one NFE, got ()")
    for k in student_nfe:
        _check_count("each student_nfe", k)
    shape = _check_image_gen(teacher, "sample_grid")
    for name, g in students.items():
        if tuple(g.shape) != shape:
            raise LabError(f"student {name!r} makes samples of shape {tuple(g.shape)}, the teacher {shape}")
    y = _labels(teacher, labels, n)
    z = make_noise(n, shape, seed)
    panels = [("teacher", teacher, teacher_nfe)] + [("teacher", teacher, k) for k in student_nfe]
    panels += [(name, g, k) for name, g in students.items() for k in panel_nfes(g, student_nfe, native_only)]
    rows, images = [], []
    for model, gen, k in panels:
        x = gen.sample(z=z.to(gen.device), nfe=k, seed=seed, y=_to(y, gen)).x
        rows.append({"model": model, "nfe": int(k)})
        images.append(_np(x).astype(np.float32))
    return {"rows": rows, "images": np.stack(images), "labels": None if y is None else _np(y)}


def _x0_fn(gen, nfe: int, cond: dict):
    """How to evaluate the model's x0 prediction at the states the generator's own sampler visits."""
    kind = getattr(gen, "kind", None)
    if isinstance(gen, (FlowGenerator, ConsistencyGenerator)) or kind in ("flow", "consistency"):
        d = gen.denoiser
        return lambda x, t, y: d.x0(x, t, y, **cond)
    if isinstance(gen, ReflowGenerator) or kind == "reflow":
        d = gen.one_step if (nfe == 1 and gen.one_step is not None) else gen.flow
        return lambda x, t, y: d.x0(x, t, y, **cond)
    if kind == "guided_flow":
        d = gen.denoiser

        def f(x, t, y):
            w = torch.full((x.shape[0],), float(cond.get("w", gen.w)), device=x.device, dtype=x.dtype)
            return d.x0(x, t, y, w=w)
        return f
    if kind == "cfg":
        from lab.methods.trajectory.guidance import guided_velocity  # lazy: guidance only for guided sampling

        d = gen.denoiser

        def f(x, t, y):
            tt = d.time_batch(t, x)
            v = guided_velocity(d, x, tt, y, float(cond.get("w", gen.w)))
            return d.process.x0_eps_from_v(x, tt, v)[0]
        return f
    return None


@torch.no_grad()
def x0_view(gen: Generator, nfe: int = 4, z=None, labels=None, n: int = 8, seed: int = 0, **cond) -> dict:
    """The diffusion-target view: at every sampling step, the noisy state x_t and the model's x0
    prediction there, from noise ``z`` (default ``make_noise(n, gen.shape, seed)``).

    The states are those of the generator's own sampler (``gen.sample(..., return_trajectory=True)``), so
    ``final`` is exactly ``gen.sample(z=z, nfe=nfe, seed=seed, y=labels).x``; x0 is evaluated at each state
    (one extra network pass per step):
    - ``flow`` (and ``reflow``, ``guided_flow``, ``cfg``): x0 = denoiser.x0(x_t, t) at the ODE grid times.
      With the Heun solver the states are those at the grid times (Heun's second, corrector evaluation
      is not shown); ``cfg`` shows the guided x0 from v_u + w (v_c - v_u) (two passes).
    - ``consistency``: at each evaluation time t_i the consistency function's output f(x_{t_i}, t_i) and
      the re-noised state x_{t_i} (the sampler's own re-noising, same seed).
    - any other generator at nfe = 1 (one-step samplers): x_t = the noise at t = 1, x0 = the sample.
    Other generators at nfe > 1 raise LabError.

    Returns {"times": (S,), "x_t": (S, n, C, H, W), "x0": (S, n, C, H, W), "final": (n, C, H, W),
    "labels": (n,) or None, "nfe", "kind", "note"}.
    """
    _check_count("nfe", nfe)
    shape = _check_image_gen(gen, "x0_view")
    if z is None:
        _check_count("n", n)
        z = make_noise(n, shape, seed)
    z = torch.as_tensor(z)
    if tuple(z.shape[1:]) != shape:
        raise LabError(f"z must have shape (n, {', '.join(map(str, shape))}), got {tuple(z.shape)}")
    z = z.to(gen.device)
    y = _to(_labels(gen, labels, z.shape[0], default_when_conditional=False), gen)
    kind = getattr(gen, "kind", type(gen).__name__)
    fn = _x0_fn(gen, nfe, cond)
    note = ""
    if fn is None:
        if nfe != 1:
            raise LabError(f"x0_view supports generators of kind {', '.join(X0_KINDS)} at any nfe and other "
                           f"one-step generators at nfe=1; got kind {kind!r} at nfe={nfe}")
        res = gen.sample(z=z, nfe=1, seed=seed, y=y, **cond)
        t0 = float(res.times[0]) if res.times is not None and len(res.times) else 1.0
        x_t, x0, times = z[None], res.x[None], torch.tensor([t0])
        note = "one-step generator: x0 is the sample itself"
    else:
        res = gen.sample(z=z, nfe=nfe, seed=seed, y=y, return_trajectory=True, **cond)
        traj, ts = res.trajectory, res.times.to(z.device, z.dtype)
        # ODE: states at the grid times, the last one the final sample at t = 0; consistency: the states at
        # the evaluation times, then the final x0 at t = 0. Either way drop the last entry.
        x_t, times = traj[:-1], ts[: traj.shape[0] - 1]
        x0 = torch.stack([fn(x_t[i], times[i].expand(z.shape[0]), y) for i in range(x_t.shape[0])])
        if getattr(gen, "solver", None) == "heun":
            note = "Heun solver: states at the grid times; the corrector evaluations are not shown"
    return {"times": _np(times).astype(np.float32), "x_t": _np(x_t).astype(np.float32),
            "x0": _np(x0).astype(np.float32), "final": _np(res.x).astype(np.float32),
            "labels": None if y is None else _np(y), "nfe": int(nfe), "kind": str(kind), "note": note}


@torch.no_grad()
def x0_views(teacher: Generator, students: dict[str, Generator] | None = None, nfe_teacher: int = 8,
             nfe_student: int = 4, labels=None, n: int = 4, seed: int = 0) -> dict:
    """``x0_view`` of the teacher (``nfe_teacher`` steps) and each student side by side, from the same
    noise and labels (default ``arange(n) % n_classes`` for a class-conditional teacher). A student that
    does not serve ``nfe_student`` natively is shown at the NFE ``panel_nfes`` picks (its smallest native one).

    Returns {"teacher": view, <student name>: view, ...} (each a dict as ``x0_view`` returns, with "model").
    """
    _check_count("n", n)
    shape = _check_image_gen(teacher, "x0_views")
    y = _labels(teacher, labels, n)
    z = make_noise(n, shape, seed)
    out = {"teacher": {**x0_view(teacher, nfe_teacher, z=z, labels=y, seed=seed), "model": "teacher"}}
    for name, g in (students or {}).items():
        if name == "teacher":
            raise LabError("a student may not be named 'teacher'")
        k = panel_nfes(g, (nfe_student,), native_only=True)[0]
        out[name] = {**x0_view(g, k, z=z, labels=y, seed=seed), "model": name}
    return out


@torch.no_grad()
def guidance_grid(gen: Generator, ws=(0.0, 1.0, 2.0, 4.0), labels=None, nfe: int = 8, n: int = 10,
                  seed: int = 0) -> dict:
    """Samples over guidance weights w from the same noise and labels.

    - a class-conditional ``flow`` teacher: classifier-free guidance v = v_u + w (v_c - v_u) (w = 0 is the
      unconditional model, w = 1 the conditional one), ``nfe`` Euler steps of two passes each (the
      ``cfg`` sampler of lab.methods.trajectory.guidance; the teacher's own solver is not used);
    - a ``cfg`` generator: the same, with its denoiser;
    - a ``guided_flow`` student (w-conditioned): ``nfe`` Euler steps of one pass, w given as a condition.

    Labels default to ``arange(n) % n_classes``. Returns {"ws": (W,), "images": (W, n, C, H, W), "labels": (n,),
    "steps": nfe, "passes": network passes per sample, "kind"}.
    """
    _check_count("nfe", nfe)
    _check_count("n", n)
    shape = _check_image_gen(gen, "guidance_grid")
    kind = getattr(gen, "kind", type(gen).__name__)
    if kind not in GUIDANCE_KINDS:
        raise LabError(f"guidance_grid supports generators of kind {', '.join(GUIDANCE_KINDS)}, got {kind!r}")
    ws = [w for w in (ws if isinstance(ws, (list, tuple, np.ndarray)) else [ws])]
    if not ws or any(isinstance(w, bool) or not isinstance(w, (int, float, np.floating, np.integer))
                     or not np.isfinite(w) for w in ws):
        raise LabError(f"ws must be a non-empty list of finite guidance weights, got {ws!r}")
    if n_classes_of(gen) < 1:
        raise LabError(f"guidance_grid needs a class-conditional generator (n_classes >= 1), got an unconditional {kind!r}")
    from lab.methods.trajectory.guidance import CFGGenerator  # lazy: guidance only for the guidance grid

    y = _to(_labels(gen, labels, n), gen)
    z = make_noise(n, shape, seed).to(gen.device)
    images = []
    for w in ws:
        if kind == "guided_flow":
            x = gen.sample(z=z, nfe=nfe, seed=seed, y=y, w=float(w)).x
        else:
            x = CFGGenerator(gen.denoiser, float(w)).sample(z=z, nfe=2 * nfe, seed=seed, y=y).x
        images.append(_np(x).astype(np.float32))
    return {"ws": np.asarray(ws, dtype=np.float32), "images": np.stack(images), "labels": _np(y), "steps": int(nfe),
            "passes": int(nfe if kind == "guided_flow" else 2 * nfe), "kind": str(kind)}


__all__ = ["sample_grid", "x0_view", "x0_views", "guidance_grid", "n_classes_of", "X0_KINDS", "GUIDANCE_KINDS"]
