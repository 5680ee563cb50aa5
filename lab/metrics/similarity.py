"""Representation similarity: centred kernel alignment (CKA). Data only, no figures.

CKA(X, Y) = HSIC(K, L) / sqrt(HSIC(K, K) * HSIC(L, L)) with K, L the Gram matrices of
the two feature sets (rows = the same n examples, any widths d_x, d_y). Two HSIC estimators:

- biased (``debiased=False``): tr(K H L H) with H the centring matrix (Kornblith et al. 2019).
  For the linear kernel this is ||Y_c^T X_c||_F^2 with column-centred features, computed in
  feature space (no n x n matrix) when that is cheaper. Biased upwards at small n / wide features.
- debiased (``debiased=True``): the unbiased U-statistic HSIC_1 of Song et al. (2012), as used by
  Nguyen et al. (2021): with K~, L~ the Gram matrices with zeroed diagonals,
  HSIC_1 = [tr(K~L~) + (1^T K~ 1)(1^T L~ 1)/((n-1)(n-2)) - 2/(n-2) 1^T K~ L~ 1] / (n(n-3)).
  Needs n >= 4; the numerator can be negative. For the linear kernel every term is computed in
  feature space as well (O(n d_x d_y)).

``minibatch_cka`` averages HSIC_1 numerator and denominator terms over minibatches separately and
forms the ratio once (Nguyen et al. 2021), not the mean of per-batch CKAs.
``cka_matrix`` returns the layer-by-layer table behind a heatmap.

All arithmetic in float64 numpy; inputs may be numpy arrays or torch tensors on any device.
"""
from __future__ import annotations

from typing import Iterable, Mapping

import numpy as np
import pandas as pd
from scipy.spatial.distance import pdist, squareform

from lab.errors import LabError


