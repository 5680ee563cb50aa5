"""DKD: decoupled knowledge distillation (target-class and non-target-class terms).

Paper: Zhao, Cui, Song, Qiu, Liang, "Decoupled Knowledge Distillation" (CVPR 2022). The classic
KD loss is split into TCKD, a binary KL between the teacher's and the student's probability of the
true class versus the rest, b = [p_gt, 1 - p_gt], and NCKD, a KL between their distributions over
the non-target classes only (renormalised). Classic KD weights NCKD by (1 - p_gt^T), which
suppresses it exactly where the teacher is confident; DKD frees the two weights:

    L = CE(y) + min(step / warmup, 1) * (alpha * T^2 * TCKD + beta * T^2 * NCKD),

with alpha 1, beta 8, T 4 (the paper's CIFAR-100 defaults).

Fidelity notes:
- the warm-up is counted in optimiser steps (config ``warmup``), not epochs (the paper: 20 epochs).
- the non-target distributions are softmaxes with the target logit masked (logit - 1000), as in
  the reference implementation; both KLs are summed over classes and averaged over rows.
- classification only: on the language task the "target class" is one next token out of a
  vocabulary whose true distribution is broad, so the target/non-target split is not the paper's
  setting; the method refuses that task.
- the cross-entropy weight is ``ce_weight`` (default 1, the paper's); ``kd_weight`` is unused
  (alpha and beta weight the two terms).
- measured (digits, 200 labelled examples, 1000 steps, MLP[32] student, seeds 0-1): the paper's
  beta = 8 is too strong for 10 classes and a tiny student (acc 0.833, below scratch's 0.842 and kd's
  0.872); beta = 2 gives 0.878 (seeds 2-3: 0.864 vs scratch 0.853, kd 0.860). The benchmark and the
  claim use beta = 2; the default stays the paper's 8. On the ``hard`` task (capacity gap) DKD with
  beta 8 is far below kd (0.45 vs 0.55 at 600 steps).
- against plain kd (issue 16; same student, steps, data, seeds; mean±std of the last test acc), tuned on seeds
  10-17: kd 0.869±0.011; DKD at T 4 with beta 1 / 2 / 4: 0.878 / 0.878 / 0.873, beta 2 without warm-up 0.872, beta 1
  with alpha 0.5 / 2: 0.875 / 0.879, at T 2: 0.872, at T 8: 0.883±0.008 -- but kd at T 8 reaches 0.877±0.013,
  so most of that lead is the temperature. On unseen seeds 20-27: kd 0.867±0.010, DKD beta 2 (the bench) 0.873±0.011
  (paired difference +0.006±0.016, higher on 5/8 seeds), beta 1 0.873; at T 8, kd 0.874 and DKD beta 1 0.875
  (+0.000±0.007). DKD's gain over KD is inside the seed spread at toy scale: a MISS of the paper's claim. What
  holds is that DKD matches kd and beats scratch (the claim test, tests/test_claims_kd_taid.py).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from lab.config import param
from lab.kd.base import SCARCE_LABELS, KDConfig, KDMethod, KDTargets, register

_MASK = 1000.0


@dataclass
class DKDConfig(KDConfig):
    ce_weight: float = 1.0
    #: weight of TCKD (target vs rest binary KL)
    alpha: float = param(1.0, ge=0)
    #: weight of NCKD (KL among the non-target classes)
    beta: float = param(8.0, ge=0)
    #: steps over which the distillation weight rises linearly from 0 to 1 (0: no warm-up)
    warmup: int = param(100, ge=0, note="steps; 0: no warm-up")


def dkd_terms(student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor,
              temperature: float = 4.0) -> tuple[torch.Tensor, torch.Tensor]:
    """(TCKD, NCKD), each T^2 * KL(teacher || student) averaged over rows, on logits (n, C) and labels (n,)."""
    temperature = float(temperature)
    z_s, z_t = student_logits.float() / temperature, teacher_logits.float() / temperature
    gt = F.one_hot(labels.long(), z_s.shape[-1]).bool()
    # binary [p_gt, 1 - p_gt] in log space: log p_gt and log(sum of the rest) via logsumexp
    def binary(z):
        lse = torch.logsumexp(z, -1)
        log_gt = z[gt] - lse
        log_rest = torch.logsumexp(z.masked_fill(gt, float("-inf")), -1) - lse
        return torch.stack([log_gt, log_rest], -1)

    bs, bt = binary(z_s), binary(z_t)
    tckd = (bt.exp() * (bt - bs)).sum(-1).mean() * temperature * temperature
    ns = torch.log_softmax(z_s - _MASK * gt, -1)
    nt = torch.log_softmax(z_t - _MASK * gt, -1)
    nckd = (nt.exp() * (nt - ns)).sum(-1).mean() * temperature * temperature
    return tckd, nckd


@register("dkd")
class DKD(KDMethod):
    Config = DKDConfig
    paper = "Zhao et al. 2022 (CVPR), Decoupled Knowledge Distillation"
    mechanism = "CE + warm-up * (alpha * TCKD target-vs-rest KL + beta * NCKD KL among non-target classes), T^2-scaled"
    kinds = ("classify",)
    kinds_note = ("DKD splits the loss at the true class; on next-token prediction the true distribution is "
                  "broad and the target/non-target split is not the paper's setting")
    bench_task = "digits"
    #: scarce labels (as the kd benchmark); beta 2 instead of the paper's 8 (see the fidelity notes)
    bench_config = {**SCARCE_LABELS, "beta": 2.0}
    bench_references = {"kd": ("kd", {})}

    def weight(self, it: int) -> float:
        w = self.config.warmup
        return 1.0 if w == 0 else min((it + 1) / w, 1.0)

    def loss(self, student_logits, teacher_logits, y, batch, it):
        c = self.config
        ce = self.ce(student_logits, y)
        tckd, nckd = dkd_terms(student_logits, teacher_logits, y, c.temperature)
        w = self.weight(it)
        total = c.ce_weight * ce + w * (c.alpha * tckd + c.beta * nckd)
        return total, {"ce": ce, "tckd": tckd, "nckd": nckd, "warmup": w}

    def targets(self, batch: dict) -> KDTargets:
        tg = super().targets(batch)
        return KDTargets(tg.target, tg.teacher, tg.student, tg.labels,
                         info={**tg.info, "alpha": self.config.alpha, "beta": self.config.beta,
                               "note": "DKD re-weights the target and non-target parts of this distribution"})
