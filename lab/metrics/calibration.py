"""Calibration numbers for classifiers and their teachers (issue 5, section 7; metrics, used by ``lab.kd``
and by the probes, which re-export them as ``lab.probes.calibration``). They return numbers and
DataFrames, never figures (figures: ``lab.viz.calibration``).

Inputs are logits or probabilities of shape (n, K) (torch tensors on any device, or numpy arrays) and
integer labels of shape (n,). Everything is computed in float64 on the CPU; entropies are in nats.

- ``ece``: expected calibration error with ``n_bins`` equal-width confidence bins over [0, 1]
  (a bin is (lower, upper]; the first also holds 0): sum over bins of count/n * |accuracy - confidence|,
  where confidence is the top-1 probability and accuracy whether the top-1 class equals the label.
- ``reliability``: the per-bin table behind ``ece`` (empty bins kept, with NaN confidence and accuracy).
- ``agreement``: fraction of rows where the student's and the teacher's top-1 classes agree.
- ``entropy_per_class``: mean entropy of the teacher's softmax at a temperature, grouped by true label.
- ``soft_labels`` / ``temperature_sweep``: the teacher's softened distribution softmax(logits / T) and, per T,
  mean entropy, mean top-1 probability and the mean mass on the non-argmax classes ("dark knowledge").
"""
from __future__ import annotations

import math
from typing import Iterable

import numpy as np
import pandas as pd
import torch

from lab.errors import LabError

__all__ = ["ece", "reliability", "agreement", "entropy_per_class", "soft_labels", "temperature_sweep"]


def _as_2d(x, name: str) -> torch.Tensor:
    t = x.detach().cpu() if torch.is_tensor(x) else torch.as_tensor(np.asarray(x))
    if t.dim() != 2 or t.shape[0] < 1 or t.shape[1] < 2:
        raise LabError(f"{name} has shape {tuple(t.shape)}; allowed: a 2D array (n, K) with n >= 1 and K >= 2")
    if not t.is_floating_point():
        t = t.to(torch.float64)
    t = t.to(torch.float64)
    if not torch.isfinite(t).all():
        raise LabError(f"{name} contains NaN or inf; allowed: finite values")
    return t


def _labels(labels, n: int, k: int) -> torch.Tensor:
    y = labels.detach().cpu() if torch.is_tensor(labels) else torch.as_tensor(np.asarray(labels))
    if y.dim() != 1 or y.shape[0] != n:
        raise LabError(f"labels have shape {tuple(y.shape)}; allowed: a 1D array of length n = {n}")
    if y.is_floating_point():
        if not torch.equal(y, y.round()):
            raise LabError("labels contain non-integer values; allowed: integer class indices 0..K-1")
    y = y.long()
    if n and (int(y.min()) < 0 or int(y.max()) >= k):
        raise LabError(f"labels range over [{int(y.min())}, {int(y.max())}]; allowed: class indices 0..{k - 1}")
    return y


def _probs(x, logits: bool, name: str = "probs_or_logits") -> torch.Tensor:
    t = _as_2d(x, name)
    if logits:
        return torch.softmax(t, dim=1)
    if (t < -1e-6).any() or (t > 1 + 1e-6).any() or not torch.allclose(t.sum(1), torch.ones(t.shape[0], dtype=t.dtype),
                                                                         atol=1e-4):
        raise LabError(f"{name} are not probabilities (rows in [0, 1] summing to 1) with logits=False; "
                       "allowed: probabilities, or pass logits=True for logits")
    return t.clamp(0, 1)


def _check_temperature(temperature) -> float:
    try:
        value = float(temperature)
    except (TypeError, ValueError):
        raise LabError(f"temperature {temperature!r} is not a number; allowed: a finite number > 0") from None
    if not math.isfinite(value) or value <= 0:
        raise LabError(f"temperature {temperature!r} is invalid; allowed: a finite number > 0")
    return value


