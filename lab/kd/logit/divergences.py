"""Logit distillation with other divergences than Hinton's forward KL: reverse KL, GKD's generalised JSD,
DistiLLM's skew KL and the total variation distance.

Paper: Agarwal et al. 2024, "On-Policy Distillation of Language Models: Learning from Self-Generated
Mistakes" (GKD: the generalised JSD_beta between teacher and student token distributions, reverse KL as its
beta = 1 end); Gu et al. 2024, "MiniLLM: Knowledge Distillation of Large Language Models" (reverse KL is
mode-seeking: the student does not spread mass over the teacher's low-probability regions); Ko et al. 2024,
"DistiLLM: Towards Streamlined Distillation for Large Language Models" (skew KL / skew reverse KL: the
student's distribution is mixed with the teacher's inside the divergence, which bounds it and stabilises
the gradients); Wen et al. 2023, "f-Divergence Minimization for Sequence-Level Knowledge Distillation"
(total variation among the f-divergences).

Every method here is ``ce_weight * CE(y) + kd_weight * D(student, teacher)`` on the temperature-T
distributions, like ``kd`` (:mod:`lab.kd.logit.hinton`) with another divergence D from :mod:`lab.losses`
(each is a :class:`lab.kd.logit.base.DivergenceKD`):

- ``rkl``: ``T^2 * KL(q || p)`` (student first), mode-seeking;
- ``jsd``: GKD's ``JSD_beta = beta * KL(p || M) + (1 - beta) * KL(q || M)``, ``M = beta p + (1 - beta) q``
  (TRL's convention: beta -> 0 behaves like forward KL, beta -> 1 like reverse KL);
- ``skew_kl``: ``T^2 * KL(p || alpha p + (1 - alpha) q)`` (``direction="forward"``, SKL) or
  ``T^2 * KL(q || alpha q + (1 - alpha) p)`` (``direction="reverse"``, SRKL), alpha = 0.1;
- ``tvd``: ``0.5 * sum |p - q|``.

What each does to a student that cannot represent a two-mode teacher is shown by the divergence explorer
(:mod:`lab.probes.divergence`, figures in :mod:`lab.viz.divergence`).

Fidelity notes:
- The papers distil language models on sequences; GKD and MiniLLM sample the sequences from the student
  (on-policy, GKD's ``lmbda`` share of student-generated outputs; MiniLLM's policy gradient), DistiLLM uses
  an adaptive off-policy replay buffer of student outputs. The methods of this module are token-level (or
  class-level) and off-policy, on the task's fixed training inputs; what is kept is the divergence each
  paper minimises. Sequence-level on-policy sampling (GKD's ``lmbda``) is ``gkd`` (lab/kd/logit/gkd.py).
- ``jsd`` uses TRL's value (``normalized=False`` in :func:`lab.losses.generalized_jsd`, no T^2 factor)
  with TRL's special cases at beta = 0 (forward KL) and beta = 1 (reverse KL), on temperature-T
  distributions (TRL applies the temperature to the logits too). GKD works at T = 1; here the default is
  the shared T = 4: with 200 labelled digits jsd at T = 1 does not beat scratch (0.833 vs 0.844, 3 seeds,
  1000 steps) and at T = 4 it does (0.869).
- ``tvd`` has no T^2 factor (it is bounded by 1 at any T); also at the shared T = 4: with 200 labelled
  digits it beats scratch at T = 4 (0.870) and not at T = 1 or 2 (0.840, 0.841).
- Measured on the bench setting (200 labelled digits, 1000 steps, MLP[32] student, last test accuracy, mean
  of seeds 0-2): scratch 0.844, kd 0.865, rkl 0.873, jsd 0.869, skew_kl forward 0.863, reverse 0.872,
  tvd 0.870. Each beats scratch; only the gap to scratch (about 0.02-0.03) is bigger than the spread over
  seeds (about 0.01); the differences between the divergences are not.
- Mode seeking at the classifier level: on the "hard" task (a student that cannot match its teacher) at
  T = 1, the rkl student's predictive entropy is lower than kd's (1.48 vs 1.93 nats, 300 steps, 3 seeds) and
  so is its accuracy (0.30 vs 0.41; scratch 0.37): sharper is not better when the student picks wrong modes.
- ``rkl`` and ``skew_kl`` keep ``kd``'s T^2 factor and defaults (T = 4, weights 0.1 / 0.9). DistiLLM uses
  T = 1 on language models; set ``temperature`` to compare.
- Claim measurements (issue 16; language task, capacity gap, T = 1, divergence term only, 200 steps, batch 32;
  last kl_truth, mean of seeds 10-15, lower is better). lr 1e-2: forward KL 0.0580, reverse KL 0.0704, skew
  forward 0.0576, skew reverse 0.0609, tvd 0.0667, jsd 0.0598; lr 3e-2: 0.0475, 0.0539, 0.0473, 0.0497, 0.0555,
  0.0488. DistiLLM's faster, steadier convergence shows for the reverse direction (skew reverse KL below reverse KL
  at every evaluation, mean over the run 0.119 vs 0.147 at lr 1e-2); skew forward KL only matches forward KL, which
  is already stable on logits here. TVD is competitive on digits (200 labels, seeds 10-17: tvd 0.869, kd 0.869,
  scratch 0.847; skew forward 0.871, skew reverse 0.874, rkl 0.875) but worse than forward KL on the language task:
  the f-divergence paper's "outperforms KL" is a MISS at toy scale. Claim tests: tests/test_claims_kd_logits.py.
- ``skew_kl`` overrides :meth:`targets`: with ``direction="reverse"`` the student q is pulled to the mixture
  ``(1 - alpha) p + alpha q`` (the SRKL target); with ``direction="forward"`` the teacher p stays the target
  and it is the student's skewed distribution ``alpha p + (1 - alpha) q`` that is pulled to it. ``info``
  says which (``mixture``) and gives alpha and the direction.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from lab.config import param
from lab.kd.base import KDConfig, KDTargets, register
from lab.kd.logit.base import DivergenceKD
from lab.losses import generalized_jsd, reverse_kl, skew_forward_kl, skew_reverse_kl, tvd


@register("rkl")
class ReverseKL(DivergenceKD):
    paper = "Gu et al. 2024, MiniLLM (reverse KL); Agarwal et al. 2024, GKD"
    mechanism = "cross-entropy + T^2 * KL(student || teacher): reverse KL, mode-seeking"

    def divergence(self, student_logits, teacher_logits):
        return reverse_kl(student_logits, teacher_logits, temperature=self.config.temperature)


@dataclass
class JSDConfig(KDConfig):
    #: the JSD mixture weight: 0 is forward KL(p || q), 1 reverse KL(q || p) (TRL's convention)
    beta: float = param(0.5, ge=0, le=1, note="0: forward KL, 1: reverse KL")


@register("jsd")
class JSD(DivergenceKD):
    Config = JSDConfig
    paper = "Agarwal et al. 2024, On-Policy Distillation of Language Models (GKD)"
    mechanism = ("cross-entropy + generalised JSD_beta(teacher, student) with the mixture beta*p + (1-beta)*q; "
                 "beta 0 = forward KL, 1 = reverse KL")

    def divergence(self, student_logits, teacher_logits):
        c = self.config
        return generalized_jsd(student_logits, teacher_logits, beta=c.beta, temperature=c.temperature, normalized=False)


SKEW_DIRECTIONS = ("forward", "reverse")


@dataclass
class SkewKLConfig(KDConfig):
    #: the skew: share of the divergence's first argument mixed into its second
    alpha: float = param(0.1, ge=0, lt=1, note="0: plain KL; DistiLLM uses 0.1")
    #: "forward": SKL = KL(p || alpha p + (1-alpha) q); "reverse": SRKL = KL(q || alpha q + (1-alpha) p)
    direction: str = param("forward", choices=SKEW_DIRECTIONS)


@register("skew_kl")
class SkewKL(DivergenceKD):
    Config = SkewKLConfig
    paper = "Ko et al. 2024, DistiLLM: Towards Streamlined Distillation for Large Language Models"
    mechanism = ("cross-entropy + T^2 * skew KL: KL(p || alpha p + (1-alpha) q) (forward) or "
                 "KL(q || alpha q + (1-alpha) p) (reverse), alpha 0.1")

    def divergence(self, student_logits, teacher_logits):
        c = self.config
        fn = skew_forward_kl if c.direction == "forward" else skew_reverse_kl
        return fn(student_logits, teacher_logits, alpha=c.alpha, temperature=c.temperature)

    def targets(self, batch: dict) -> KDTargets:
        c = self.config
        temperature, a = c.temperature, c.alpha
        student_logits, teacher_logits = self.detached_logits(batch["x"])
        p, q = torch.softmax(teacher_logits / temperature, -1), torch.softmax(student_logits / temperature, -1)
        info = {"temperature": temperature, "alpha": a, "direction": c.direction}
        if c.direction == "reverse":
            target, student = (1 - a) * p + a * q, q
            info["mixture"] = "target = (1 - alpha) * teacher + alpha * student (SRKL pulls q to it)"
        else:
            target, student = p, a * p + (1 - a) * q
            info["mixture"] = "student = alpha * teacher + (1 - alpha) * q (SKL pulls this skewed student to p)"
        return KDTargets(target=target, teacher=p, student=student, labels=batch["y"].reshape(-1), info=info)


@register("tvd")
class TVD(DivergenceKD):
    paper = "Wen et al. 2023, f-Divergence Minimization for Sequence-Level Knowledge Distillation (TVD)"
    mechanism = "cross-entropy + total variation 0.5 * sum |p - q| between teacher and student"

    def divergence(self, student_logits, teacher_logits):
        return tvd(student_logits, teacher_logits, temperature=self.config.temperature)
