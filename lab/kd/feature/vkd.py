"""V_kD: knowledge distillation through an orthogonal projection of the student's embedding (``vkd``).

Paper: Miles et al., "V_kD: Improving Knowledge Distillation using Orthogonal Projections" (CVPR 2024). Student
embedding -> ``orthogonal(Linear(d_s, d_t, bias=False))``; teacher embedding -> parameter-free ``layer_norm``;
smooth-L1 between them (``feat_weight``, alpha) plus a KD head (``kd_weight``, gamma) and CE.

Fidelity notes:
- the paper distils ViT token features with a task-specific normalisation; here the embedding is the
  penultimate layer (CNN: the pooled vector; ViT: mean over tokens; :class:`lab.kd.feature.base.EmbedMethod`),
  normalised by ``layer_norm`` without affine parameters. The orthogonal projector is the semi-orthogonal
  ``torch.nn.utils.parametrizations.orthogonal`` weight of a ``Linear(d_s, d_t)`` (isometric when d_s <= d_t).
- measured (digits, 200 labels = ``n_train=200``, MLP[32] student, 1000 steps, last-eval test acc, mean±std over
  seeds 0-2; scratch 0.844±0.007, Hinton kd 0.872 on seeds 0-1): vkd 0.863±0.014 (beats scratch).
- against plain kd (issue 16; same student, steps, data, seeds), tuned on seeds 10-17: kd 0.869±0.011, scratch
  0.847±0.007; vkd with feat_weight 0 (its CE + KD head alone) / 0.3 / 1 (default) / 3 / 10: 0.869 / 0.870 / 0.868
  / 0.868 / 0.865. The orthogonal-projection feature term adds nothing measurable to KD here: the paper's claim of
  beating KD is a MISS at toy scale. The claim test asserts what holds: vkd within one seed-std of kd and above
  scratch by more than one (seeds 20-22, tests/test_claims_kd_features.py).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from lab.config import param
from lab.kd.base import SCARCE_LABELS, flat, register
from lab.kd.feature.base import EmbedMethod, LayerPairConfig, embedding
from lab.losses import forward_kl


def vkd_loss(projected: torch.Tensor, ft: torch.Tensor) -> torch.Tensor:
    """V_kD feature term: smooth-L1 between the projected student embedding and the parameter-free
    layer-normalised teacher embedding."""
    return F.smooth_l1_loss(projected, F.layer_norm(ft, ft.shape[-1:]))


@dataclass
class VKDConfig(LayerPairConfig):
    ce_weight: float = 1.0
    #: gamma: weight of the KD head (T^2 KL)
    kd_weight: float = 1.0
    #: alpha: weight of the smooth-L1 feature term
    feat_weight: float = param(1.0, ge=0)


@register("vkd")
class VKD(EmbedMethod):
    Config = VKDConfig
    paper = "Miles et al. 2024, V_kD: Improving Knowledge Distillation using Orthogonal Projections"
    mechanism = ("orthogonal projection of the student embedding onto the layer-normalised teacher embedding "
                 "(smooth-L1) plus a KD head")
    bench_config = SCARCE_LABELS

    def setup(self):
        super().setup()
        s_shape, t_shape = self.feature_shapes([self.s_layer], [self.t_layer])
        d_s = embedding(torch.zeros(1, *s_shape[self.s_layer])).shape[1]
        d_t = embedding(torch.zeros(1, *t_shape[self.t_layer])).shape[1]
        proj = nn.utils.parametrizations.orthogonal(nn.Linear(d_s, d_t, bias=False))
        self.projector = self.add_trainable("projector", proj)

    def compute(self, batch, it):
        c, y = self.config, batch["y"]
        student_logits, teacher_logits, es, et = self.embeddings(batch)
        feat = vkd_loss(self.projector(es), et)
        ce = self.ce(student_logits, y)
        kl = forward_kl(flat(student_logits), flat(teacher_logits), temperature=c.temperature)
        return c.ce_weight * ce + c.kd_weight * kl + c.feat_weight * feat, {"ce": ce, "kd": kl, "feat": feat}


__all__ = ["VKD", "VKDConfig", "vkd_loss"]