def _features(x, name: str = "x") -> np.ndarray:
    """(n, d) float64 numpy array from a numpy array or torch tensor; anything else is a LabError."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    try:
        a = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError):
        raise LabError(f"{name} must be a numeric (n, d) array or tensor, got {type(x).__name__}") from None
    if a.ndim != 2:
        raise LabError(f"{name} must be 2-D (n examples, d features), got shape {tuple(a.shape)}; "
                       f"flatten with .reshape(n, -1)")
    if not np.all(np.isfinite(a)):
        raise LabError(f"{name} contains NaN or inf; allowed: finite values only")
    return a


def _pair(x, y, debiased: bool) -> tuple[np.ndarray, np.ndarray]:
    x, y = _features(x, "x"), _features(y, "y")
    if x.shape[0] != y.shape[0]:
        raise LabError(f"x and y must have the same number of examples n, got {x.shape[0]} and {y.shape[0]}")
    n_min = 4 if debiased else 2
    if x.shape[0] < n_min:
        raise LabError(f"{'debiased' if debiased else 'biased'} CKA needs n >= {n_min} examples, got n={x.shape[0]}")
    return x, y


def _ratio(kl: float, kk: float, ll: float) -> float:
    if kk <= 0 or ll <= 0:
        if kk == 0 or ll == 0:
            raise LabError("a feature set has zero variance (constant features); CKA is undefined; "
                           "allowed: features that vary across examples")
        return float("nan")  # a debiased self-HSIC can be negative at tiny n: CKA is undefined there
    return float(kl / np.sqrt(kk * ll))


# ---------------------------------------------------------------- HSIC estimators on Gram matrices

def hsic_biased_gram(k: np.ndarray, l: np.ndarray) -> float:
    """tr(K H L H) (the 1/(n-1)^2 factor cancels in CKA and is left out)."""
    kc = k - k.mean(0, keepdims=True) - k.mean(1, keepdims=True) + k.mean()
    lc = l - l.mean(0, keepdims=True) - l.mean(1, keepdims=True) + l.mean()
    return float(np.sum(kc * lc))


def hsic_unbiased_gram(k: np.ndarray, l: np.ndarray) -> float:
    """Song et al. (2012) HSIC_1 from two n x n Gram matrices."""
    n = k.shape[0]
    k = k.copy()
    l = l.copy()
    np.fill_diagonal(k, 0.0)
    np.fill_diagonal(l, 0.0)
    k1, l1 = k.sum(1), l.sum(1)
    tr_kl = float(np.sum(k * l))  # K, L symmetric: tr(KL) = sum(K * L)
    return (tr_kl + k1.sum() * l1.sum() / ((n - 1) * (n - 2)) - 2.0 / (n - 2) * float(k1 @ l1)) / (n * (n - 3))


def _hsic_unbiased_feat(x: np.ndarray, y: np.ndarray) -> float:
    """HSIC_1 for linear kernels K = X X^T, L = Y Y^T without forming n x n matrices."""
    n = x.shape[0]
    dk, dl = np.einsum("ij,ij->i", x, x), np.einsum("ij,ij->i", y, y)  # diagonals of K and L
    k1 = x @ x.sum(0) - dk  # K~ 1
    l1 = y @ y.sum(0) - dl  # L~ 1
    tr_kl = float(np.sum((x.T @ y) ** 2)) - float(dk @ dl)  # tr(K~ L~) = tr(KL) - sum diag(K) diag(L)
    return (tr_kl + k1.sum() * l1.sum() / ((n - 1) * (n - 2)) - 2.0 / (n - 2) * float(k1 @ l1)) / (n * (n - 3))


def _linear_terms(x: np.ndarray, y: np.ndarray, debiased: bool) -> tuple[float, float, float]:
    """(HSIC(K,L), HSIC(K,K), HSIC(L,L)) for linear kernels on centred features."""
    x = x - x.mean(0, keepdims=True)
    y = y - y.mean(0, keepdims=True)
    n, dx, dy = x.shape[0], x.shape[1], y.shape[1]
    if debiased:
        return _hsic_unbiased_feat(x, y), _hsic_unbiased_feat(x, x), _hsic_unbiased_feat(y, y)
    if n * n * (dx + dy) < n * (dx * dx + dy * dy + dx * dy):  # Gram form is cheaper (wide features)
        k, l = x @ x.T, y @ y.T
        return float(np.sum(k * l)), float(np.sum(k * k)), float(np.sum(l * l))
    return (float(np.sum((y.T @ x) ** 2)), float(np.sum((x.T @ x) ** 2)), float(np.sum((y.T @ y) ** 2)))


# ---------------------------------------------------------------- public API

def linear_cka(x, y, debiased: bool = False) -> float:
    """Linear CKA between features x (n, d_x) and y (n, d_y) of the same n examples.

    ``debiased=False``: ||Y_c^T X_c||_F^2 / (||X_c^T X_c||_F ||Y_c^T Y_c||_F) (centred columns), in [0, 1].
    ``debiased=True``: the ratio of Song et al.'s unbiased HSIC_1 estimates (n >= 4); close to the
    population value at small n, may fall slightly outside [0, 1]; NaN if a self-HSIC estimate is negative.
    Invariant to orthogonal transforms, isotropic scaling and translation of either input.
    """
    x, y = _pair(x, y, debiased)
    return _ratio(*_linear_terms(x, y, debiased))


def _rbf_gram(x: np.ndarray, sigma_frac: float) -> np.ndarray:
    d = pdist(x)  # condensed pairwise Euclidean distances (off-diagonal only)
    med = float(np.median(d))
    if med <= 0:
        raise LabError("median pairwise distance is 0 (most examples identical); RBF CKA is undefined; "
                       "allowed: features that vary across examples")
    sigma = sigma_frac * med
    return np.exp(-squareform(d) ** 2 / (2.0 * sigma * sigma))


def rbf_cka(x, y, sigma_frac: float = 0.8, debiased: bool = False) -> float:
    """CKA with Gaussian (RBF) kernels exp(-||a - b||^2 / (2 sigma^2)), sigma = sigma_frac * the median
    pairwise distance of each feature set (Kornblith et al. 2019). Forms n x n matrices."""
    if not (isinstance(sigma_frac, (int, float)) and np.isfinite(sigma_frac) and sigma_frac > 0):
        raise LabError(f"sigma_frac must be a positive number, got {sigma_frac!r}")
    x, y = _pair(x, y, debiased)
    k, l = _rbf_gram(x, float(sigma_frac)), _rbf_gram(y, float(sigma_frac))
    h = hsic_unbiased_gram if debiased else hsic_biased_gram
    return _ratio(h(k, l), h(k, k), h(l, l))


def minibatch_cka(batches_x: Iterable, batches_y: Iterable) -> float:
    """Minibatch linear CKA (Nguyen et al. 2021) for large n: for each pair of minibatches (b_i >= 4
    examples each) compute the unbiased HSIC_1 of (x, y), (x, x), (y, y); average each over the
    batches; return mean_xy / sqrt(mean_xx * mean_yy). Batches may be generators (streamed, O(1) memory
    in the number of batches)."""
    s_kl = s_kk = s_ll = 0.0
    count = 0
    sentinel = object()
    it_y = iter(batches_y)
    for i, bx in enumerate(batches_x):
        by = next(it_y, sentinel)
        if by is sentinel:
            raise LabError(f"batches_x has more batches than batches_y ({i}); allowed: equal numbers of batches")
        x, y = _pair(bx, by, debiased=True)
        kl, kk, ll = _linear_terms(x, y, debiased=True)
        s_kl, s_kk, s_ll, count = s_kl + kl, s_kk + kk, s_ll + ll, count + 1
    if next(it_y, sentinel) is not sentinel:
        raise LabError(f"batches_y has more batches than batches_x ({count}); allowed: equal numbers of batches")
    if count == 0:
        raise LabError("no minibatches given; allowed: at least one pair of (b, d) batches with b >= 4")
    return _ratio(s_kl / count, s_kk / count, s_ll / count)


def cka_matrix(feats_a: Mapping[str, object], feats_b: Mapping[str, object], debiased: bool = False) -> pd.DataFrame:
    """Layer-by-layer linear CKA: rows = feats_a's layers, columns = feats_b's layers (dict order).

    Each value is an (n, ...) array or tensor of one layer's features on the same n examples;
    trailing dimensions are flattened (conv maps (n, C, H, W) -> (n, C*H*W)). The table behind a
    heatmap (index name ``layer_a``, columns name ``layer_b``); no plotting here.
    """
    for nm, feats in (("feats_a", feats_a), ("feats_b", feats_b)):
        if not isinstance(feats, Mapping) or not feats:
            raise LabError(f"{nm} must be a non-empty dict {{layer name: (n, ...) features}}, got {type(feats).__name__}")

    seen: dict[int, np.ndarray] = {}  # the same object in both dicts (a table of feats against itself): one array

    def flat(d, nm):
        out = {}
        for k, v in d.items():
            if id(v) not in seen:
                a = v.detach().cpu().numpy() if hasattr(v, "detach") else np.asarray(v)
                if a.ndim < 2:
                    raise LabError(f"{nm}[{k!r}] must have shape (n, ...) with at least 2 dims, got {tuple(a.shape)}")
                seen[id(v)] = a.reshape(a.shape[0], -1)
            out[k] = seen[id(v)]
        return out

    fa, fb = flat(feats_a, "feats_a"), flat(feats_b, "feats_b")
    n_a, n_b = {v.shape[0] for v in fa.values()}, {v.shape[0] for v in fb.values()}
    if len(n_a | n_b) != 1:  # the same error linear_cka gives on the first mismatched pair
        linear_cka(*next((fa[a], fb[b]) for a in fa for b in fb if fa[a].shape[0] != fb[b].shape[0]))
    # each layer is converted, checked and centred once, and its self-HSIC computed once (not once per pair):
    # L_a * L_b cross terms (half that for a table of one feature set against itself) plus L_a + L_b self terms,
    # instead of 3 L_a L_b products and 2 L_a L_b conversions
    layers: dict[int, _Layer] = {}

    def layer(v, name):
        key = id(v)
        if key not in layers:
            layers[key] = _Layer(v, name, debiased)
        return layers[key]

    la = {a: layer(fa[a], f"feats_a[{a!r}]") for a in fa}
    lb = {b: layer(fb[b], f"feats_b[{b!r}]") for b in fb}
    crosses: dict[tuple[int, int], float] = {}  # HSIC is symmetric: a table of feats against itself costs half

    def cross(p: _Layer, q: _Layer) -> float:
        key = (min(id(p), id(q)), max(id(p), id(q)))
        if key not in crosses:
            crosses[key] = p.self_hsic if p is q else p.cross(q)
        return crosses[key]

    vals = np.array([[_ratio(cross(la[a], lb[b]), la[a].self_hsic, lb[b].self_hsic) for b in fb] for a in fa])
    return pd.DataFrame(vals, index=pd.Index(list(fa), name="layer_a"), columns=pd.Index(list(fb), name="layer_b"))


class _Layer:
    """One layer's features for :func:`cka_matrix`: float64, centred, with what every pair reuses (the diagonal
    of K and K~1 for the debiased estimator, the self-HSIC), so a table of L x L layers costs L^2 cross products."""

    def __init__(self, v, name: str, debiased: bool):
        x = _features(v, name)
        n_min = 4 if debiased else 2
        if x.shape[0] < n_min:
            raise LabError(f"{'debiased' if debiased else 'biased'} CKA needs n >= {n_min} examples, got n={x.shape[0]}")
        self.x = x - x.mean(0, keepdims=True)
        self.debiased = debiased
        self._gram = None
        if debiased:
            self.dk = np.einsum("ij,ij->i", self.x, self.x)
            self.k1 = self.x @ self.x.sum(0) - self.dk
        self.self_hsic = self.cross(self)

    def gram(self) -> np.ndarray:
        if self._gram is None:
            self._gram = self.x @ self.x.T
        return self._gram

    def cross(self, other: "_Layer") -> float:
        x, y = self.x, other.x
        n, dx, dy = x.shape[0], x.shape[1], y.shape[1]
        if self.debiased:
            tr_kl = float(np.sum((x.T @ y) ** 2)) - float(self.dk @ other.dk)
            k1, l1 = self.k1, other.k1
            return (tr_kl + k1.sum() * l1.sum() / ((n - 1) * (n - 2)) - 2.0 / (n - 2) * float(k1 @ l1)) / (n * (n - 3))
        if n < min(dx, dy):  # both wider than n: the n x n Grams (each formed once) are the cheaper form
            return float(np.sum(self.gram() * other.gram()))
        return float(np.sum((y.T @ x) ** 2))


__all__ = ["linear_cka", "rbf_cka", "minibatch_cka", "cka_matrix", "hsic_biased_gram",
           "hsic_unbiased_gram"]
