"""MTT: dataset distillation by matching training trajectories.

Paper: Cazenavette, Wang, Torralba, Efros & Zhu, "Dataset Distillation by Matching Training Trajectories"
(CVPR 2022); official code github.com/GeorgeCazenavette/mtt-distillation (``buffer.py``, ``distill.py``).

Mechanism as implemented: expert trajectories of real-data training are recorded once with plain SGD
(:mod:`lab.dd.experts`, kind ``sgd``: parameters at init and after every epoch). Each iteration picks an expert
and a start epoch t ~ U{0, ..., max_start_epoch - 1}, sets theta_0 = theta*_t (one flat vector, run through the
ConvNet functionally), and takes N = ``syn_steps`` SGD steps on minibatches of the synthetic set (``batch_syn``,
drawn from a cycling random permutation, DSA on each) with a learnable step size alpha, keeping the graph:
theta_{n+1} = theta_n - alpha grad CE(theta_n). The loss is the normalised endpoint distance
||theta_N - theta*_{t+M}||^2 / ||theta*_t - theta*_{t+M}||^2 with M = ``expert_epochs``; one backward, then SGD
with momentum 0.5 on the pixels (``lr_img``) and on alpha (``lr_lr``). alpha starts at the experts' lr and is the
lr of the evaluation nets.

Fidelity notes:
- Scale: 6 experts of 6 epochs at batch 32 (about 45 real steps per epoch; at MTT's batch 256 an 8x8-digits epoch
  would be 6 steps), N = 20 synthetic steps for M = 2 expert epochs (about 90 real steps), max_start_epoch 4,
  150-200 iterations instead of 5,000; no ZCA (CIFAR only in the paper).
- alpha is clamped to at least 1e-4 after each update (the official code lets it go negative, a known
  instability, issues #6 and #16); lr_img 100, the best of 10, 100 and 1000 at ipc 10 here (the pixel gradients
  of the normalised loss are tiny, hence the paper's lr_img of 100-1000).
- Measured here (bench/dd.py): at 1 image per class MTT and FTD beat random real images by about 20 points; at
  10 per class they are within the seed spread of random real images (0.934 and 0.931 against 0.923 +- 0.021).
- Reported accuracy is the final value, never the best over evaluation points (the official ``best_acc``).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from lab.config import check, param
from lab.dd.base import DDConfig, DDMethod, augment, forward_flat, new_net, register
from lab.dd.experts import load_experts


@dataclass
class MTTConfig(DDConfig):
    steps: int = param(200, ge=1)
    lr_img: float = param(100.0, gt=0)
    #: synthetic steps N unrolled per iteration
    syn_steps: int = param(20, ge=1, le=200)
    #: expert epochs M the N steps must cover
    expert_epochs: int = param(2, ge=1)
    #: the start epoch is drawn from 0 .. max_start_epoch - 1
    max_start_epoch: int = param(4, ge=1)
    #: synthetic images per unrolled step (0: the whole set)
    batch_syn: int = param(0, ge=0, note="0: the whole synthetic set")
    #: learning rate of the learnable step size alpha (SGD, momentum 0.5)
    lr_lr: float = param(1e-5, ge=0)


@register("mtt")
class MTT(DDMethod):
    Config = MTTConfig
    mechanism = ("unroll N steps on the synthetic set from an expert's epoch t; pull the end point to the expert's "
                 "epoch t+M (normalised parameter distance); learnable step size")
    paper = "Cazenavette et al., Dataset Distillation by Matching Training Trajectories (CVPR 2022)"
    tiny = {"steps": 1, "ipc": 1, "eval_steps": 5, "syn_steps": 2, "max_start_epoch": 1, "expert_epochs": 1}
    #: which expert trajectories to match (lab.dd.experts kinds)
    expert_kind = "sgd"

    def setup(self) -> None:
        c = self.config
        self.experts, self.expert_card = load_experts(self.expert_kind, self.device)
        n_epochs = self.experts.shape[1] - 1
        check(c.max_start_epoch + c.expert_epochs <= n_epochs, "max_start_epoch + expert_epochs",
              c.max_start_epoch + c.expert_epochs, f"at most {n_epochs} (the recorded expert epochs)")
        check(self.experts.shape[2] == sum(p.numel() for p in new_net(c.width, 0).parameters()), "width", c.width,
              f"{self.expert_card['recipe']['width']} (the width of the recorded experts)")
        self.net = new_net(c.width, 0, self.device)
        for p in self.net.parameters():
            p.requires_grad_(False)
        self.optimizers["lr"] = torch.optim.SGD([self.synset.lr], lr=c.lr_lr, momentum=0.5)
        self._perm: list[int] = []

    def initial_lr(self) -> float:
        from lab.dd.experts import experts_path  # the experts' lr is alpha's start
        from lab.io import read_json  # lazy, with the line above

        path = experts_path(self.expert_kind).with_suffix(".json")
        return float(read_json(path)["recipe"]["lr"]) if path.exists() else 0.01

    def eval_lr(self) -> float:
        return float(self.synset.lr.detach())

    def _batch_indices(self) -> torch.Tensor:
        n = len(self.synset.images)
        b = self.config.batch_syn or n
        if len(self._perm) < b:
            self._perm += torch.randperm(n, generator=self.rng).tolist()
        idx, self._perm = self._perm[:b], self._perm[b:]
        return torch.tensor(idx, device=self.device)

    def unroll(self, start: torch.Tensor, images: torch.Tensor, steps: int, lr, gen: torch.Generator,
               create_graph: bool = True, record: bool = False):
        """``steps`` SGD steps on the synthetic set from the flat parameters ``start``; returns the end point (and the
        points after every step when ``record``)."""
        theta, points = start, []
        labels = self.labels()
        for _ in range(steps):
            idx = self._batch_indices()
            x = augment(images[idx], gen, self.config.augment, siamese=False)
            loss = F.cross_entropy(forward_flat(self.net, theta, x), labels[idx])
            g = torch.autograd.grad(loss, theta, create_graph=create_graph)[0]
            theta = theta - lr * g
            if not create_graph:
                theta = theta.detach().requires_grad_(True)
            if record:
                points.append(theta.detach())
        return (theta, points) if record else theta

    def outer_step(self, it: int):
        c = self.config
        e = int(torch.randint(0, len(self.experts), (1,), generator=self.rng))
        t = int(torch.randint(0, c.max_start_epoch, (1,), generator=self.rng))
        start, target = self.experts[e, t], self.experts[e, t + c.expert_epochs]
        theta0 = start.clone().requires_grad_(True)
        gen = torch.Generator().manual_seed(self.seed_draw())
        end = self.unroll(theta0, self.synset.images, c.syn_steps, self.synset.lr, gen)
        loss = ((end - target) ** 2).sum() / ((start - target) ** 2).sum()
        self.image_step(loss, extra=("lr",))
        with torch.no_grad():
            self.synset.lr.clamp_(min=1e-4)
        return loss, {"lr": float(self.synset.lr.detach()), "start_epoch": t}

    def extra_state(self) -> dict:
        return {**super().extra_state(), "perm": list(self._perm)}

    def load_extra_state(self, sd: dict) -> None:
        super().load_extra_state(sd)
        self._perm = [int(i) for i in sd.get("perm", [])]
