"""Knowledge distillation you can watch: a KD method and its baselines trained in lockstep, a few steps at a time.

    s = KDLiveSession("dkd", "digits", {"steps": 300, "n_train": 200}, seed=0)   # dkd, scratch and kd
    s.advance(10)                 # exactly 10 more steps of EACH run
    f = s.frame()                 # per-run test curves (acc, agreement, ECE, train loss...), every step's losses
    s.students()                  # {run: student network} at the current step (for lab.probes.kd views)

Each run is a suspended training loop (:func:`lab.runs.loop.train`, a generator), like the 2D
:class:`~lab.runs.live.LiveSession`: a page can start, pause and step them. The runs are the chosen method and its
``baselines`` (``scratch``: the same student with labels only; ``kd``: plain Hinton KD), sharing the training setup
(:data:`SHARED`: steps, batch, lr, student, labelled examples...), so the comparison is at equal student compute.
Every run gets the teacher, so scratch too reports its agreement with it. Same method, task, config and seed:
the same numbers, step for step, whether or not frames are taken in between (a frame only reads: evaluations run
the students in eval mode on fixed test data; each method draws batches from its own seeded generator).

What to look for: the method's agreement with the teacher climbs above scratch's (scratch never sees the teacher;
its agreement only follows its accuracy), while accuracy may tie (with all labels kd rarely beats scratch on
accuracy; with few labels, ``n_train=200``, it does).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import pandas as pd
import torch

from lab.config import config_from_dict, describe_field
from lab.errors import DivergenceError, LabError
from lab.kd import get as get_kd, get_task, list_methods as list_kd, load_teacher
from lab.runs.loop import Guard, train
from lab.runs.session import SteppedSession

#: the training setup every run of a session shares (the method's own fields apply to the method only)
SHARED = ("steps", "batch", "lr", "weight_decay", "student", "eval_every", "n_train", "augment")
#: test evaluations per run when the config does not set ``eval_every`` (the live curves' points)
LIVE_EVALS = 25
#: the largest sizes a live session accepts (the Config's own bounds still apply)
LIVE_LIMITS = {"steps": 20_000, "batch": 4096}
BASELINES = ("scratch", "kd")


def methods_for(task) -> list[str]:
    """The registered KD methods that support ``task``'s kind (classify or lm)."""
    kind = get_task(task).kind
    return [m for m in list_kd() if kind in get_kd(m).kinds]


def check_config(method: str, config: dict | None) -> dict:
    """``config`` validated by ``method``'s Config (its one-line LabError) and :data:`LIVE_LIMITS`; returns it."""
    if config is not None and not isinstance(config, dict):
        raise LabError(f"config must be a dict of {method}'s Config fields, got {type(config).__name__}")
    cfg = config_from_dict(get_kd(method).Config, config)
    for name, top in LIVE_LIMITS.items():
        v = getattr(cfg, name)
        if v > top:
            raise LabError(f"invalid {name}={v!r} for the live view; allowed here: {describe_field(type(cfg), name)}, "
                           f"at most {top:_}")
    return dict(config or {})


@dataclass
class KDFrame:
    """What a live KD view draws, as data."""

    it: int                   # completed steps of each run
    total: int                # the runs' length (config.steps)
    runs: list                # run names: the method first, then the baselines
    history: pd.DataFrame     # run, method, step, train_loss, acc, nll, ece, agree (, kl_truth): step 0 and each eval
    losses: pd.DataFrame      # run, step, total and the loss terms: every step so far
    done: bool
    error: str


