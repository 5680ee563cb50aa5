"""FTD: flat trajectory distillation (minimising the accumulated trajectory error).

Paper: Du, Jiang, Tan, Zhou & Li, "Minimizing the Accumulated Trajectory Error to Improve Dataset Distillation"
(CVPR 2023); official code github.com/AngusDujw/FTD-distillation (``buffer/buffer_FTD.py``,
``distill/distill_FTD.py``).

Mechanism as implemented: MTT's loss and loop unchanged (:mod:`lab.dd.mtt`), with two changes: (1) the experts
are trained with a sharpness-aware step (GSAM: the gradient at the worst-case perturbation w + rho g/||g||, minus
alpha times the component of the plain gradient orthogonal to it; :mod:`lab.dd.experts`, kind ``sam``), so their
trajectories are flat and a student that drifts off them (the accumulated trajectory error of evaluation, where
nothing re-anchors it to the expert) loses less; (2) an exponential moving average of the synthetic images,
updated after every image step, is the distilled set that is evaluated and saved (timm ``ModelEmaV2`` in the
official code).

Fidelity notes:
- GSAM is non-adaptive here (e = rho g/||g||) with rho 0.05 and alpha 0.4 (the official buffer script's alpha
  default; its rho 0.01 is for normalised CIFAR pixels); the experts are as small as MTT's (6 of 6 epochs).
- EMA decay 0.99 (the paper's 0.999-0.9999 are for thousands of iterations; here there are a few hundred).
- The accumulated trajectory error is measured as in the paper's figure: a net trained on the distilled set from
  the expert's initialisation, against the expert at the same epoch (:func:`lab.dd.trajectory.trajectory_error`).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from lab.config import param
from lab.dd.base import register
from lab.dd.mtt import MTT, MTTConfig


@dataclass
class FTDConfig(MTTConfig):
    #: decay of the moving average of the images (the evaluated set)
    ema_decay: float = param(0.99, ge=0, lt=1)


@register("ftd")
class FTD(MTT):
    Config = FTDConfig
    mechanism = "MTT's trajectory matching against flat (sharpness-aware) experts, with an EMA of the images"
    paper = "Du et al., Minimizing the Accumulated Trajectory Error to Improve Dataset Distillation (CVPR 2023)"
    expert_kind = "sam"

    def after_image_step(self) -> None:
        with torch.no_grad():
            d = self.config.ema_decay
            self.synset.ema.mul_(d).add_(self.synset.images.detach(), alpha=1 - d)

    def images(self) -> torch.Tensor:
        return self.synset.ema.detach()
