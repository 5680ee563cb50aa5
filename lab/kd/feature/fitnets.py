"""FitNets: hints for thin deep nets (``fitnets``).

Paper: Romero et al., "FitNets: Hints for Thin Deep Nets" (ICLR 2015). A trained regressor maps the
student's guided (middle) layer onto the teacher's hint (middle) layer; loss ``hint_weight * MSE(r(f_S), f_T)``.
``stages="one"`` (mdistiller's form, the DEFAULT here, because it is the one that helps at toy scale): hint +
Hinton KD (``ce_weight * CE + kd_weight * T^2 KL``) from the first step. ``stages="two"`` (the paper): the first
``hint_steps`` steps train only the hint (the student up to its guided layer, and the regressor), then Hinton KD
without the hint.

Fidelity notes:
- the regressor is a 1x1 convolution when both layers are conv maps (the teacher map average-pooled to the
  student's size), a per-token Linear for token sequences of equal length, otherwise a Linear on the flattened
  features (an MLP student's vector onto a CNN teacher's flattened map). The paper's stage-2 KD anneals the
  soft-target weight; here it is the fixed Hinton mix of ``lab.kd.logit.hinton``.
- the guided and hint layers default to the middle hidden layers (:func:`lab.kd.feature.base.middle_layer`:
  an MLP[32] student's fc1, the CNN teacher's conv2), not ResNet stages.
- measured (digits, 200 labels = ``n_train=200``, MLP[32] student, 1000 steps, last-eval test acc, mean±std over
  seeds 0-2; scratch 0.844±0.007, Hinton kd 0.872 on seeds 0-1): one-stage, hint fc1 -> teacher pool,
  hint_weight 10: 0.866±0.006 (beats scratch, about as much as kd alone: the hint adds nothing measurable to KD);
  with hint_weight 100: 0.829. Tuned against plain kd on seeds 10-17 (same student, steps, data): kd 0.869±0.011;
  one-stage to pool with hint_weight 1 / 3 / 10 / 30: 0.868 / 0.862 / 0.861 / 0.840 (to conv2, weight 10: 0.848).
  No hint weight beats kd: the paper's claim of beating KD is a MISS here; the bench uses the best, 1, and the claim
  test asserts it is within one seed-std of kd and beats scratch by more than one (seeds 20-22). The paper's
  two-stage (250 hint steps, then KD): 0.819±0.011 (hint to conv2: 0.801), and on a thin deep MLP[16, 16, 16, 16]
  0.628 vs scratch 0.728 -- at equal steps the hint stage costs more than it gives here, a MISS of the paper's
  thin-deep claim. What the hint stage does do: after it the guided layer's linear CKA to the teacher's pool layer
  is 0.82 vs 0.78 for scratch. The claim tests assert exactly these holds (tests/test_claims_kd_features.py).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from lab.config import check, param
from lab.errors import LabError
from lab.kd.base import SCARCE_LABELS, flat, register
from lab.kd.feature.base import FeatureKD, LayerPairConfig, middle_layer
from lab.losses import forward_kl


def hint_loss(fs: torch.Tensor, ft: torch.Tensor) -> torch.Tensor:
    """FitNets hint: mean squared error between the regressed student feature and the teacher's."""
    if fs.shape != ft.shape:
        raise LabError(f"hint_loss needs equal shapes, got {tuple(fs.shape)} and {tuple(ft.shape)}")
    return F.mse_loss(fs, ft)


