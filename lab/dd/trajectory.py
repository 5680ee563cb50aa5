"""The accumulated trajectory error (Du et al., CVPR 2023, "Minimizing the Accumulated Trajectory Error to
Improve Dataset Distillation"; github.com/AngusDujw/FTD-distillation, the README figure).

During trajectory matching the student is re-anchored to the expert at every iteration (it starts at theta*_t);
at evaluation a net trained on the distilled set runs the whole way alone, so its deviation from the expert
accumulates. Measured as in the paper's figure: a net started at the expert's initialisation theta*_0 is trained
on the distilled set with the learned step size (plain SGD, N/M synthetic steps per expert epoch, N = syn_steps,
M = expert_epochs, as in distillation) and compared after every expert epoch k with the expert theta*_k: the test
loss gap L_test(theta_k) - L_test(theta*_k) and the parameter distance ||theta_k - theta*_k||, also normalised
by the expert's own displacement ||theta*_k - theta*_0||.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from lab.dd.base import augment, digits_data, forward_flat, new_net


@torch.no_grad()
def _test_loss(net, theta, x, y) -> tuple[float, float]:
    z = forward_flat(net, theta, x)
    return float(F.cross_entropy(z, y)), float((z.argmax(-1) == y).float().mean())


def trajectory_error(images: torch.Tensor, labels: torch.Tensor, lr: float, experts: torch.Tensor,
                     expert_ids=None, syn_steps: int = 20, expert_epochs: int = 2, epochs: int | None = None,
                     width: int = 32, augment_mode: str = "dsa", seed: int = 0) -> list[dict]:
    """Rows ``{expert, epoch, step, loss_gap, acc_gap, dist, rel_dist, student_loss, expert_loss}`` for each
    expert in ``expert_ids`` (default all) and each expert epoch 0..``epochs`` (default: all recorded)."""
    dev = images.device
    _, _, xte, yte = digits_data(dev)
    net = new_net(width, 0, dev)
    n_epochs = experts.shape[1] - 1 if epochs is None else min(int(epochs), experts.shape[1] - 1)
    per_epoch = max(1, round(syn_steps / expert_epochs))
    ids = range(len(experts)) if expert_ids is None else expert_ids
    x, y = images.detach(), labels.detach()
    rows = []
    for e in ids:
        gen = torch.Generator().manual_seed(int(seed) * 7 + int(e))
        theta = experts[e, 0].clone()
        for k in range(n_epochs + 1):
            if k > 0:
                for _ in range(per_epoch):
                    th = theta.clone().requires_grad_(True)
                    loss = F.cross_entropy(forward_flat(net, th, augment(x, gen, augment_mode, siamese=False)), y)
                    g = torch.autograd.grad(loss, th)[0]
                    theta = (th - lr * g).detach()
            ls, accs = _test_loss(net, theta, xte, yte)
            le, acce = _test_loss(net, experts[e, k], xte, yte)
            dist = float((theta - experts[e, k]).norm())
            disp = float((experts[e, k] - experts[e, 0]).norm())
            rows.append({"expert": int(e), "epoch": k, "step": k * per_epoch, "loss_gap": ls - le,
                         "acc_gap": accs - acce, "dist": dist, "rel_dist": dist / disp if disp > 0 else 0.0,
                         "student_loss": ls, "expert_loss": le})
    return rows


def accumulated_error(rows: list[dict], key: str = "loss_gap") -> float:
    """The error summed over the epochs after the start and averaged over experts (the area under the curve)."""
    per = {}
    for r in rows:
        if r["epoch"] > 0:
            per.setdefault(r["expert"], 0.0)
            per[r["expert"]] += r[key]
    return sum(per.values()) / max(1, len(per))


__all__ = ["trajectory_error", "accumulated_error"]
