"""DM: dataset condensation with distribution matching.

Paper: Zhao & Bilen, "Dataset Condensation with Distribution Matching" (WACV 2023); official code
github.com/VICO-UoE/DatasetCondensation (``main_DM.py``).

Mechanism as implemented: every iteration draws a fresh randomly initialised ConvNet that is never trained (its
parameters are frozen); only its embedding psi (the flattened features before the classifier) is used. For each
class c, the real images of the class and the synthetic ones go through the same DSA draw (one shared seed per
class); the loss is sum_c || mean_i psi(A(real_c,i)) - mean_j psi(A(syn_c,j)) ||^2 (squared L2 over features,
summed over classes, real side detached); one SGD step on the pixels (lr_img 1, momentum 0.5). The images start
from random real images of their class.

Fidelity notes:
- Iterations: a few hundred instead of 20,000 (the loss is cheap, the signal at 8x8 saturates early).
- The real batch is the whole class (about 144 images; batch_real 256 exceeds the class size).
- DSA softened to 8x8 (one affine per class batch: scale 1.2, rotation 15 degrees, one-pixel shift; no crop,
  cutout or colour); ConvNet width 32 at 8x8, 2 blocks (see :class:`lab.dd.base.ConvNet`).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from lab.config import param
from lab.dd.base import N_CLASSES, DDConfig, DDMethod, augment, new_net, register


@dataclass
class DMConfig(DDConfig):
    steps: int = param(300, ge=1)
    lr_img: float = param(1.0, gt=0)


@register("dm")
class DM(DDMethod):
    Config = DMConfig
    mechanism = "match per-class mean embeddings of real and synthetic images under fresh random nets"
    paper = "Zhao & Bilen, Dataset Condensation with Distribution Matching (WACV 2023)"

    def outer_step(self, it: int):
        c = self.config
        net = new_net(c.width, self.seed_draw(), self.device)
        for p in net.parameters():
            p.requires_grad_(False)
        net.train()
        loss = 0.0
        for k in range(N_CLASSES):
            aseed = self.seed_draw()
            xr = augment(self.real_class(k, c.batch_real or None), torch.Generator().manual_seed(aseed), c.augment)
            xs = augment(self.syn_class(k), torch.Generator().manual_seed(aseed), c.augment)
            with torch.no_grad():
                mr = net.embed(xr).mean(0)
            ms = net.embed(xs).mean(0)
            loss = loss + ((mr - ms) ** 2).sum()
        self.image_step(loss)
        return loss, {}