class Regressor(nn.Module):
    """FitNets regressor from the student's guided-layer shape to the teacher's hint-layer shape."""

    def __init__(self, s_shape: tuple, t_shape: tuple):
        super().__init__()
        self.s_shape, self.t_shape = tuple(s_shape), tuple(t_shape)
        if len(s_shape) == 3 and len(t_shape) == 3:  # conv maps
            self.mode = "conv"
            self.map = nn.Conv2d(s_shape[0], t_shape[0], 1)
        elif len(s_shape) == 2 and len(t_shape) == 2 and s_shape[0] == t_shape[0]:  # token sequences
            self.mode = "token"
            self.map = nn.Linear(s_shape[1], t_shape[1])
        else:
            self.mode = "flat"
            self.map = nn.Linear(math.prod(s_shape), math.prod(t_shape))

    def forward(self, fs: torch.Tensor) -> torch.Tensor:
        if self.mode == "flat":
            return self.map(fs.reshape(fs.shape[0], -1))
        return self.map(fs)

    def target(self, ft: torch.Tensor, fs: torch.Tensor) -> torch.Tensor:
        """The teacher feature in the regressor's output layout."""
        if self.mode == "flat":
            return ft.reshape(ft.shape[0], -1)
        if self.mode == "conv" and ft.shape[-1] != fs.shape[-1]:
            return F.adaptive_avg_pool2d(ft, fs.shape[-2:])
        return ft


STAGES = ("one", "two")


@dataclass
class FitNetsConfig(LayerPairConfig):
    #: weight of the hint MSE
    hint_weight: float = param(100.0, ge=0)
    #: "one": hint + CE + KD throughout (mdistiller); "two": hint-only pre-training for hint_steps, then KD (paper)
    stages: str = param("one", choices=STAGES)
    #: steps of the hint stage when stages="two" (0: a quarter of the steps)
    hint_steps: int = param(0, ge=0, note="0: steps // 4")

    def validate(self):
        super().validate()
        check(self.hint_steps < self.steps, "hint_steps", self.hint_steps,
              f"an integer in 0..{self.steps - 1} (0: steps // 4)")


@register("fitnets")
class FitNets(FeatureKD):
    Config = FitNetsConfig
    paper = "Romero et al. 2015, FitNets: Hints for Thin Deep Nets"
    mechanism = ("a regressor maps the student's middle layer onto the teacher's (hint MSE) plus Hinton KD; "
                 "one-stage by default, the paper's two-stage (hint pre-training, then KD) with stages='two'")
    kinds_note = "features of the classifiers; use minilm for the language task"
    #: 200 labelled digits; MLP[32] fc1 hinted by the CNN teacher's pooled features; hint_weight 1, the best of
    #: 1 / 3 / 10 / 30 on seeds 10-17 (see the fidelity notes)
    bench_config = {**SCARCE_LABELS, "teacher_layer": "pool", "hint_weight": 1.0}

    def setup(self):
        c = self.config
        self.s_layer, self.t_layer = self.layer_pair(middle_layer)
        s_shape, t_shape = self.feature_shapes([self.s_layer], [self.t_layer])
        self.regressor = self.add_trainable("regressor", Regressor(s_shape[self.s_layer], t_shape[self.t_layer]))
        self.hint_steps = (c.hint_steps or c.steps // 4) if c.stages == "two" else 0

    def hint(self, fs: torch.Tensor, ft: torch.Tensor) -> torch.Tensor:
        return hint_loss(self.regressor(fs), self.regressor.target(ft, fs))

    def compute(self, batch, it):
        c, y = self.config, batch["y"]
        student_logits, fs, teacher_logits, ft = self.forward_features(batch, [self.s_layer], [self.t_layer])
        if it < self.hint_steps:  # stage 1: the hint alone
            h = self.hint(fs[self.s_layer], ft[self.t_layer])
            return c.hint_weight * h, {"hint": h}
        ce = self.ce(student_logits, y)
        kl = forward_kl(flat(student_logits), flat(teacher_logits), temperature=c.temperature)
        loss = c.ce_weight * ce + c.kd_weight * kl
        terms = {"ce": ce, "kd": kl}
        if c.stages == "one":
            h = self.hint(fs[self.s_layer], ft[self.t_layer])
            loss = loss + c.hint_weight * h
            terms["hint"] = h
        return loss, terms


__all__ = ["FitNets", "FitNetsConfig", "Regressor", "hint_loss"]
