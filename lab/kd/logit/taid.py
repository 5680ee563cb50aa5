"""TAID: temporally adaptive interpolated distillation.

Paper: Shing, Misaki, Bao, Yokoi, Akiba, "TAID: Temporally Adaptive Interpolated Distillation for
Efficient Knowledge Transfer in Language Models" (ICLR 2025). The student is not pulled straight to
the teacher: its target is an intermediate distribution that interpolates the LOGITS of the
(detached) student and of the teacher,

    p_t = softmax((1 - t) * sg(z_S) + t * z_T),      loss = -sum_c p_t,c * log q_S,c,

and the interpolation parameter t moves from t_start towards t_end (the teacher) during training.
Early on the target is close to what the student can already express (no capacity-gap shock, no
mode averaging); at t = 1 the loss is forward KL to the teacher (up to the teacher's entropy).

The schedule is adaptive and updated after every optimiser step from the detached distillation
loss J: delta = (J_prev - J) / (J_prev + 1e-15), m <- beta * m + (1 - beta) * delta,
dt = alpha * sigmoid(m) * (1 - t), t_lin = t_start + (t_end - t_start) * step / steps, and
t <- min(t_end, max(t_lin, t + dt)). t never decreases, evaluation never moves it, and (t, m,
J_prev) are saved with the method's state so a resumed run continues the same schedule exactly.

Fidelity notes:
- the paper trains LLM students for thousands of steps with alpha = 5e-4; with a few hundred toy
  steps that alpha moves t by less than 0.1 in total, so the linear floor t_lin alone sets the
  schedule. The toy default is alpha = 5e-3 (ten times the paper's; ``{"alpha": 5e-4}`` restores
  it): the adaptive step alpha * sigmoid(m) * (1 - t) ~ alpha / 2 * (1 - t) then leads the floor's
  (t_end - t_start) / steps early in runs longer than about 500 steps. In the 200-step claim run t
  stays on the floor at every step (measured), i.e. the claim tests the interpolated target with a
  linear schedule, not the adaptive part.
- the language task is distilled on teacher-forced training sequences (offline data), not on
  student-generated sequences as in some of the paper's settings.
- the loss is the cross-entropy -sum p_t log q_S (its gradient equals that of KL(p_t || q_S));
  J for the schedule is this cross-entropy of the step, as in the official code (SakanaAI/TAID
  ``src/distil_losses/taid.py``).
- ``temperature`` (default 1, the paper's) divides both logits before interpolation; ``ce_weight``
  (default 0) adds the usual cross-entropy with the true labels, ``kd_weight`` (default 1) scales
  the TAID term.
- on classification tasks the same mechanism applies per example (rows instead of token positions).
- the benchmark and the claim start at t_start = 0.2 (the value of some of the paper's scripts; the
  default stays 0.4) with lr 1e-2 and 200 steps of batch 32. Measured kl_truth (lower is better) on
  the language task, seeds 0-1: TAID 0.052, forward KL 0.055, reverse KL 0.070, scratch (CE only) 0.070; at 250 steps, seeds
  2-4 and lr 1e-2: 0.050 / 0.054 / 0.062 (TAID lower on every seed). Lower t_start helped (0.1 < 0.2
  < 0.4 < 0.6 at lr 3e-3); alpha barely mattered (5e-4, 5e-3, 2e-2 within 0.001): at these lengths
  the schedule is essentially the linear floor. At a higher lr (2e-2) the gap narrows (0.047 vs
  0.049), so part of TAID's edge at toy scale is optimisation stability.
- re-measured on seeds the settings were not tuned on (issue 16), bench config (200 steps, batch 32, lr 1e-2,
  t_start 0.2), seeds 10-17: TAID 0.0538±0.0030, forward KL 0.0588±0.0037, reverse KL 0.0704±0.0036 (TAID lower
  than forward KL on 8/8 seeds); the default t_start 0.4 gives 0.0564. At lr 3e-2, better for every method: TAID
  0.0467±0.0016, forward KL 0.0479±0.0011 (lower on 7/8 seeds, a gap of about one std), reverse KL 0.0537±0.0031.
  The claim test asserts the lr 1e-2 bench setting on seeds 10-14 with a one-std margin.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from lab.config import check, param
from lab.kd.base import KDConfig, KDMethod, KDTargets, flat, register


@dataclass
class TAIDConfig(KDConfig):
    temperature: float = 1.0
    ce_weight: float = 0.0
    kd_weight: float = 1.0
    #: interpolation parameter at the first step (0: the student itself, 1: the teacher)
    t_start: float = param(0.4, ge=0, le=1)
    #: the value t reaches (and the linear floor reaches at the last step)
    t_end: float = param(1.0, gt=0, le=1)
    #: step size of the adaptive increase of t (paper 5e-4; larger for the short toy runs)
    alpha: float = param(5e-3, ge=0, le=1)
    #: momentum of the relative loss change
    beta: float = param(0.99, ge=0, lt=1)

    def validate(self):
        super().validate()
        check(self.t_end >= self.t_start, "t_end", self.t_end, f"a float in (0, 1] and >= t_start ({self.t_start})")


def interpolate(student_logits: torch.Tensor, teacher_logits: torch.Tensor, t_interp: float,
                temperature: float = 1.0) -> torch.Tensor:
    """TAID's target p_t = softmax(((1 - t) * sg(z_S) + t * z_T) / temperature) with t = ``t_interp``, the
    interpolation parameter (the paper's t; 0 is the student, 1 the teacher), rows over the last dim."""
    z = (1.0 - float(t_interp)) * student_logits.detach() + float(t_interp) * teacher_logits.detach()
    return torch.softmax(z.float() / temperature, -1)


@register("taid")
class TAID(KDMethod):
    Config = TAIDConfig
    paper = "Shing et al. 2025 (ICLR), TAID: Temporally Adaptive Interpolated Distillation"
    mechanism = ("cross-entropy to softmax((1-t)*sg(z_S) + t*z_T), an adaptive interpolation of student and teacher "
                 "logits whose t rises from t_start to 1 with the momentum of the relative loss change")
    tiny = {"steps": 8, "batch": 32}
    #: capacity gap: TinyLM dim 8 student, dim 64 teacher; judged by KL to the true language
    bench_task = "language"
    bench_config = {"steps": 200, "batch": 32, "lr": 1e-2, "t_start": 0.2}
    bench_references = {"forward KL": ("kd", {"temperature": 1.0, "ce_weight": 0.0, "kd_weight": 1.0}), "reverse KL": ("rkl", {"temperature": 1.0, "ce_weight": 0.0, "kd_weight": 1.0})}

    def setup(self) -> None:
        c = self.config
        #: the interpolation parameter t of the paper (0: the student, 1: the teacher); not a diffusion time
        self.t = float(c.t_start)
        self.m = 0.0
        self.J_prev: float | None = None
        #: (step, t after the step's update, momentum) per training step (``lab.probes.taid.taid_trace``)
        self.t_trace: list[tuple[int, float, float]] = []

    def loss(self, student_logits, teacher_logits, y, batch, it):
        c = self.config
        temperature = c.temperature
        p_t = interpolate(flat(student_logits), flat(teacher_logits), self.t, temperature)
        log_q = torch.log_softmax(flat(student_logits).float() / temperature, -1)
        taid = -(p_t * log_q).sum(-1).mean()
        return self.plus_ce(c.kd_weight * taid, {"taid": taid}, student_logits, y)

    def update_t(self, J: float, step: int) -> float:
        """One schedule update after ``step`` optimiser steps with detached distillation loss ``J``; returns t."""
        c = self.config
        if self.J_prev is not None:
            delta = (self.J_prev - J) / (self.J_prev + 1e-15)
            self.m = c.beta * self.m + (1.0 - c.beta) * delta
            dt = c.alpha * (1.0 / (1.0 + math.exp(-self.m))) * (1.0 - self.t)
        else:
            dt = 0.0
        t_lin = c.t_start + (c.t_end - c.t_start) * min(step, self.total_steps) / self.total_steps
        self.t = min(c.t_end, max(t_lin, self.t + dt, self.t))
        self.J_prev = float(J)
        return self.t

    def after_step(self, batch, it, loss, terms):
        t_used = self.t
        J = float(terms["taid"].detach()) if isinstance(terms["taid"], torch.Tensor) else float(terms["taid"])
        self.update_t(J, it + 1)
        self.t_trace.append((it + 1, self.t, self.m))
        return {"taid/t": self.t, "taid/t_used": t_used, "taid/momentum": self.m}

    def targets(self, batch: dict) -> KDTargets:
        temperature = self.config.temperature
        student_logits, teacher_logits = self.detached_logits(batch["x"])
        return KDTargets(target=interpolate(student_logits, teacher_logits, self.t, temperature),
                         teacher=torch.softmax(teacher_logits / temperature, -1),
                         student=torch.softmax(student_logits / temperature, -1), labels=batch["y"].reshape(-1),
                         info={"t": self.t, "temperature": temperature})

    def extra_state(self) -> dict:
        return {**super().extra_state(), "taid": {"t": self.t, "m": self.m, "J_prev": self.J_prev,
                                                       "trace": [list(r) for r in self.t_trace]}}

    def load_extra_state(self, sd: dict) -> None:
        super().load_extra_state(sd)
        st = sd.get("taid")
        if st is not None:
            self.t, self.m = float(st["t"]), float(st["m"])
            self.J_prev = None if st["J_prev"] is None else float(st["J_prev"])
            self.t_trace = [(int(a), float(b), float(c)) for a, b, c in st.get("trace", [])]
