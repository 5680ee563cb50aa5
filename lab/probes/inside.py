"""Inside each method: a saved student's method rebuilt around it, and views of that method's internals.

    student = lab.zoo.load("toy2d/8gaussians/dmd")
    method = rebuild_method(student)                    # the recipe's method, the saved weights, aux nets fitted
    views = inside_views(student, progress=print)       # [View(key, title, caption, kind, data, extra), ...]
    lab.viz.inside.view_figure(views[0])                # the figure of one view

**Rebuilding** (:func:`rebuild_method`): the student's model card holds its recipe (``method``, ``teacher``,
``config``, ``seed``); the method is built again from it, the saved weights are loaded into the method's student
networks (``method.generator().nets()`` matched to ``student.nets()`` by name, shapes checked), and a method that
trains AUXILIARY networks (the nets with an optimiser that the student does not sample with: the fake score of
dmd, dmd2, sid, vsd, rcm and vsd_particles, add's discriminator, dmd2's GAN head, the adaptive-weight head
``logvar`` of scm and rcm) gets them fitted against the FROZEN student (:func:`fit_auxiliary`).

Fidelity notes:

- Auxiliary fitting: when the only auxiliary net is a fake score with the shared update (dmd, sid, vsd, and
  dmd2 without its GAN head, one-step), each fit step is that method's own ``update_fake`` on fresh samples of
  the frozen student. Otherwise (add, scm, rcm, vsd_particles, dmd2 with a GAN head or a multistep chain) each
  fit step runs the method's own ``step()`` and then restores every other network (the student, its target or
  EMA copies) to its state before the step: the auxiliary nets see exactly the updates, ratios and losses of
  training, but against the saved student instead of one that moves along. Either way they start from their
  initialisation (a copy of the teacher for a fake score, a fresh discriminator), not from where training left
  them (they are not saved with the student), at the step index :func:`fit_index` (past every warm-up, so a
  warm-up factor does not stall them), with the batch capped at :data:`FIT_BATCH`. Measured on one CPU thread
  (8 Gaussians zoo students, 200 fit steps): 1.6-2.4 s for dmd/dmd2/sid/vsd/add, about 3 s for scm and
  vsd_particles, 5.4 s for rcm (its step runs the sCM JVP).
- Expensive constructors are capped for the probe (:data:`PROBE_OVERRIDES`): dmd's regression pairs are not made
  (``reg_weight`` 0: they only feed the generator's loss, which the probe discards), msd and reflow make at most
  1024 and 2048 (noise, teacher ODE) pairs, guidance a pool of 256 trajectories.
- A halving method (progressive, guidance) is moved to its last round; that round's frozen teacher (the student
  of the round before) is not saved, so its targets use the original teacher.
- Images (8x8 digits): the views fit nothing (CKA, the x̂0 view, the guidance grid, the stages, the consistency
  grid). ``rebuild_method`` works for digits students too (a digits fake-score update costs about 0.1 s at the
  recipe's batch of 32), but DMD's fake-score error is measured on 2D points only (it needs the exact score of
  the noised empirical distribution, ``lab.probes.dm``), so the digits dmd student gets no fake-score view.

Every view is data (a DataFrame or a dict of arrays/DataFrames), drawn by ``lab.viz.inside.view_figure``.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import pandas as pd
import torch

from lab.diffusion.denoiser import Denoiser
from lab.diffusion.generators import FlowGenerator, Generator, make_noise
from lab.errors import LabError
from lab.methods import Method, get_method
from lab.methods.distribution_matching.base import FakeScoreMixin
from lab.probes import trajectories
from lab.probes.adversarial import decision_field, real_and_student
from lab.probes.dm import fake_score_error
from lab.probes.fields import field_caption, method_field
from lab.probes.generator_cka import generator_layer_cka
from lab.probes.guidance import guidance_sweep, student_split
from lab.probes.images import guidance_grid, x0_views
from lab.probes.paths import path_error
from lab.probes.scm import scm_internals
from lab.probes.segments import boundary_gaps, segment_boundaries
from lab.trainable import cosine_decay, resolve_reference

#: config overrides applied when a method is rebuilt for the probe (see the module docstring)
PROBE_OVERRIDES = {"dmd": {"reg_weight": 0.0}, "msd": {"n_pairs": 1024}, "reflow": {"n_pairs": 2048},
                   "guidance": {"n_traj": 256}}
#: the batch of the auxiliary fit, at most (it only sets the noise of the auxiliary nets' updates)
FIT_BATCH = 256
#: the views' kinds: what each one's data holds (``lab.viz.inside.view_figure`` draws every one)
VIEW_KINDS = {
    "field": "DataFrame of lab.probes.fields.method_field (arrows, and a logit on a grid for a discriminator)",
    "cka": "DataFrame t, teacher_layer, student_layer, cka (lab.probes.generator_cka)",
    "fake_score_error": "DataFrame it (auxiliary fitting step), t, error, error_eps, ... (lab.probes.dm)",
    "decision": "dict field (lab.probes.adversarial.decision_field), samples (real_and_student)",
    "scm": "DataFrame of lab.probes.scm.scm_internals",
    "path_error": "DataFrame t, kind, error, teacher_spread (lab.probes.paths)",
    "guidance_sweep": "dict summary, samples (lab.probes.guidance.guidance_sweep)",
    "student_split": "DataFrame x, y, label, student (lab.probes.guidance.student_split)",
    "segments": "dict boundaries (lab.probes.segments.segment_boundaries), gaps (boundary_gaps)",
    "consistency_grid": "DataFrame n, t, s, consistency, endpoint, teacher_spread: the student on its time grid",
    "straightness": "dict paths, summary (lab.probes.trajectories, teacher and student)",
    "schedule": "DataFrame step, quantity, value: the method's own schedule over its training run",
    "x0": "dict of lab.probes.images.x0_view (teacher and student)",
    "guidance_grid": "dict of lab.probes.images.guidance_grid",
}


@dataclass
class View:
    """One view of a method's internals: ``data`` (DataFrame or dict) of kind ``kind`` (:data:`VIEW_KINDS`),
    a short ``title`` and a two-sentence ``caption`` (what is drawn, what to look for)."""

    key: str
    title: str
    caption: str
    kind: str
    data: Any
    extra: dict = field(default_factory=dict)


# ------------------------------------------------------------------------------------------------ rebuilding
def recipe_of(student: Generator) -> dict:
    """The recipe in the student's model card (method, teacher, config, seed); a generator without one (a
    teacher, a hand-built model) is a one-line LabError."""
    card = getattr(student, "card", None) or {}
    recipe = card.get("recipe") if isinstance(card, dict) else None
    method = recipe.get("method") if isinstance(recipe, dict) else None
    if not isinstance(method, str):
        what = card.get("entry") or getattr(student, "folder", None) or type(student).__name__
        raise LabError(f"{what} has no distillation recipe in its model card (a teacher or a hand-built model); "
                       f"allowed: a distilled student (a zoo student such as toy2d/8gaussians/dmd or a run folder)")
    get_method(method)  # an unknown method: the registry's one-line error
    if not isinstance(recipe.get("config", {}), dict):
        raise LabError(f"the recipe's config is {type(recipe['config']).__name__}; allowed: a JSON object")
    return recipe


def student_net_names(method: Method) -> set[int]:
    """ids of the networks the method's student samples with, and of the trained networks whose EMA it samples."""
    return {id(n) for n in method.generator().nets().values()} | {id(n) for n in method.averaged_nets()}


