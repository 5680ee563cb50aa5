"""BD-KD: balancing forward and reverse KL per sample, for accuracy and calibration.

Paper: Amara, Sepahvand, Meyer, Gross, Clark, "BD-KD: Balancing the Divergences for Online
Knowledge Distillation" (2022). Only the abstract is available here: the student's distillation
loss adaptively balances the forward KL(p_T || q_S) (mass-covering) and the reverse KL(q_S || p_T)
(mode-seeking) sample by sample, which shifts the focus to the compact student and improves both
its accuracy and its calibration; in the paper teacher and student learn together (online KD).

The balancing rule used here (our design from the abstract):

    H_S, H_T = entropies of the tempered student and teacher distributions of the sample (detached),
    w_rev = sigmoid(gap_scale * (H_T - H_S)),  w_fwd = 1 - w_rev,
    L_S = ce_weight * CE(y) + kd_weight * T^2 * mean_i [w_fwd,i * KL(p_T || q_S)_i + w_rev,i * KL(q_S || p_T)_i].

Where the student is MORE confident than the teacher (H_S < H_T) the reverse KL dominates:
KL(q || p) = CE(q, p) - H(q) contains the student's own entropy with a minus sign, so it pushes an
over-confident student's entropy up (the calibration lever). Where the student is the more
uncertain one (H_S > H_T, the samples a small student cannot fit) the mass-covering forward KL
dominates, as in Hinton KD (the accuracy lever), without forcing the student onto a single mode.

Fidelity notes:
- the weighting rule is reconstructed from the abstract (the paper's exact rule was not available);
  it is per sample, detached, and the weights sum to 1 so the loss stays on the scale of Hinton KD.
- default is OFFLINE: the shipped, frozen teacher. ``online=True`` adds the paper's online part at
  toy scale: a trainable copy of the teacher (initialised from the given teacher's weights, its own
  AdamW at ``teacher_lr``) trained each step with CE + T^2 * KL(q_S || p_T) (the student detached,
  as in deep mutual learning) while the student learns from it with the balanced loss; the claim
  and benchmark use the offline default (equal teacher for bdkd and kd).
- T = 4 and CE/KD weights 0.1/0.9 as in the ``kd`` method, so ``kd`` vs ``bdkd`` differ only in the
  balancing.
- measured (test ECE, mean of seeds 0-3, lower is better): on ``hard`` at 1000 steps kd 0.0735 (acc
  0.619), bdkd 0.0677 (acc 0.615; lower ECE on each seed); gap_scale 0 (a plain 50/50 mix) 0.0704,
  gap_scale 5 0.0723, 10 0.0741. At 600 steps bdkd does NOT beat kd (0.0436 vs 0.0413), nor on digits
  with 200 labels (0.066 vs 0.050 with gap_scale 5; seeds 0-2): the calibration gain is small and
  fragile at toy scale, and the paper's accuracy gain is not seen (accuracy equal within 0.005).
  ``online=True`` (fine-tuning the shipped teacher with the student) makes calibration much worse on
  ``hard`` (ECE 0.132, acc 0.596 at 1000 steps, seeds 0-1): the teacher over-fits the training split.
- re-measured on unseen seeds (issue 16): the T = 4 ECE gain above does NOT hold on seeds 10-17 (kd 0.0799±0.0100,
  bdkd 0.0810±0.0080). Tuned on seeds 30-35 (hard, 1000 steps unless said; acc / ECE): kd T4 0.625 / 0.085, bdkd
  T4 gap_scale 0 / 2 / 5: 0.622 / 0.077, 0.623 / 0.080, 0.629 / 0.082; at 600 and 1500 steps the ECE differences
  stay inside the seed spread; T2: kd 0.634 / 0.087, bdkd 0.641 / 0.087; T1: kd 0.636 / 0.138, bdkd 0.651 / 0.127.
  At T = 1 (both methods) bdkd beats kd on both, confirmed on seeds 40-47: acc 0.652±0.010 vs 0.637±0.012 (higher
  on 8/8 seeds), ECE 0.130±0.015 vs 0.140±0.016 (lower on 8/8; paired difference -0.010±0.007). That is the bench
  and claim setting (``bench_config`` T = 1, the kd reference at T = 1 too). It is the balancing, not the
  temperature, that wins accuracy: kd at T = 1, 2, 4 reaches 0.636, 0.634, 0.625. Calibration is relative to kd
  at the same T only: kd at its default T = 4 is better calibrated (ECE 0.085) than either at T = 1.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import torch

from lab.config import param
from lab.kd.base import KDConfig, KDMethod, KDTargets, flat, register
from lab.kd.tasks import logits_of


@dataclass
class BDKDConfig(KDConfig):
    #: also train (a copy of) the teacher with the student, as in online KD
    online: bool = False
    #: learning rate of the online teacher (0: the config's lr)
    teacher_lr: float = param(0.0, ge=0, note="0: the config's lr")
    #: slope (per nat) of the sigmoid that turns the entropy gap H_T - H_S into the reverse-KL weight
    gap_scale: float = param(2.0, ge=0, note="0: equal forward and reverse weights")


def _entropy(log_p: torch.Tensor) -> torch.Tensor:
    return -(log_p.exp() * log_p).sum(-1)


def balanced_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 4.0,
                gap_scale: float = 2.0):
    """BD-KD's student distillation term on (rows, C) logits: T^2 * mean over rows of
    (1 - w) * KL(p_T || q_S) + w * KL(q_S || p_T), w = sigmoid(gap_scale * (H_T - H_S)) (detached).

    Returns (loss, w per row, forward KL per row, reverse KL per row)."""
    temperature = float(temperature)
    log_q = torch.log_softmax(student_logits.float() / temperature, -1)
    log_p = torch.log_softmax(teacher_logits.float() / temperature, -1)
    fkl = (log_p.exp() * (log_p - log_q)).sum(-1)
    rkl = (log_q.exp() * (log_q - log_p)).sum(-1)
    with torch.no_grad():
        hs, ht = _entropy(log_q), _entropy(log_p)
        w = torch.sigmoid(float(gap_scale) * (ht - hs))
    loss = temperature * temperature * ((1 - w) * fkl + w * rkl).mean()
    return loss, w, fkl, rkl


@register("bdkd")
class BDKD(KDMethod):
    Config = BDKDConfig
    paper = "Amara et al. 2022, BD-KD: Balancing the Divergences for Online Knowledge Distillation"
    mechanism = ("CE + T^2 * per-sample mix of forward and reverse KL, weighted by the teacher's vs the student's "
                 "entropy (reverse KL where the student is the more confident); optional online teacher")
    #: the claim's setting: the capacity-gap task at T = 1 (for bdkd and its kd reference), where the balancing
    #: beats kd on unseen seeds (see the fidelity notes)
    bench_task = "hard"
    bench_config = {"steps": 1000, "temperature": 1.0}
    bench_references = {"kd": ("kd", {"temperature": 1.0})}

    def setup(self) -> None:
        self.online_teacher = None
        if self.config.online:
            net = copy.deepcopy(self.teacher)
            for p in net.parameters():
                p.requires_grad_(True)
            self.online_teacher = self.add_trainable("online_teacher", net, lr=self.config.teacher_lr or None)

    def loss(self, student_logits, teacher_logits, y, batch, it):
        c = self.config
        ce = self.ce(student_logits, y)
        kd, w, fkl, rkl = balanced_kl(flat(student_logits), flat(teacher_logits).detach(), c.temperature, c.gap_scale)
        terms = {"ce": ce, "bd": kd, "w_rev": float(w.mean()), "fkl": fkl.mean().detach(),
                 "rkl": rkl.mean().detach()}
        return c.ce_weight * ce + c.kd_weight * kd, terms

    def compute(self, batch, it):
        if self.online_teacher is None:
            return super().compute(batch, it)
        c = self.config
        x, y = batch["x"], batch["y"]
        teacher_logits = logits_of(self.online_teacher(x))
        student_logits = logits_of(self.student(x))
        loss_s, terms = self.loss(student_logits, teacher_logits.detach(), y, batch, it)
        temperature = c.temperature
        log_pt = torch.log_softmax(flat(teacher_logits).float() / temperature, -1)
        log_qs = torch.log_softmax(flat(student_logits).detach().float() / temperature, -1)
        t_kl = temperature * temperature * (log_qs.exp() * (log_qs - log_pt)).sum(-1).mean()
        t_ce = self.ce(teacher_logits, y)
        terms.update({"teacher_ce": t_ce, "teacher_kl": t_kl})
        return loss_s + t_ce + t_kl, terms

    def targets(self, batch: dict) -> KDTargets:
        tg = super().targets(batch)
        student_logits, teacher_logits = self.detached_logits(batch["x"])
        with torch.no_grad():
            _, w, _, _ = balanced_kl(student_logits, teacher_logits, self.config.temperature, self.config.gap_scale)
        return KDTargets(tg.target, tg.teacher, tg.student, tg.labels,
                         info={**tg.info, "w_rev": w.cpu(), "online": self.config.online})

    def teacher_logits(self, x):
        net = self.online_teacher if getattr(self, "online_teacher", None) is not None else self.teacher
        with torch.no_grad():
            return logits_of(net(x))
