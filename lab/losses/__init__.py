"""Pure loss functions shared by methods. Each takes per-sample squared distances or tensors."""
from __future__ import annotations

import torch


def sq_dist(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-sample squared Euclidean distance, summed over every non-batch dimension."""
    return ((a - b) ** 2).flatten(1).sum(1)


def pseudo_huber(d2: torch.Tensor, c: float) -> torch.Tensor:
    """sqrt(d^2 + c^2) - c per sample (improved consistency training, rectified-flow++); c = 0 gives |d|.

    Zero at d = 0, about d^2 / (2c) for |d| << c and |d| for |d| >> c.
    """
    return torch.sqrt(d2 + c * c) - c


def per_sample(fn, x: torch.Tensor) -> torch.Tensor:
    """``fn`` over every non-batch dimension of x, shaped (n, 1, ..., 1) to broadcast against x."""
    return fn(x.flatten(1), dim=1).reshape(x.shape[0], *([1] * (x.ndim - 1)))


def mean_abs(x: torch.Tensor) -> torch.Tensor:
    """Per-sample mean |x| over every non-batch dimension, shaped to broadcast against x (DMD's normaliser)."""
    return per_sample(torch.mean, x.abs())


def norms(x: torch.Tensor) -> torch.Tensor:
    """Per-sample Euclidean norm over every non-batch dimension: (n,)."""
    return x.flatten(1).norm(dim=1)


# logit divergences for knowledge distillation (issue 5): student logits first, teacher second
from lab.losses.logits import (  # noqa: E402
    DIVERGENCES, forward_kl, generalized_jsd, reverse_kl, skew_forward_kl, skew_reverse_kl, tvd,
)