def auxiliary_nets(method: Method) -> list[str]:
    """The names of the method's auxiliary networks: those with an optimiser that its generator does not use."""
    own = student_net_names(method)
    return [k for k in method.optimizers if k in method.networks and id(method.networks[k]) not in own]


def fit_index(method: Method) -> int:
    """The step index the auxiliary fit runs at: past the method's warm-ups (a tangent warm-up, a pretraining
    phase), else 0 (full learning rates, before any decay)."""
    c = method.config
    return min(int(getattr(c, "warmup", 0) or 0) + int(getattr(c, "pretrain", 0) or 0), max(c.steps - 1, 0))


def _to_last_stage(method: Method) -> None:
    """Move a staged method to the stage its saved student ends in."""
    last = method.config.steps - 1
    if hasattr(method, "stage_of") and hasattr(method, "advance"):
        method.advance(method.stage_of(last))
    if hasattr(method, "_start_distill") and getattr(method, "one_step", 1) is None:  # reflow's one-step net
        method._start_distill()
    method.it = method.config.steps  # the saved student is the end of its run (tscd's K, sds's t_max, sCM's r)


def load_student(method: Method, student: Generator) -> None:
    """Copy the saved student's weights into the method's student networks (matched by name, shapes checked)."""
    mine, saved = method.generator().nets(), student.nets()
    if set(mine) != set(saved):
        raise LabError(f"the saved student's networks ({', '.join(sorted(saved))}) do not match {method.name}'s "
                       f"({', '.join(sorted(mine))}); allowed: a student saved by this method")
    for name, net in mine.items():
        sd, own = saved[name].state_dict(), net.state_dict()
        bad = [k for k in own if k not in sd or tuple(sd[k].shape) != tuple(own[k].shape)]
        if bad or set(sd) - set(own):
            k = (bad or sorted(set(sd) - set(own)))[0]
            raise LabError(f"network {name!r} of the saved student does not fit {method.name}'s: {k} "
                           f"{tuple(sd[k].shape) if k in sd else 'missing'} vs "
                           f"{tuple(own[k].shape) if k in own else 'missing'}; allowed: a student saved by this method")
        with torch.no_grad():
            net.load_state_dict({k: v.to(own[k].device) for k, v in sd.items()})
    method.copy_sampled_to_trained()  # a saved student is the sampled (EMA) network: train-side nets start from it


