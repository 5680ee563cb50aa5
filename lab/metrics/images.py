"""Sample quality for digit images, on the features of a local digits net (nothing downloaded).

- ``features``: the 128-d penultimate features of the shipped digits feature net
  (:mod:`lab.nets.digits_eval`); 16x16 inputs are average-pooled to 8x8 first.
- ``frechet_distance``: FD between Gaussian fits of two feature sets ("FD-digits", the
  FID recipe on a local net). FD is biased upwards for small sets: compare generators
  with the same number of samples each time.
- ``kid``: Kernel Inception Distance (Binkowski et al. 2018): unbiased MMD^2 with the
  cubic polynomial kernel k(a, b) = (a.b / d + 1)^3, averaged over random subsets.
- ``precision_recall``: Kynkaanniemi et al. 2019: a sample is "precise" when it falls in
  the k-NN ball of some real feature; recall swaps the roles.
- ``class_accuracy``: the share of conditional samples that a separate classifier (not
  the feature net) assigns to the label they were asked for.
- ``diversity``: mean pairwise feature distance within each class, averaged over classes.
- ``image_metrics``: all of them against the TEST split of the data; ``noise_floor``:
  the same for the TRAIN split as "samples" ("the metric of perfect samples").
"""
from __future__ import annotations

import functools
import warnings

import numpy as np
import torch
from scipy import linalg
from scipy.spatial.distance import pdist
from sklearn.metrics import pairwise_distances
from sklearn.neighbors import NearestNeighbors

from lab.errors import LabError
from lab.metrics.threads import blas_threads

DATA = ("digits", "digits16")
KEYS = ("fd", "kid", "precision", "recall", "diversity", "accuracy")


@functools.lru_cache(maxsize=None)
def default_net(kind: str, device: str):
    from lab.nets.digits_eval import load_eval_net  # lazy: eval net only when none is given

    return load_eval_net(kind, device=device)


def _device(net) -> torch.device:
    return next(net.parameters()).device


def _images(x) -> torch.Tensor:
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(x)
    if not torch.is_tensor(x):
        raise LabError(f"images must be a torch tensor or numpy array, got {type(x).__name__}")
    if x.ndim != 4 or x.shape[1] != 1 or tuple(x.shape[2:]) not in ((8, 8), (16, 16)):
        raise LabError(f"digit images must have shape (N, 1, 8, 8) or (N, 1, 16, 16), got {tuple(x.shape)}")
    if x.shape[0] < 2:
        raise LabError(f"need at least 2 images, got {x.shape[0]}")
    x = x.detach().float()
    if not torch.isfinite(x).all():
        raise LabError("images contain NaN or infinite values")
    return x


def _labels(y, n: int) -> np.ndarray:
    y = np.asarray(y.detach().cpu() if torch.is_tensor(y) else y)
    if y.shape != (n,):
        raise LabError(f"labels must have shape ({n},), got {tuple(y.shape)}")
    return y.astype(np.int64)


@torch.no_grad()
def _run(net, x, fn, batch: int) -> np.ndarray:
    dev = _device(net)
    return np.concatenate([fn(x[i:i + batch].to(dev)).cpu().double().numpy() for i in range(0, x.shape[0], batch)])


def features(x, net=None, batch: int = 512) -> np.ndarray:
    """(N, 128) float64 features of images (N, 1, 8, 8) or (N, 1, 16, 16) in [-1, 1]."""
    x = _images(x)
    net = net or default_net("features", str(x.device))
    return _run(net, x, net.features, batch)


def predict(x, classifier=None, batch: int = 512) -> np.ndarray:
    """Predicted classes of images by the separate digits classifier."""
    x = _images(x)
    classifier = classifier or default_net("classifier", str(x.device))
    return _run(classifier, x, classifier, batch).argmax(1)


def _feats(f, name: str) -> np.ndarray:
    f = np.asarray(f, dtype=np.float64)
    if f.ndim != 2 or f.shape[0] < 2:
        raise LabError(f"{name} must be a (N >= 2, D) feature array, got shape {f.shape}")
    return f


