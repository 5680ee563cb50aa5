"""Divergences between the categorical distributions given by two sets of logits.

Conventions shared by every function here:

- the last dimension holds the classes (vocabulary); any leading dims (batch, sequence)
  are allowed, and both tensors must have the same shape;
- ``p = softmax(teacher_logits / T)`` is the teacher, ``q = softmax(student_logits / T)``
  the student; ``KL(a || b) = sum_c a_c (log a_c - log b_c)``;
- ``reduction``: ``"none"`` returns one value per row (the leading shape), ``"sum"``
  sums the rows, ``"batchmean"`` (default) is ``"sum"`` divided by the number of rows
  (every leading dim counts: batch x sequence). Classes are always summed, never
  averaged (``F.kl_div(reduction="mean")`` also divides by the number of classes);
- nothing is detached: gradients flow into both arguments (detach the teacher yourself);
- everything goes through ``log_softmax`` / ``logaddexp`` so logits spread over 1e4 give
  finite values and gradients; half precision inputs are computed in float32.

Note ``torch.nn.functional.kl_div(log q, p)`` is KL(p || q), i.e. :func:`forward_kl`.
"""
from __future__ import annotations

import math

import torch

from lab.errors import LabError

REDUCTIONS = ("batchmean", "sum", "none")


# ----------------------------------------------------------------------------- checks


def _check(student_logits, teacher_logits, temperature, reduction) -> None:
    for name, t in (("student_logits", student_logits), ("teacher_logits", teacher_logits)):
        if not isinstance(t, torch.Tensor):
            raise LabError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        if t.ndim < 1 or t.shape[-1] < 1:
            raise LabError(f"{name} must have a class dimension (last dim >= 1), got shape {tuple(t.shape)}")
    if student_logits.shape != teacher_logits.shape:
        raise LabError(f"student_logits shape {tuple(student_logits.shape)} must equal "
                       f"teacher_logits shape {tuple(teacher_logits.shape)}")
    if reduction not in REDUCTIONS:
        raise LabError(f"unknown reduction {reduction!r}; allowed: {', '.join(REDUCTIONS)}")
    try:
        t = float(temperature)
    except (TypeError, ValueError):
        raise LabError(f"temperature must be a number > 0, got {temperature!r}") from None
    if not (math.isfinite(t) and t > 0):
        raise LabError(f"temperature must be a finite number > 0, got {temperature!r}")


def _check_unit(name: str, value) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise LabError(f"{name} must be a number in [0, 1], got {value!r}") from None
    if not (0.0 <= v <= 1.0):
        raise LabError(f"{name} must be in [0, 1], got {value!r}")
    return v


def _log_probs(student_logits, teacher_logits, temperature):
    """(log q, log p) at temperature T, in float32 or wider."""
    dtype = torch.promote_types(torch.promote_types(student_logits.dtype, teacher_logits.dtype), torch.float32)
    t = float(temperature)
    log_q = torch.log_softmax(student_logits.to(dtype) / t, dim=-1)
    log_p = torch.log_softmax(teacher_logits.to(dtype) / t, dim=-1)
    return log_q, log_p


def _reduce(rows: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "none":
        return rows
    if reduction == "sum":
        return rows.sum()
    return rows.sum() / max(rows.numel(), 1)


def _kl_rows(log_a: torch.Tensor, log_b: torch.Tensor) -> torch.Tensor:
    """KL(a || b) per row from log-probabilities (0 * anything = 0 where a underflows)."""
    return (log_a.exp() * (log_a - log_b)).sum(-1)


def _log_mix_minus(log_self, log_other, w_self: float) -> torch.Tensor:
    """log(w_self * self + (1 - w_self) * other) - log(self), stably.

    Computed as logaddexp(log w_self, log(1 - w_self) + log other - log self), so no large
    logs are subtracted after mixing (needed for the beta -> 0/1 limits of the JSD).
    """
    like = dict(dtype=log_self.dtype, device=log_self.device)
    lw = torch.tensor(math.log(w_self) if w_self > 0 else -math.inf, **like)
    l1w = torch.tensor(math.log1p(-w_self) if w_self < 1 else -math.inf, **like)
    return torch.logaddexp(lw, l1w + (log_other - log_self))


# ----------------------------------------------------------------------------- divergences


def forward_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 1.0,
               reduction: str = "batchmean") -> torch.Tensor:
    """Hinton's KD loss: ``T^2 * KL(p || q)``, p = softmax(z_teacher/T), q = softmax(z_student/T).

    Forward KL (teacher first, mean-seeking / mode-covering). The T^2 factor keeps the
    gradient scale independent of T (Hinton et al. 2015). Summed over classes; reduction
    as in the module docstring. Equals ``T**2 * F.kl_div(log q, p, reduction=...)``.
    """
    _check(student_logits, teacher_logits, temperature, reduction)
    log_q, log_p = _log_probs(student_logits, teacher_logits, temperature)
    return _reduce(float(temperature) ** 2 * _kl_rows(log_p, log_q), reduction)


def reverse_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 1.0,
               reduction: str = "batchmean") -> torch.Tensor:
    """Reverse KL: ``T^2 * KL(q || p)``, q = softmax(z_student/T) (student first), p the teacher.

    Mode-seeking. Same T^2 factor and reduction as :func:`forward_kl`.
    """
    _check(student_logits, teacher_logits, temperature, reduction)
    log_q, log_p = _log_probs(student_logits, teacher_logits, temperature)
    return _reduce(float(temperature) ** 2 * _kl_rows(log_q, log_p), reduction)


