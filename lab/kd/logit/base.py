"""What the logit-distillation methods share: ``ce_weight * CE(y) + kd_weight * D(student, teacher)`` on the logits.

:class:`DivergenceKD` is the form of ``kd`` (Hinton), ``rkl``, ``jsd``, ``skew_kl`` and ``tvd``: a subclass only
defines :meth:`DivergenceKD.divergence` on (rows, classes) logits (a function of :mod:`lab.losses`) and, if its
divergence has parameters, a :class:`~lab.kd.base.KDConfig` subclass declaring them. Their benchmark is
``lab.kd.base.SCARCE_LABELS`` (200 labelled digits), where Hinton KD beats training from scratch.
"""
from __future__ import annotations

import torch

from lab.kd.base import SCARCE_LABELS, KDMethod, flat


class DivergenceKD(KDMethod):
    """CE + kd_weight * divergence(student, teacher) at temperature T (term named after the method); subclasses
    define :meth:`divergence`."""

    bench_config = SCARCE_LABELS

    def divergence(self, student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def loss(self, student_logits, teacher_logits, y, batch, it):
        c = self.config
        ce = self.ce(student_logits, y)
        d = self.divergence(flat(student_logits), flat(teacher_logits))
        return c.ce_weight * ce + c.kd_weight * d, {"ce": ce, self.name: d}


__all__ = ["DivergenceKD"]