@blas_threads()
def frechet_distance(fa, fb) -> float:
    """||mu_a - mu_b||^2 + Tr(C_a + C_b - 2 (C_a C_b)^(1/2)) between Gaussian fits of two feature sets."""
    fa, fb = _feats(fa, "fa"), _feats(fb, "fb")
    if fa.shape[1] != fb.shape[1]:
        raise LabError(f"feature dimensions differ: {fa.shape[1]} vs {fb.shape[1]}")
    mu_a, mu_b = fa.mean(0), fb.mean(0)
    ca, cb = np.cov(fa, rowvar=False), np.cov(fb, rowvar=False)
    with warnings.catch_warnings():  # dead ReLU units make C_a C_b singular; its square root is still fine
        warnings.simplefilter("ignore", linalg.LinAlgWarning)
        covmean = linalg.sqrtm(ca @ cb)
        if not np.isfinite(covmean).all():  # regularise both covariances slightly, as pytorch-fid does
            eps = 1e-6 * np.eye(ca.shape[0])
            covmean = linalg.sqrtm((ca + eps) @ (cb + eps))
    covmean = np.real(covmean)
    return float(max(((mu_a - mu_b) ** 2).sum() + np.trace(ca) + np.trace(cb) - 2 * np.trace(covmean), 0.0))


def kid(fa, fb, subsets: int = 50, subset_size: int | None = None, seed: int = 0, return_std: bool = False):
    """KID: unbiased MMD^2 with the kernel (a.b / d + 1)^3, averaged over ``subsets`` random subsets.

    ``subset_size`` defaults to min(200, len(fa), len(fb)). Returns the mean (and the std over
    subsets when ``return_std``).
    """
    fa, fb = _feats(fa, "fa"), _feats(fb, "fb")
    if fa.shape[1] != fb.shape[1]:
        raise LabError(f"feature dimensions differ: {fa.shape[1]} vs {fb.shape[1]}")
    m = int(subset_size or min(200, fa.shape[0], fb.shape[0]))
    if not 2 <= m <= min(fa.shape[0], fb.shape[0]):
        raise LabError(f"subset_size must be in 2..{min(fa.shape[0], fb.shape[0])}, got {subset_size!r}")
    d, s = fa.shape[1], int(subsets)
    g = torch.Generator().manual_seed(int(seed))
    ta, tb = torch.from_numpy(fa), torch.from_numpy(fb)
    # all subsets at once: (subsets, m, d) batches, kernels (subsets, m, m)
    ia = torch.stack([torch.randperm(fa.shape[0], generator=g)[:m] for _ in range(s)])
    ib = torch.stack([torch.randperm(fb.shape[0], generator=g)[:m] for _ in range(s)])
    a, b = ta[ia], tb[ib]
    kaa = (a @ a.transpose(1, 2) / d + 1) ** 3
    kbb = (b @ b.transpose(1, 2) / d + 1) ** 3
    kab = (a @ b.transpose(1, 2) / d + 1) ** 3
    off = lambda k: (k.sum((1, 2)) - k.diagonal(dim1=1, dim2=2).sum(1)) / (m * (m - 1))  # noqa: E731
    vals = (off(kaa) + off(kbb) - 2 * kab.mean((1, 2))).numpy()
    return (float(vals.mean()), float(vals.std())) if return_std else float(vals.mean())


def _coverage(balls: np.ndarray, probes: np.ndarray, k: int) -> float:
    """Share of ``probes`` inside the union of k-NN balls around ``balls`` (each ball's own k-th neighbour radius)."""
    nn = NearestNeighbors(n_neighbors=k + 1).fit(balls)
    radii = nn.kneighbors(balls)[0][:, k]  # column 0 is the point itself
    inside = np.zeros(probes.shape[0], dtype=bool)
    for i in range(0, probes.shape[0], 1024):
        d = pairwise_distances(probes[i:i + 1024], balls)
        inside[i:i + 1024] = (d <= radii[None]).any(1)
    return float(inside.mean())


@blas_threads()
def precision_recall(real_f, fake_f, k: int = 3) -> tuple[float, float]:
    """Improved precision and recall (Kynkaanniemi et al. 2019) on k-NN feature manifolds."""
    real_f, fake_f = _feats(real_f, "real_f"), _feats(fake_f, "fake_f")
    if not isinstance(k, (int, np.integer)) or not 1 <= k < min(real_f.shape[0], fake_f.shape[0]):
        raise LabError(f"k must be an integer in 1..{min(real_f.shape[0], fake_f.shape[0]) - 1}, got {k!r}")
    return _coverage(real_f, fake_f, int(k)), _coverage(fake_f, real_f, int(k))