def generalized_jsd(student_logits: torch.Tensor, teacher_logits: torch.Tensor, beta: float = 0.5,
                    temperature: float = 1.0, reduction: str = "batchmean",
                    normalized: bool = True) -> torch.Tensor:
    """Generalised Jensen-Shannon divergence of GKD (Agarwal et al.), as in TRL's GKDTrainer.

    p = softmax(z_teacher/T), q = softmax(z_student/T), mixture ``M = beta*p + (1-beta)*q``
    (not detached), and TRL's value ``JSD_beta = beta*KL(p || M) + (1-beta)*KL(q || M)``.
    TRL applies the temperature to the logits but no T^2 factor; neither do we.

    TRL special-cases ``beta = 0`` to forward KL(p || q) and ``beta = 1`` to reverse
    KL(q || p), but ``JSD_beta`` itself tends to 0 at both ends (JSD_beta ~ beta*KL(p||q)
    as beta -> 0 and ~ (1-beta)*KL(q||p) as beta -> 1), so TRL's loss jumps there.

    - ``normalized=True`` (default) returns ``JSD_beta / (beta*(1-beta))``, which tends to
      KL(p || q) as beta -> 0 and to KL(q || p) as beta -> 1, and is exactly those at
      beta = 0 and 1: continuous on [0, 1]. At beta = 0.5 it is 4x TRL's value.
    - ``normalized=False`` returns TRL's values exactly (JSD_beta inside (0, 1), the
      plain KLs at the end points).

    The endpoint KLs are unscaled, i.e. ``forward_kl(..., T) / T**2`` and
    ``reverse_kl(..., T) / T**2``. Summed over classes; reduction as in the module docstring.
    """
    _check(student_logits, teacher_logits, temperature, reduction)
    beta = _check_unit("beta", beta)
    log_q, log_p = _log_probs(student_logits, teacher_logits, temperature)
    if beta == 0.0:
        rows = _kl_rows(log_p, log_q)
    elif beta == 1.0:
        rows = _kl_rows(log_q, log_p)
    else:
        # KL(a || M) = -sum a * (log M - log a), with log M - log a computed without cancellation
        kl_p_m = -(log_p.exp() * _log_mix_minus(log_p, log_q, beta)).sum(-1)
        kl_q_m = -(log_q.exp() * _log_mix_minus(log_q, log_p, 1.0 - beta)).sum(-1)
        if normalized:
            rows = kl_p_m / (1.0 - beta) + kl_q_m / beta
        else:
            rows = beta * kl_p_m + (1.0 - beta) * kl_q_m
    return _reduce(rows, reduction)


def skew_forward_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor, alpha: float = 0.1,
                    temperature: float = 1.0, reduction: str = "batchmean") -> torch.Tensor:
    """DistiLLM's skew KL: ``T^2 * KL(p || alpha*p + (1-alpha)*q)``.

    p the teacher, q the student, both at temperature T; gradients flow through the
    student's part of the mixture. alpha = 0 is :func:`forward_kl` (same T^2 factor), alpha = 1
    gives 0. Bounded by T^2 * log(1/alpha) for alpha > 0. Reduction as in the module docstring.
    """
    _check(student_logits, teacher_logits, temperature, reduction)
    alpha = _check_unit("alpha", alpha)
    log_q, log_p = _log_probs(student_logits, teacher_logits, temperature)
    rows = -(log_p.exp() * _log_mix_minus(log_p, log_q, alpha)).sum(-1)
    return _reduce(float(temperature) ** 2 * rows, reduction)


def skew_reverse_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor, alpha: float = 0.1,
                    temperature: float = 1.0, reduction: str = "batchmean") -> torch.Tensor:
    """DistiLLM's skew reverse KL: ``T^2 * KL(q || alpha*q + (1-alpha)*p)``.

    q the student, p the teacher, both at temperature T. alpha = 0 is :func:`reverse_kl`,
    alpha = 1 gives 0. Reduction as in the module docstring.
    """
    _check(student_logits, teacher_logits, temperature, reduction)
    alpha = _check_unit("alpha", alpha)
    log_q, log_p = _log_probs(student_logits, teacher_logits, temperature)
    rows = -(log_q.exp() * _log_mix_minus(log_q, log_p, alpha)).sum(-1)
    return _reduce(float(temperature) ** 2 * rows, reduction)


def tvd(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 1.0,
        reduction: str = "batchmean") -> torch.Tensor:
    """Total variation distance ``0.5 * sum_c |p_c - q_c|`` at temperature T, no T^2 factor.

    Symmetric, per row in [0, 1]; 1 - TVD is the speculative-decoding acceptance rate.
    Reduction as in the module docstring.
    """
    _check(student_logits, teacher_logits, temperature, reduction)
    log_q, log_p = _log_probs(student_logits, teacher_logits, temperature)
    return _reduce(0.5 * (log_p.exp() - log_q.exp()).abs().sum(-1), reduction)


#: name -> function, for explorers and method configs (each takes student, teacher logits first).
DIVERGENCES = {
    "forward_kl": forward_kl,
    "reverse_kl": reverse_kl,
    "generalized_jsd": generalized_jsd,
    "skew_forward_kl": skew_forward_kl,
    "skew_reverse_kl": skew_reverse_kl,
    "tvd": tvd,
}