def _fake_only(method: Method, aux: set) -> bool:
    """True when the only auxiliary network is a fake score fitted by the shared ``update_fake`` (dmd, sid, vsd;
    dmd2 without its GAN head and with a one-step generator): then only that update runs."""
    if aux != {"fake_score"} or not isinstance(method, FakeScoreMixin):
        return False
    return int(getattr(method.config, "gen_steps", 1)) == 1


def fit_auxiliary(method: Method, steps: int, track: Callable | None = None, every: int | None = None,
                  progress: Callable | None = None) -> int:
    """Fit the method's auxiliary networks (:func:`auxiliary_nets`) against its frozen student for ``steps``
    steps: one fake-score update (``update_fake``) per step when that is the only auxiliary net, else the
    method's own ``step()`` at :func:`fit_index` with every other network restored after it. ``track(k)`` is
    called before the first step and after every ``every`` steps (and the last); ``progress(fraction, text)`` after
    each step. Returns the steps run (0 for a method without auxiliary networks)."""
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise LabError(f"fit_steps must be an integer >= 0, got {steps!r}")
    aux = set(auxiliary_nets(method))
    if not aux or steps == 0:
        if track is not None and aux:
            track(0)
        return 0
    it, every = fit_index(method), every or max(1, steps // 4)
    fast = _fake_only(method, aux)
    keep = {} if fast else {k: copy.deepcopy(n.state_dict()) for k, n in method.networks.items() if k not in aux}
    if track is not None:
        track(0)
    for k in range(1, steps + 1):
        if fast:  # the method's own fake-score update, on detached samples of the frozen student
            method.update_fake(method.fake_draws(1))
        else:
            method.step(method.sample_batch(it), it)
            with torch.no_grad():
                for name, sd in keep.items():
                    method.networks[name].load_state_dict(sd)
        if track is not None and (k % every == 0 or k == steps):
            track(k)
        if progress is not None:
            progress(k / steps, f"fitting {', '.join(sorted(aux))}: {k}/{steps}")
    return steps


def rebuild_method(student: Generator, teacher=None, data=None, *, fit_steps: int = 200, seed: int = 0,
                   device="cpu", progress: Callable | None = None, config: dict | None = None) -> Method:
    """The student's method rebuilt from its card's recipe, with the saved weights in its student networks and
    its auxiliary networks fitted against the frozen student for ``fit_steps`` steps (see the module docstring).

    ``teacher``: a Generator or a model reference (default: the recipe's teacher); ``data``: a data spec or
    Source (default: the card's); ``seed``: the method's seed (the auxiliary nets' initialisation and batches);
    ``config``: overrides on top of the recipe's config and :data:`PROBE_OVERRIDES`."""
    recipe = recipe_of(student)
    name = recipe["method"]
    if teacher is None or isinstance(teacher, str):
        ref = teacher or recipe.get("teacher")
        if not isinstance(ref, str):
            raise LabError("the recipe names no teacher; pass one (a generator or a model reference)")
        teacher = resolve_reference(ref, "generator", device).model
    if data is None:
        data = student.card.get("data") or getattr(teacher, "card", {}).get("data")
        if data is None:
            raise LabError("the student's card names no data; pass data (a data spec such as toy2d:8gaussians)")
    cfg = dict(recipe.get("config", {}))
    cfg = {**cfg, "batch": min(int(cfg.get("batch", FIT_BATCH)), FIT_BATCH), **PROBE_OVERRIDES.get(name, {}),
           **(config or {})}
    method = get_method(name)(teacher, data, cfg, seed=seed, device=device)
    _to_last_stage(method)
    load_student(method, student.to(method.device))
    fit_auxiliary(method, fit_steps, progress=progress)
    return method


# ------------------------------------------------------------------------------------------------ method-own probes
def method_schedule(method: Method, points: int = 101) -> pd.DataFrame:
    """The method's own schedules over its training run, evaluated at ``points`` steps: columns step, quantity,
    value (an empty frame for a method without one). Read from the method's own functions where it has them
    (``stage_of``/``student_steps``, ``K_at``, ``t_max_at``, ``warmup_r``, ``dmd_on``); learning-rate factors that
    a method sets inside its ``step`` (add, sid, vsd, scm, rcm) are recomputed here from the config."""
    c = method.config
    its = np.unique(np.linspace(0, max(c.steps - 1, 0), points).round().astype(int))
    q: dict[str, Callable] = {}
    if hasattr(method, "stage_of") and hasattr(method, "student_steps"):  # progressive, guidance: halving rounds
        q["student steps (NFE)"] = lambda it: method.student_steps(method.stage_of(it))
    if hasattr(method, "K_at"):
        q["segments K"] = method.K_at
    if hasattr(method, "t_max_at"):
        q["largest noise level t_max"] = method.t_max_at
    if hasattr(c, "fake_warmup"):
        q["fake score only (1 = warm-up)"] = lambda it: float(it < c.fake_warmup)
    if hasattr(method, "warmup_r"):
        q["tangent warm-up r"] = method.warmup_r
    if hasattr(method, "dmd_on"):
        q["DMD term on"] = lambda it: float(method.dmd_on(it))
    if hasattr(method, "reflow_steps"):
        q["stage (0 reflow, 1 one-step)"] = lambda it: float(it >= method.reflow_steps)
    if method.name == "consistency":
        q["discretisation N"] = lambda it: float(c.n_intervals)
    if getattr(c, "lr_schedule", None) == "cosine" or (method.name == "add" and c.lr_decay):
        q["lr factor (cosine)"] = lambda it: cosine_decay(it / c.steps)
    if method.name == "add" and c.warmup > 0:
        q["student lr warm-up"] = lambda it: min(1.0, (it + 1) / c.warmup)
    if getattr(c, "lr_decay", None) == "linear":
        q["lr factor (linear decay)"] = lambda it: 1.0 - 0.9 * min(it / max(c.steps, 1), 1.0)
    rows = [{"step": int(it), "quantity": k, "value": np.nan if (v := fn(int(it))) is None else float(v)}
            for k, fn in q.items() for it in its]
    return pd.DataFrame(rows, columns=["step", "quantity", "value"])


@torch.no_grad()
def consistency_grid(method: Method, n: int = 512, seed: int = 0) -> pd.DataFrame:
    """The consistency student on the time grid it was trained on, t_n = n / N: one teacher ODE path per noise
    (the method's own teacher step, from t = 1 down the grid), and at each grid time the mean distance between the
    student's outputs at adjacent points of the path (``consistency``: what its loss drives to zero) and between
    its output and the path's end (``endpoint``: what a one-step jump from there misses). Columns n, t, s,
    consistency, endpoint, teacher_spread (mean distance of the path's ends from their mean: a scale)."""
    if not hasattr(method, "teacher_step") or not hasattr(getattr(method, "config", None), "n_intervals"):
        raise LabError(f"{method.name} has no consistency time grid; allowed: consistency")
    N = int(method.config.n_intervals)
    z = make_noise(n, method.shape, seed=seed, device=method.device)
    path, x = [z], z
    for k in range(N, 0, -1):
        t = torch.full((n,), k / N, device=z.device)
        x = method.teacher_step(x, t, t - 1.0 / N)
        path.append(x)
    end = path[-1]

    def f(x, k):  # the student's clean-sample estimate at grid point k (f(x, 0) = x)
        return x if k == 0 else method.student.x0(x, torch.full((n,), k / N, device=x.device))

    def dist(a, b):
        return float((a - b).flatten(1).norm(dim=1).mean())

    outs = {k: f(path[N - k], k) for k in range(N + 1)}
    spread = dist(end, end.mean(0, keepdim=True))
    rows = [{"n": k, "t": k / N, "s": (k - 1) / N, "consistency": dist(outs[k], outs[k - 1]),
             "endpoint": dist(outs[k], end), "teacher_spread": spread} for k in range(1, N + 1)]
    return pd.DataFrame(rows)


# ------------------------------------------------------------------------------------------------ the views
#: the family-specific view kinds each method gets (held by tests/test_inside.py)
OWN_KINDS = {"add": "decision", "boot": "path_error", "consistency": "consistency_grid", "dmd": "fake_score_error",
             "dmd2": "fake_score_error", "dsd": "schedule", "esd": "schedule", "flowmap": "path_error",
             "guidance": "guidance_sweep",
             "msd": "student_split", "progressive": "schedule", "rcm": "scm", "reflow": "straightness",
             "scm": "scm", "sds": "schedule", "shortcut": "segments", "sid": "fake_score_error",
             "tscd": "segments", "vsd": "fake_score_error", "vsd_particles": "schedule"}

_SCHEDULE_NOTES = {
    "progressive": "each halving round trains the student to take one step where the previous round took two, so "
                   "its NFE halves round by round down to the saved student's",
    "guidance": "stage one regresses the guided teacher at any step count (no NFE), then each halving round of "
                "stage two halves the student's steps",
    "tscd": "the number of segments K of each training stage (the student jumps K times)",
    "sds": "the largest noise level drawn drops after part of the run (ProlificDreamer's annealing), so late "
           "updates refine details instead of moving particles between modes",
    "vsd_particles": "the particles stay still while the fake score first fits them (warm-up), then both move",
    "esd": "the particles stay still while the fake score first fits them (warm-up); the largest noise level drawn "
           "then drops from 0.98 to 0.5 halfway (the paper's code), so the SDS half of its mix stops pulling inwards",
    "dsd": "the one noise level of each step (t_max here) is annealed from high to low as sqrt of the run, so each "
           "particle follows its seed's teacher path from coarse layout to fine detail",
    "reflow": "first the flow is retrained on its own (noise, teacher sample) couplings (reflow), then a one-step "
              "map is distilled from it",
}


def _schedule_caption(name: str) -> str:
    what = _SCHEDULE_NOTES.get(name, "the schedules the method's training follows (warm-ups, stages, learning-"
                                     "rate factors)")
    return (f"Lines: {name}'s own schedule over its training run, read from its config; {what}. Look for where "
            f"the saved student's run changed regime: a student is only as good as the last stage it finished.")


def _progress(progress, lo: float, hi: float):
    if progress is None:
        return None
    return lambda frac, text="": progress(lo + (hi - lo) * float(frac), text)


def _cka_teacher(method: Method, teacher, card: dict):
    """The teacher the student's layers are compared with: the one given, else the method's (when it has a
    network), else the data's zoo teacher (guidance and msd are distilled from an exact mixture with no layers)."""
    if isinstance(teacher, Generator):
        return teacher
    if any(True for _ in method.teacher_gen.nets()["denoiser"].parameters()):
        return method.teacher_gen
    spec = str(card.get("data", ""))
    if spec.startswith("toy2d:"):
        return resolve_reference(f"toy2d/{spec.split(':', 1)[1]}/teacher", "generator", method.device).model
    return None


def cka_view(teacher: Generator, student: Generator, name: str, n: int = 256, seed: int = 0,
             teacher_nfe: int = 16) -> View | None:
    """Teacher-student layer-by-layer CKA at t = 0.5 (None for a student without a network over (x_t, t)).
    An sCM/rCM student's TrigFlow wrapper is unwrapped: its inner linear-flow network is compared (the wrapper
    evaluates it at the linear-flow time, as the teacher's network is)."""
    net = next(iter(student.nets().values()), None)
    if getattr(net, "inner", None) is not None and getattr(net, "inner_pred", "F") != "F":
        student = FlowGenerator(Denoiser(net.inner, student.denoiser.process, net.inner_pred))
    try:
        df = generator_layer_cka(teacher, student, n=n, times=(0.5,), teacher_nfe=teacher_nfe, seed=seed)
    except LabError:
        return None
    return View("cka", "Teacher vs student layers (CKA)",
                f"Heatmap: linear CKA between each layer of the teacher (rows) and of the {name} student (columns) on "
                f"the same noisy inputs x_t at t = 0.5 (1 = the same features up to rotation and scale). Look at the "
                f"diagonal: a student that kept the teacher's features stays bright there, while a student that "
                f"re-learned its function from scratch (or a one-step map) drifts in the later layers.",
                "cka", df, {"t": 0.5})


def inside_views(student: Generator, teacher=None, data=None, *, method: Method | None = None, seed: int = 0,
                 fit_steps: int = 200, progress: Callable | None = None, n: int = 512) -> list[View]:
    """Views of the saved ``student``'s method internals (see :data:`VIEW_KINDS`, :data:`OWN_KINDS`).

    2D: its method is rebuilt (:func:`rebuild_method`, or ``method`` when given: then nothing is fitted) and the
    views are the method's own (:data:`OWN_KINDS` and the others its family has), its field
    (``lab.probes.fields``), its schedule when it has one, and teacher-student CKA. ``teacher``: the teacher of the
    CKA comparison (default: the method's; the method is always rebuilt from the recipe's). Images: CKA, the x̂0
    view and the method's own view where cheap (guidance grid, stages, consistency grid). ``progress(fraction,
    text)`` is called as the views are computed. ``n``: points per 2D probe."""
    recipe = recipe_of(student)
    name = recipe["method"]
    if len(tuple(student.shape)) == 3:
        return _image_views(student, teacher, data, recipe, seed, progress)
    say = progress or (lambda frac, text="": None)
    fse_rows: list[dict] = []

    def track(k):
        if hasattr(method, "generate"):
            fse_rows.extend({**r, "it": k} for r in fake_score_error(method, (0.2, 0.5, 0.8), n=1000, n_eval=500,
                                                                      seed=seed).to_dict("records"))
    fitted = 0
    if method is None:
        say(0.0, f"rebuilding {name}")
        method = rebuild_method(student, None, data, fit_steps=0, seed=seed, device=student.device)
        if auxiliary_nets(method):
            say(0.05, f"fitting {', '.join(auxiliary_nets(method))} against the frozen student")
        fitted = fit_auxiliary(method, fit_steps, track=track, progress=_progress(progress, 0.05, 0.6))
    elif hasattr(method, "generate") and isinstance(method, FakeScoreMixin):
        track(0)
    gen, views = method.generator(), []
    say(0.6, "probing")
    if fse_rows:
        fit = f"{fitted} updates" if fitted else "no fitting (the method as given)"
        views.append(View("fake_score_error", "Fake-score error while it is fitted",
                          f"Lines: the error of {name}'s fake score against the exact score of the frozen student's "
                          f"noised samples (eps units) at t = 0.2, 0.5, 0.8, while the fake score is fitted to the "
                          f"student ({fit}, starting from its initialisation, a copy of the teacher). Look for the "
                          f"error falling, fastest at small t: the generator is pushed by real minus fake score, so "
                          f"a fake score that lags the generator pushes it the wrong way (DMD2's reason for several "
                          f"fake updates per generator step).", "fake_score_error", pd.DataFrame(fse_rows),
                          {"fit_steps": fitted}))
    if hasattr(method, "discriminator_logits") and getattr(method, "disc", None) is not None:
        views.append(View("decision", "Discriminator decision field",
                          f"Shading: {name}'s discriminator logit on points noised to t = 0.1 after fitting it "
                          f"against the frozen student (blue: looks like real data, red: like the student); dots: "
                          f"real data and the student's samples noised the same way. Look for red where the student "
                          f"puts mass that the data lacks: the adversarial term pushes samples out of it.", "decision",
                          {"field": decision_field(method, 0.1, n=41), "samples": real_and_student(method, 0.1, n)}))
    if hasattr(method, "tangent") and hasattr(method, "warmup_r"):
        views.append(View("scm", "sCM tangent and adaptive weight",
                          f"Left: the size of {name}'s tangent g (the JVP estimate of df/dt along the teacher's ODE) "
                          f"before and after its normalisation, over time; right: the adaptive loss weight w(t) "
                          f"e^-logvar(t) (logvar fitted against the frozen student). Look for the raw tangent "
                          f"blowing up near t = 1 while the normalised one stays bounded: that normalisation and the "
                          f"weight are what keep continuous-time training stable.", "scm",
                          scm_internals(method, n_t=30, n=min(n, 256), seed=seed)))
    if hasattr(gen, "state_at"):
        views.append(View("path_error", "Path error against the teacher",
                          f"Lines: the mean distance between {name}'s state at time t and the teacher's ODE path from "
                          f"the same noise, for one jump from noise straight to t and (for a flow map) a chain of "
                          f"jumps; dotted: the teacher's own spread, a scale. Look for errors well under the spread "
                          f"at every t: the student then follows the teacher's path, not only its end.", "path_error",
                          path_error(gen, method.teacher_gen, n=n, seed=seed)))
    if gen.kind == "guided_flow":
        nfe = min(gen.native_nfe) if gen.native_nfe else 4
        summary, samples = guidance_sweep(gen, method.guided_teacher(), ws=(0.0, 1.0, 2.0, 4.0), nfe=nfe,
                                          n=n, seed=seed, ref_steps=32)
        views.append(View("guidance_sweep", "Guidance-weight sweep",
                          f"Points coloured by class: the guided teacher (two network passes a step) and the "
                          f"w-conditioned {name} student (one pass) at {nfe} steps, for guidance weights w = 0 to 4. "
                          f"Look at the classes tightening as w grows in both rows: the student reproduces guidance at "
                          f"half the passes, and the titles' distance says how closely.", "guidance_sweep",
                          {"summary": summary, "samples": samples}, {"nfe": nfe}))
    if hasattr(gen, "route"):
        views.append(View("student_split", "Which student makes which samples",
                          f"Points: {name}'s one-step samples coloured by the small student that made them (the "
                          f"router sends each class to one student). Look for each colour covering only its own "
                          f"modes: each student only has to learn its share of the distribution.", "student_split",
                          student_split(gen, n=n, seed=seed)))
    if name in ("tscd", "shortcut"):
        ks = sorted(set(int(k) for k in gen.native_nfe))[:4]
        seg = segment_boundaries(method, n=24, seed=seed, stages=ks, teacher_steps=64)
        views.append(View("segments", "Segment boundaries and jumps",
                          f"Thin lines: the teacher's ODE paths from fixed noise; coloured: {name}'s jumps between the "
                          f"boundaries of its segments (one panel per number of jumps K), open circles: the teacher "
                          f"at each boundary. Look at how far each jump lands from the circle it aims for: the "
                          f"titles' final gap is the error left at t = 0.", "segments",
                          {"boundaries": seg, "gaps": boundary_gaps(seg)}, {"K": ks}))
    if name == "consistency":
        views.append(View("consistency_grid", "Consistency along the training grid",
                          f"Lines: along one teacher ODE path per noise, at each time t_n of {name}'s training grid "
                          f"(N = {method.config.n_intervals}), the distance between the student's outputs at adjacent "
                          f"grid points (what its loss drives to zero) and between its output and the path's true end. "
                          f"Look at the end error growing with t while the adjacent gap stays small: small "
                          f"inconsistencies add up along the grid, and t = 1 (one step from noise) collects them all.",
                          "consistency_grid", consistency_grid(method, n=n, seed=seed)))
    if name == "reflow":
        paths, summary = trajectories(method.teacher_gen, gen, n=64, teacher_nfe=16, student_nfe=16, seed=seed)
        views.append(View("straightness", "Straightness: teacher vs reflowed paths",
                          f"Lines: the teacher's ODE paths and {name}'s reflowed flow from the same noise (16 Euler "
                          f"steps each; the legend gives each one's mean straightness, 0 = straight). Look at the "
                          f"reflowed paths being nearly straight lines: that is why a few Euler steps, or one distilled"
                          f" "
                          f"step, land where many teacher steps do.", "straightness",
                          {"paths": paths, "summary": summary}))
    say(0.75, "field")
    fld = method_field(method, seed=seed)
    views.append(View("field", "The method's own field", field_caption(method), "field", fld,
                      {"field_kind": str(fld.kind.iloc[0]) if len(fld) else ""}))
    sched = method_schedule(method)
    if len(sched):
        views.append(View("schedule", "Its schedule over training", _schedule_caption(name), "schedule", sched))
    say(0.85, "CKA")
    cka = cka_view(_cka_teacher(method, teacher, student.card), gen, name, n=256, seed=seed)
    if cka is not None:
        views.append(cka)
    say(1.0, "done")
    return views


def _image_views(student: Generator, teacher, data, recipe: dict, seed: int, progress) -> list[View]:
    """Digits: CKA, the x̂0 view, and the method's own view where cheap (no auxiliary fitting: a UNet update costs
    about half a second on one core)."""
    name = recipe["method"]
    say = progress or (lambda frac, text="": None)
    if not isinstance(teacher, Generator):
        teacher = resolve_reference(teacher or recipe.get("teacher"), "generator", student.device).model
    nfe = min(student.native_nfe) if student.native_nfe else 4
    views = []
    say(0.1, "x̂0 view")
    x0 = x0_views(teacher, {name: student}, nfe_teacher=8, nfe_student=nfe, n=4, seed=seed)
    views.append(View("x0", "What each step predicts (x̂0)",
                      f"Rows: the noisy state x_t and the model's clean-sample prediction x̂0 at each sampling step, "
                      f"the teacher at 8 steps and the {name} student at {nfe}, from the same noise and labels. Look "
                      f"at "
                      f"how early the digit's identity is fixed: a good few-step student predicts a clean digit "
                      f"already at its first step, where the teacher's first x̂0 is a blur.", "x0", x0))
    if student.kind in ("guided_flow", "cfg"):
        say(0.35, "guidance grid")
        views.append(View("guidance_grid", "Guidance-weight sweep",
                          f"Rows: the {name} student's samples at guidance weights w = 0, 1, 2, 4 from the same noise "
                          f"and labels ({nfe} steps, one network pass each). Look at the digits getting more legible "
                          f"and more alike as w grows: the student learned the guided teacher's trade-off between "
                          f"fidelity and diversity without its second pass.", "guidance_grid",
                          guidance_grid(student, ws=(0.0, 1.0, 2.0, 4.0), nfe=nfe, n=10, seed=seed)))
    cfg = {**recipe.get("config", {}), **PROBE_OVERRIDES.get(name, {})}
    cfg["batch"] = min(int(cfg.get("batch", FIT_BATCH)), FIT_BATCH)
    spec = data or student.card.get("data") or getattr(teacher, "card", {}).get("data")
    if name in ("progressive", "guidance", "consistency"):
        method = get_method(name)(teacher, spec, cfg, seed=seed, device=student.device)
        _to_last_stage(method)
        load_student(method, student)
        if name == "consistency":
            say(0.55, "consistency grid")
            views.append(View("consistency_grid", "Consistency along the training grid",
                              f"Lines: along one teacher ODE path per noise, at each time t_n of the student's "
                              f"training "
                              f"grid (N = {method.config.n_intervals}), the distance between the student's outputs at "
                              f"adjacent grid points and between its output and the path's true end (pixel units, "
                              f"32 images). Look at the end error growing with t while the adjacent gap stays small: "
                              f"small inconsistencies add up, and one step from noise collects them all.",
                              "consistency_grid", consistency_grid(method, n=32, seed=seed)))
        else:
            views.append(View("schedule", "Its schedule over training", _schedule_caption(name), "schedule",
                              method_schedule(method)))
    say(0.75, "CKA")
    cka = cka_view(teacher, student, name, n=64, seed=seed, teacher_nfe=8)
    if cka is not None:
        views.append(cka)
    say(1.0, "done")
    return views


__all__ = ["View", "VIEW_KINDS", "OWN_KINDS", "PROBE_OVERRIDES", "FIT_BATCH", "recipe_of", "rebuild_method",
           "load_student", "fit_auxiliary", "auxiliary_nets", "fit_index", "method_schedule", "consistency_grid",
           "cka_view", "inside_views"]
