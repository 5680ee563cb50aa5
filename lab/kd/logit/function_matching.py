"""Function matching (``function_matching``): a patient and consistent teacher.

Paper: Beyer, Zhai, Royer, Markeeva, Anil, Kolesnikov, "Knowledge distillation: A good teacher is
patient and consistent" (CVPR 2022). Distillation is treated as matching the teacher's FUNCTION,
not its predictions on a fixed set of images: on every step teacher and student see the IDENTICAL,
aggressively augmented input (an inception crop, then mixup with a random ratio), the loss is only
the KL divergence between their predictions (no labels), and the schedule is very long. The paper's
ablation shows that "fixed teacher" KD (teacher predictions on one fixed view) and "independent
noise" (different views for teacher and student) overfit or plateau, while consistent views keep
improving the longer one trains ("patience").

Here: each batch is shifted by up to one pixel (images; ``augment="shift"``, the crop analogue at 8x8),
then mixed with a random permutation of itself with one ratio lambda ~ U[0, 1] per batch; teacher
and student get the same mixed input; the loss is ``kd_weight * T^2 * KL(p_T || q_S)`` on it.

Fidelity notes:
- the paper's crops are inception crops of 224px images; on 8x8 digits the augmentation is a
  random translation by up to one pixel (the base ``shift`` augmentation), on vector inputs mixup
  alone. ``mixup=False`` or ``augment="none"`` switch the parts off for ablations;
  ``consistent=False`` gives the paper's "independent noise" ablation (teacher and student get
  independently drawn mixup partners and ratios).
- mixup ratio: one per batch, drawn uniformly from [0, 1] (big_vision's ``mixup`` with beta
  parameter 1), the partner a random permutation of the batch.
- no labels: ``ce_weight`` defaults to 0 (it may be set > 0 for ablations). T defaults to 1 (the
  paper's default temperature; it reports little sensitivity). AdamW with the base lr, no lr
  schedule (the paper uses a cosine / linear-warmup schedule and Adam or Shampoo).
- classification tasks only: mixing token ids of the language task is meaningless.
- the claim reproduced (``tests/test_claims_kd_online.py``): at the same long schedule, with 200
  training digits, function matching ends higher than fixed-view ``kd`` and is still at its best at
  the end of the run, while ``kd`` has overfitted (its last evaluation below its best). Measured (seed 0,
  MLP[32], batch 64, 200 digits): at lr 3e-3 and 2400-3000 steps function matching reaches 0.894 at
  the last evaluation (best = last), kd peaks at 0.872 after 300 steps and ends at 0.844; at lr 1e-3
  and 3000 steps function matching is still climbing (0.806 last, below kd's 0.856 last / 0.883 best):
  patience is needed, a higher lr shortens it. Shift without mixup (``mixup=False``) ends at 0.778
  (3000 steps, lr 1e-3), so on these tiny images the mixup views do most of the work. On ``hard``
  (500 examples, 3000 steps, lr 1e-3) function matching 0.693 vs kd 0.654 (the teacher: about 0.67).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from lab.kd.base import KDConfig, KDMethod, flat, register
from lab.kd.tasks import logits_of
from lab.losses import forward_kl


@dataclass
class FunctionMatchingConfig(KDConfig):
    temperature: float = 1.0
    ce_weight: float = 0.0
    kd_weight: float = 1.0
    #: shift images by up to one pixel (the crop analogue); vectors are not shifted
    augment: str = "shift"
    #: mix each batch with a permutation of itself, ratio ~ U[0, 1]
    mixup: bool = True
    #: teacher and student see the identical input (False: the paper's "independent noise" ablation)
    consistent: bool = True


@register("function_matching")
class FunctionMatching(KDMethod):
    Config = FunctionMatchingConfig
    paper = "Beyer et al. 2022, Knowledge distillation: A good teacher is patient and consistent (CVPR)"
    mechanism = ("teacher and student see the identical augmented input (shift, then mixup with a U[0,1] ratio); "
                 "loss only T^2 KL(teacher || student), no labels; long schedules")
    kinds = ("classify",)
    kinds_note = "mixup of token ids is meaningless"
    bench_task = "digits"
    #: 200 training digits, a long schedule (770 epochs): where fixed-view kd overfits
    bench_config = {"steps": 2400, "n_train": 200, "lr": 3e-3}
    bench_references = {"kd": ("kd", {})}

    def mix(self, x: torch.Tensor) -> torch.Tensor:
        """Mixup of ``x`` with a random permutation of itself, one U[0, 1] ratio for the batch."""
        lam = self.rand(1)
        perm = torch.randperm(len(x), generator=self.rng).to(self.device)
        return lam * x + (1 - lam) * x[perm]

    def compute(self, batch, it):
        c = self.config
        x, y = batch["x"], batch["y"]
        xs = self.mix(x) if c.mixup else x
        xt = xs if (c.consistent or not c.mixup) else self.mix(x)
        teacher_logits = self.teacher_logits(xt)
        student_logits = logits_of(self.student(xs))
        kl = forward_kl(flat(student_logits), flat(teacher_logits), temperature=c.temperature)
        return self.plus_ce(c.kd_weight * kl, {"kd": kl}, student_logits, y)


__all__ = ["FunctionMatching", "FunctionMatchingConfig"]
