"""Labelled data for knowledge distillation of classifiers.

Three sources, all seeded and deterministic (numbers are drawn on the CPU; the same
arguments give the same arrays on every machine), nothing is downloaded:

- :func:`digits_classification`: scikit-learn digits with the fixed split of
  :class:`lab.data.images.Digits` (x in [-1, 1]).
- :func:`toy2d_classification`: labelled 2D toy sources (moons, spirals, rings, ...).
- :func:`hard_classification`: Gaussian inputs labelled by a fixed random deep tanh
  network, so a large network reaches high accuracy and a small linear model clearly
  does not (the capacity gap that distillation needs).

Every function returns ``(x, y)``: ``x`` a float32 tensor, ``y`` a long tensor of class ids.
"""
from __future__ import annotations

import numpy as np
import torch

from lab.errors import LabError, check_int as _check_int

CLASSIFICATION_SPLITS = ("train", "test")
_HARD_SPLIT_OFFSET = {"train": 1, "test": 2}  # input seeds per split; the labelling function uses offset 0


def _check_split(split, allowed=CLASSIFICATION_SPLITS) -> str:
    if split not in allowed:
        raise LabError(f"unknown split {split!r}; allowed: {', '.join(allowed)}")
    return split


#: bounds, so a typo cannot allocate without limit: points per call, input dimension, classes, and n * d
MAX_N, MAX_D, MAX_CLASSES, MAX_CELLS = 10_000_000, 1024, 1000, 10**8
MAX_SEED = 2**64 - 1


def digits_classification(split: str = "train", flatten: bool = False):
    """scikit-learn digits: ``x`` (N, 1, 8, 8) in [-1, 1] (or (N, 64) when ``flatten``), ``y`` (N,).

    The split is the one of :class:`lab.data.images.Digits` (train 1437, test 360 images).
    """
    from lab.data.images import Digits  # lazy: digits data only for the digits task

    src = Digits(_check_split(split, CLASSIFICATION_SPLITS + ("all",)))
    x = src.x.clone()
    return (x.reshape(len(x), -1) if flatten else x), src.y.clone()


def toy2d_classification(name: str = "moons", n: int = 2000, seed: int = 0):
    """A labelled 2D toy source: ``x`` (n, 2), ``y`` (n,) in 0..n_classes-1."""
    from lab.data import toy2d  # lazy: toy2d only for the toy task

    allowed = [k for k, src in toy2d.DATASETS.items() if src.n_classes >= 2]
    if name not in allowed:
        raise LabError(f"unknown toy2d classification source {name!r}; allowed: {', '.join(allowed)}")
    n = _check_int("n", n, 1, MAX_N)
    seed = _check_int("seed", seed, 0, MAX_SEED)
    return toy2d.get(name).sample(n, seed, labelled=True)


def _teacher_weights(d: int, n_classes: int, seed: int, latent: int = 2, width: int = 64, gain: float = 4.0):
    """The fixed random labelling function of :func:`hard_classification` (numpy float64).

    A random orthonormal projection to ``latent`` dimensions, then a random 3-layer tanh MLP
    (two hidden layers of ``width`` with weight gain ``gain``, which makes it strongly
    nonlinear). With a low-dimensional latent a large MLP can learn it from a few thousand
    points; a linear model cannot.
    """
    rng = np.random.default_rng([seed, 0])
    proj = np.linalg.qr(rng.standard_normal((d, min(latent, d))))[0]
    sizes = [proj.shape[1], width, width, n_classes]
    layers = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        w = rng.standard_normal((a, b)) * (gain if i < len(sizes) - 2 else 1.0) / np.sqrt(a)
        layers.append((w, 0.1 * rng.standard_normal(b)))
    return proj, layers


def _teacher_logits(x: np.ndarray, teacher) -> np.ndarray:
    proj, layers = teacher
    h = x @ proj
    for i, (w, b) in enumerate(layers):
        h = h @ w + b
        if i < len(layers) - 1:
            h = np.tanh(h)
    return h


def hard_classification(n: int = 4000, d: int = 32, n_classes: int = 10, seed: int = 0, split: str = "train",
                        label_noise: float = 0.02):
    """Gaussian inputs labelled by a fixed random 3-layer tanh MLP (a task with a capacity gap).

    ``x`` (n, d) ~ N(0, I); ``y`` = argmax of the logits of a random tanh MLP applied to a
    random 2D projection of ``x`` (see :func:`_teacher_weights`), with per-class logit offsets
    chosen so the classes are roughly balanced (a class may still be rare for some seeds), then a fraction ``label_noise``
    of labels replaced by uniform random classes. ``seed`` fixes the labelling function;
    ``split`` ("train" or "test") selects independent inputs for the same function.
    Measured (seed 0, n=4000, test n=2000): logistic regression about 0.51 test accuracy,
    an sklearn MLP(256, 256) after 20 epochs about 0.72 (other seeds: gaps 0.07 to 0.29).
    """
    n = _check_int("n", n, 1, MAX_N)
    d = _check_int("d", d, 1, MAX_D)
    n_classes = _check_int("n_classes", n_classes, 2, MAX_CLASSES)
    seed = _check_int("seed", seed, 0, MAX_SEED)
    if n * d > MAX_CELLS:
        raise LabError(f"n * d = {n * d:_} inputs is too many; allowed: n * d <= {MAX_CELLS:_}")
    _check_split(split)
    if not isinstance(label_noise, (int, float)) or not 0.0 <= label_noise < 1.0:
        raise LabError(f"label_noise must be a number in [0, 1), got {label_noise!r}")
    layers = _teacher_weights(d, n_classes, seed)
    # balance the classes: subtract each class's mean logit over a fixed reference sample
    ref = np.random.default_rng([seed, 3]).standard_normal((20000, d))
    ref_logits = _teacher_logits(ref, layers)
    offset = ref_logits.mean(0)
    for _ in range(20):  # nudge offsets until no class is much rarer than the others
        counts = np.bincount((ref_logits - offset).argmax(1), minlength=n_classes) + 1.0
        offset = offset + 0.3 * np.log(counts / counts.mean()) * ref_logits.std()
    rng = np.random.default_rng([seed, _HARD_SPLIT_OFFSET[split]])
    x = rng.standard_normal((n, d))
    y = (_teacher_logits(x, layers) - offset).argmax(1)
    flip = rng.random(n) < label_noise
    y = np.where(flip, rng.integers(0, n_classes, n), y)
    return torch.from_numpy(x.astype(np.float32)), torch.from_numpy(y.astype(np.int64))