class KDLiveSession(SteppedSession):
    """A KD ``method`` and its ``baselines`` on one ``task`` from one teacher, with one seed, trained in lockstep.

    ``config``: overrides of the method's Config (validated by it); the :data:`SHARED` fields go to the baselines too.
    Without ``eval_every`` each run is evaluated :data:`LIVE_EVALS` times. ``teacher``: a network or a reference
    (default: the zoo's ``kd/<task>/teacher``). ``callbacks(run) -> [Callback]``: extra callbacks of each run's loop
    (e.g. a ``lab.probes.kd.CKATracker``, which lives a layer above), built again at each reset."""

    def __init__(self, method: str, task, config: dict | None = None, seed: int = 0,
                 baselines: Sequence[str] = BASELINES, device="cpu", teacher=None,
                 callbacks: Callable[[str], list] | None = None):
        self.task = get_task(task)
        allowed = methods_for(self.task)
        names = [method, *baselines]
        for name in names:
            if name not in allowed:
                raise LabError(f"unknown KD method {name!r} for the {self.task.name} task; allowed: "
                               f"{', '.join(allowed)}")
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed < 2**63:
            raise LabError(f"seed must be an integer in [0, 2**63), got {str(seed)[:40]!r}")
        self.method_name, self.seed, self.device = method, int(seed), torch.device(device)
        config = dict(config or {})
        steps = check_config(method, config).get("steps", get_kd(method).Config().steps)
        config.setdefault("eval_every", max(1, int(steps) // LIVE_EVALS))
        self.configs = {method: check_config(method, config)}
        shared = {k: v for k, v in config.items() if k in SHARED}
        for name in baselines:
            self.configs.setdefault(name, check_config(name, shared))
        self.names = list(self.configs)  # the method first, baselines deduplicated
        ref = teacher if teacher is not None else f"kd/{self.task.name}/teacher"
        self.teacher = load_teacher(ref, device=self.device, train_if_missing=False, progress=False)
        self.callbacks_fn = callbacks
        self.reset()

    # ---- the runs
    def reset(self) -> None:
        """Back to step 0: every run rebuilt with the same seed (replaying gives the same numbers)."""
        self.runs = {n: get_kd(n)(self.teacher, self.task, self.configs[n], seed=self.seed, device=self.device)
                     for n in self.names}
        self.callbacks = {n: list(self.callbacks_fn(n)) if self.callbacks_fn else [] for n in self.names}
        self.loops = {n: train(m, callbacks=[Guard(check_params=False), *self.callbacks[n]])
                      for n, m in self.runs.items()}
        self.start = {n: {"it": 0, **m.evaluate()} for n, m in self.runs.items()}  # step 0 on the curves
        self.rows: list[dict] = []
        self.restart()

    @property
    def method(self):
        """The chosen method's run (a :class:`~lab.kd.KDMethod`)."""
        return self.runs[self.method_name]

    def step_once(self) -> bool:
        """One step of every run, in order; False at the end or when a run cannot go on (``error`` names it)."""
        for name, loop in self.loops.items():
            try:
                state = next(loop)
            except StopIteration:
                return False
            except (DivergenceError, LabError, RuntimeError, ValueError) as e:  # a run that cannot go on
                self.error = f"{name}: {e}; reset, or lower the learning rate"
                return False
            self.rows.append({"run": name, "step": state.it, **state.out.losses})
        return True

    def students(self) -> dict:
        """{run: its student network} at the current step (live objects: they keep training)."""
        return {n: m.student for n, m in self.runs.items()}

    # ---- what is drawn
    @property
    def losses(self) -> pd.DataFrame:
        """Every completed step's loss terms: run, step, total, then the terms each method records."""
        return pd.DataFrame(self.rows) if self.rows else pd.DataFrame(columns=["run", "step", "total"])

    def history(self) -> pd.DataFrame:
        """Step 0 and each periodic test evaluation of each run: run, method, step, train_loss (the mean training
        loss since the previous evaluation; NaN at step 0), then the metrics (acc, nll, ece, agree, kl_truth on
        the language task)."""
        losses = self.losses
        out = []
        for n, m in self.runs.items():
            evals = [self.start[n], *m.history]
            lo = losses[losses.run == n] if len(losses) else losses
            prev = 0
            for r in evals:
                seg = lo[(lo.step > prev) & (lo.step <= r["it"])]["total"] if len(lo) else []
                out.append({"run": n, "method": m.name, "step": int(r["it"]),
                            "train_loss": float(np.mean(seg)) if len(seg) else float("nan"),
                            **{k: v for k, v in r.items() if k != "it"}})
                prev = r["it"]
        return pd.DataFrame(out)

    def frame(self) -> KDFrame:
        """Everything a live view draws (the runs are only read)."""
        return KDFrame(self.iteration, self.total, list(self.names), self.history(), self.losses, self.done,
                       self.error)


__all__ = ["KDLiveSession", "KDFrame", "methods_for", "check_config", "SHARED", "LIVE_EVALS", "LIVE_LIMITS",
           "BASELINES"]