def class_accuracy(x, y, classifier=None) -> float:
    """Share of images that the separate digits classifier assigns to class ``y``."""
    x = _images(x)
    y = _labels(y, x.shape[0])
    return float((predict(x, classifier) == y).mean())


def _diversity_f(f: np.ndarray, y: np.ndarray) -> float:
    per = [pdist(f[y == c]).mean() for c in np.unique(y) if (y == c).sum() >= 2]
    if not per:
        raise LabError("diversity needs at least one class with 2 or more images")
    return float(np.mean(per))


def diversity(x, y=None, net=None) -> float:
    """Mean pairwise feature distance within each class, averaged over classes.

    ``y`` None groups the images by the classifier's predicted class (unconditional samples).
    """
    x = _images(x)
    y = predict(x) if y is None else _labels(y, x.shape[0])
    return _diversity_f(features(x, net), y)


def _check_data(data) -> str:
    if data not in DATA:
        raise LabError(f"unknown image data {data!r} for image metrics; allowed: {', '.join(DATA)}")
    return data


@functools.lru_cache(maxsize=None)
def _reference(data: str, n_ref: int | None, seed: int):
    from lab.data.images import Digits  # lazy: digits data only for the reference

    te = Digits("test", 8 if data == "digits" else 16)
    x, y = te.x, te.y
    if n_ref is not None:
        if not 2 <= int(n_ref) <= len(te):
            raise LabError(f"n_ref must be in 2..{len(te)} (the {data} test split), got {n_ref!r}")
        idx = torch.randperm(len(te), generator=torch.Generator().manual_seed(seed))[: int(n_ref)]
        x, y = x[idx], y[idx]
    f = features(x)
    return f, _diversity_f(f, y.numpy())


@blas_threads()
def image_metrics(x, y=None, data: str = "digits", n_ref: int | None = None, seed: int = 0, k: int = 3) -> dict:
    """FD, KID, precision, recall, diversity (and class accuracy when ``y`` is given) against the test split.

    ``x``: (N, 1, 8, 8) or (N, 1, 16, 16) samples in [-1, 1]; ``n_ref``: use a seeded random
    subset of the test split (all 360 by default). FD depends on N: compare generators with
    the same N, and against ``noise_floor(data, n=N)``. ``diversity_ref`` is the same
    diversity on the reference images.
    """
    data = _check_data(data)
    x = _images(x)
    fr, div_ref = _reference(data, n_ref, int(seed))
    ff = features(x)
    ylab = predict(x) if y is None else _labels(y, x.shape[0])
    kid_mean, kid_std = kid(fr, ff, seed=seed, return_std=True)
    p, r = precision_recall(fr, ff, k=k)
    out = {"fd": frechet_distance(fr, ff), "kid": kid_mean, "kid_std": kid_std, "precision": p, "recall": r,
           "diversity": _diversity_f(ff, ylab), "diversity_ref": div_ref, "n": int(x.shape[0]), "n_ref": fr.shape[0]}
    if y is not None:
        out["accuracy"] = class_accuracy(x, ylab)
    return out


@functools.lru_cache(maxsize=None)
def _noise_floor(data: str, n: int | None, seed: int) -> tuple:
    from lab.data.images import Digits  # lazy: digits data only for the noise floor

    tr = Digits("train", 8 if data == "digits" else 16)
    x, y = tr.x, tr.y
    if n is not None:
        if not 2 <= int(n) <= len(tr):
            raise LabError(f"n must be in 2..{len(tr)} (the {data} train split), got {n!r}")
        idx = torch.randperm(len(tr), generator=torch.Generator().manual_seed(seed + 1))[: int(n)]
        x, y = x[idx], y[idx]
    return tuple(sorted(image_metrics(x, y, data=data, seed=seed).items()))


def noise_floor(data: str = "digits", n: int | None = None, seed: int = 0) -> dict:
    """``image_metrics`` of the TRAIN split (with its labels) against the TEST split: perfect samples' scores.

    ``n`` uses a seeded subset of n training images, to match a generator's sample count
    (FD is biased by the sample size). Cached in-process.
    """
    return dict(_noise_floor(_check_data(data), None if n is None else int(n), int(seed)))


__all__ = ["DATA", "KEYS", "features", "predict", "frechet_distance", "kid", "precision_recall", "class_accuracy",
           "diversity", "image_metrics", "noise_floor"]