def _entropy(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    logp = torch.log_softmax(logits / temperature, dim=1)
    return -(logp.exp() * logp).sum(1)


def reliability(probs_or_logits, labels, n_bins: int = 15, logits: bool = True) -> pd.DataFrame:
    """Per-bin table (bin, lower, upper, confidence, accuracy, count) over ``n_bins`` equal-width bins of the
    top-1 confidence. ``confidence`` and ``accuracy`` are bin means (NaN for an empty bin); counts sum to n."""
    if isinstance(n_bins, bool) or not isinstance(n_bins, (int, np.integer)) or n_bins < 1:
        raise LabError(f"n_bins {n_bins!r} is invalid; allowed: an integer >= 1")
    p = _probs(probs_or_logits, logits)
    y = _labels(labels, p.shape[0], p.shape[1])
    conf, pred = p.max(dim=1)
    correct = (pred == y).to(torch.float64)
    # (lower, upper] bins; confidence 0 (impossible for a distribution) falls into the first bin.
    idx = (torch.ceil(conf * n_bins).long() - 1).clamp(0, n_bins - 1)
    count = torch.bincount(idx, minlength=n_bins).to(torch.float64)
    sum_conf = torch.zeros(n_bins, dtype=torch.float64).index_add_(0, idx, conf)
    sum_acc = torch.zeros(n_bins, dtype=torch.float64).index_add_(0, idx, correct)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = (sum_conf / count).numpy()
        mean_acc = (sum_acc / count).numpy()
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    return pd.DataFrame({"bin": np.arange(n_bins), "lower": edges[:-1], "upper": edges[1:],
                         "confidence": mean_conf, "accuracy": mean_acc, "count": count.numpy().astype(np.int64)})


def ece(probs_or_logits, labels, n_bins: int = 15, logits: bool = True) -> float:
    """Expected calibration error: sum_b count_b / n * |accuracy_b - confidence_b| (equal-width bins)."""
    df = reliability(probs_or_logits, labels, n_bins=n_bins, logits=logits)
    full = df[df["count"] > 0]
    return float((full["count"] * (full.accuracy - full.confidence).abs()).sum() / df["count"].sum())


def agreement(student_logits, teacher_logits) -> float:
    """Top-1 agreement: fraction of rows where argmax(student) == argmax(teacher). Works on probabilities too."""
    s = _as_2d(student_logits, "student_logits")
    t = _as_2d(teacher_logits, "teacher_logits")
    if s.shape != t.shape:
        raise LabError(f"student_logits shape {tuple(s.shape)} differs from teacher_logits shape {tuple(t.shape)}; "
                       "allowed: equal shapes (n, K)")
    return float((s.argmax(1) == t.argmax(1)).to(torch.float64).mean())


def entropy_per_class(teacher_logits, labels, temperature: float = 1.0) -> pd.DataFrame:
    """Mean entropy (nats) of softmax(teacher_logits / temperature), grouped by the true label.
    Columns: class, entropy, count (every class 0..K-1 appears; entropy is NaN for a class with no rows)."""
    temperature = _check_temperature(temperature)
    z = _as_2d(teacher_logits, "teacher_logits")
    y = _labels(labels, z.shape[0], z.shape[1])
    h = _entropy(z, temperature)
    k = z.shape[1]
    count = torch.bincount(y, minlength=k).to(torch.float64)
    total = torch.zeros(k, dtype=torch.float64).index_add_(0, y, h)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = (total / count).numpy()
    return pd.DataFrame({"class": np.arange(k), "entropy": mean, "count": count.numpy().astype(np.int64)})


def soft_labels(teacher_logits, temperature: float = 1.0, *, T: float | None = None):
    """The teacher's soft labels softmax(logits / temperature). Returns a tensor on the input's device and dtype
    for a tensor input, a float64 numpy array otherwise. ``T`` is the former name of ``temperature`` (kept so
    existing calls work; it wins when given)."""
    temperature = _check_temperature(temperature if T is None else T)
    if torch.is_tensor(teacher_logits):
        if teacher_logits.dim() != 2 or teacher_logits.shape[1] < 2:
            _as_2d(teacher_logits, "teacher_logits")  # raises the one-line error
        z = teacher_logits if teacher_logits.is_floating_point() else teacher_logits.to(torch.float32)
        return torch.softmax(z / temperature, dim=1)
    return torch.softmax(_as_2d(teacher_logits, "teacher_logits") / temperature, dim=1).numpy()


def temperature_sweep(teacher_logits, temperatures: Iterable[float] = (1, 2, 4, 8)) -> pd.DataFrame:
    """Dark knowledge of the teacher's soft labels per temperature. Columns: temperature, entropy (mean, nats),
    normalized_entropy (entropy / log K, in [0, 1]), top1_prob (mean probability of the teacher's argmax class)
    and non_argmax_mass (mean total probability on the other K-1 classes = 1 - top1_prob)."""
    z = _as_2d(teacher_logits, "teacher_logits")
    try:
        temps = list(temperatures)
    except TypeError:
        raise LabError(f"temperatures {temperatures!r} is not a sequence; allowed: a non-empty list of numbers > 0") \
            from None
    if not temps:
        raise LabError("temperatures is empty; allowed: a non-empty list of numbers > 0")
    rows = []
    for temp in temps:
        temperature = _check_temperature(temp)
        logp = torch.log_softmax(z / temperature, dim=1)
        p = logp.exp()
        h = -(p * logp).sum(1)
        top1 = p.max(1).values
        rows.append({"temperature": temperature, "entropy": float(h.mean()),
                     "normalized_entropy": float(h.mean()) / math.log(z.shape[1]),
                     "top1_prob": float(top1.mean()), "non_argmax_mass": float((1 - top1).mean())})
    return pd.DataFrame(rows)
