"""Claim tests for CKA (issue 5, section 8) and the probe's contract.

CKA(X, X) = 1; invariant to orthogonal transforms and isotropic scaling, not to general invertible
linear maps; the debiased estimator lies closer to the population value at small n. Every
reference number is measured (or computed analytically) inside the test.
"""
import numpy as np
import pandas as pd
import pytest
import torch

from lab.errors import LabError
from lab.metrics import similarity as S
from lab.probes.similarity import cka_matrix, linear_cka, minibatch_cka, rbf_cka

D = 50
NOISE = 2.0


def _rng(seed):
    return np.random.default_rng(seed)


def _orthogonal(d, seed):
    q, r = np.linalg.qr(_rng(seed).normal(size=(d, d)))
    return q * np.sign(np.diag(r))


def _linear_pair(n, seed, w):
    """X ~ N(0, I_D), Y = X W + NOISE * eps."""
    g = _rng(seed)
    x = g.normal(size=(n, D))
    return x, x @ w + NOISE * g.normal(size=(n, D))


def _w():
    return _rng(123).normal(size=(D, D)) / np.sqrt(D)


def _population_linear_cka(w):
    """Analytic: Sxx = I, Syy = W^T W + NOISE^2 I, Sxy = W -> ||W||_F^2 / (||I||_F ||Syy||_F)."""
    syy = w.T @ w + NOISE ** 2 * np.eye(D)
    return float(np.sum(w ** 2) / (np.sqrt(D) * np.linalg.norm(syy)))


ESTIMATORS = {
    "linear": lambda a, b: linear_cka(a, b),
    "linear_debiased": lambda a, b: linear_cka(a, b, debiased=True),
    "rbf": lambda a, b: rbf_cka(a, b),
    "rbf_debiased": lambda a, b: rbf_cka(a, b, debiased=True),
}


@pytest.mark.parametrize("name", list(ESTIMATORS))
def test_self_similarity_is_one_and_unrelated_is_lower(name):
    f = ESTIMATORS[name]
    x = _rng(0).normal(size=(200, 12))
    z = _rng(1).normal(size=(200, 9))  # independent features: baseline measured here
    assert f(x, x) == pytest.approx(1.0, abs=1e-12)
    assert f(x, z) < 0.5 * f(x, x)


@pytest.mark.parametrize("name", list(ESTIMATORS))
def test_invariant_to_orthogonal_maps_scaling_translation_but_not_general_linear_maps(name):
    f = ESTIMATORS[name]
    g = _rng(2)
    x = g.normal(size=(300, 10))
    y = np.tanh(x @ g.normal(size=(10, 6))) + 0.3 * g.normal(size=(300, 6))
    base = f(x, y)
    x_iso = 3.7 * x @ _orthogonal(10, 3) + 5.0  # orthogonal map, isotropic scale, shift
    assert f(x_iso, y) == pytest.approx(base, abs=1e-10)
    assert f(x, 0.01 * y @ _orthogonal(6, 4)) == pytest.approx(base, abs=1e-10)
    # a general invertible linear map (strongly anisotropic, well conditioned enough to invert)
    a = _orthogonal(10, 5) @ np.diag(np.logspace(0, 1.5, 10)) @ _orthogonal(10, 6)
    assert abs(np.linalg.det(a)) > 1e-6
    assert f(x @ a, x) < f(x_iso, x) - 0.05  # CKA(X, X) = 1 under orthogonal+scale, clearly not under A
    assert abs(f(x @ a, y) - base) > 0.02


def test_debiased_closer_to_population_at_small_n():
    w = _w()
    pop = _population_linear_cka(w)
    # large-n cross-check of the analytic value with the biased estimator (feature-space, no n x n)
    x, y = _linear_pair(20000, 999, w)
    assert linear_cka(x, y) == pytest.approx(pop, abs=0.01)
    err_b, err_d = [], []
    for seed in range(20):
        x, y = _linear_pair(32, seed, w)
        err_b.append(abs(linear_cka(x, y) - pop))
        err_d.append(abs(linear_cka(x, y, debiased=True) - pop))
    mb, md = float(np.mean(err_b)), float(np.mean(err_d))
    print(f"population {pop:.4f}; mean |err| at n=32 over 20 seeds: biased {mb:.4f}, debiased {md:.4f}")
    assert md < 0.5 * mb


def test_minibatch_matches_debiased_full_batch_not_mean_of_batch_ckas():
    x, y = _linear_pair(4000, 7, _w())
    full = linear_cka(x, y, debiased=True)
    bx, by = np.split(x, 8), np.split(y, 8)
    mb = minibatch_cka(bx, by)
    mb_stream = minibatch_cka((b for b in bx), (torch.from_numpy(b) for b in by))
    naive = float(np.mean([linear_cka(a, b) for a, b in zip(bx, by)]))  # the wrong way: mean of biased CKAs
    assert mb_stream == pytest.approx(mb, abs=1e-12)
    assert abs(mb - full) < 0.01
    assert abs(mb - full) < 0.25 * abs(naive - full)


def test_feature_space_and_gram_forms_agree():
    g = _rng(8)
    for n, dx, dy in [(40, 7, 5), (20, 60, 80)]:  # tall (feature form) and wide (Gram form)
        x, y = g.normal(size=(n, dx)), g.normal(size=(n, dy)) + g.normal(size=(n, 1))
        xc, yc = x - x.mean(0), y - y.mean(0)
        kx, ky = xc @ xc.T, yc @ yc.T
        gram_b = S.hsic_biased_gram(kx, ky) / np.sqrt(S.hsic_biased_gram(kx, kx) * S.hsic_biased_gram(ky, ky))
        gram_d = S.hsic_unbiased_gram(kx, ky) / np.sqrt(S.hsic_unbiased_gram(kx, kx) * S.hsic_unbiased_gram(ky, ky))
        assert linear_cka(x, y) == pytest.approx(gram_b, abs=1e-10)
        assert linear_cka(x, y, debiased=True) == pytest.approx(gram_d, abs=1e-10)
        # torch input (float32 converted to float64) gives the numpy value
        assert linear_cka(torch.from_numpy(x), torch.from_numpy(y)) == pytest.approx(linear_cka(x, y), abs=1e-12)


def test_cka_matrix_diagonal_one_and_matches_pairwise():
    g = _rng(9)
    x = g.normal(size=(100, 16))
    feats = {"in": x, "hidden": np.maximum(x @ g.normal(size=(16, 32)), 0),
             "conv": torch.from_numpy(g.normal(size=(100, 2, 3, 3)) + x[:, :1, None, None])}
    m = cka_matrix(feats, feats)
    assert isinstance(m, pd.DataFrame)
    assert list(m.index) == list(m.columns) == ["in", "hidden", "conv"]
    assert np.allclose(np.diag(m.to_numpy()), 1.0, atol=1e-12)
    assert np.allclose(m.to_numpy(), m.to_numpy().T, atol=1e-12)
    assert m.loc["in", "hidden"] == pytest.approx(linear_cka(feats["in"], feats["hidden"]), abs=1e-12)
    assert m.loc["in", "conv"] < 0.99  # off-diagonal entries are not trivially 1
    md = cka_matrix({"in": x}, feats, debiased=True)
    assert md.shape == (1, 3) and md.loc["in", "in"] == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("call, word", [
    (lambda: linear_cka(np.zeros((10, 3)) + _rng(0).normal(size=(10, 3)), _rng(1).normal(size=(11, 3))), "same number"),
    (lambda: linear_cka(_rng(0).normal(size=(3, 2)), _rng(1).normal(size=(3, 2)), debiased=True), "n >= 4"),
    (lambda: rbf_cka(_rng(0).normal(size=(3, 2)), _rng(1).normal(size=(3, 2)), debiased=True), "n >= 4"),
    (lambda: linear_cka(_rng(0).normal(size=(10,)), _rng(1).normal(size=(10,))), "2-D"),
    (lambda: linear_cka(_rng(0).normal(size=(10, 2, 2)), _rng(1).normal(size=(10, 4))), "2-D"),
    (lambda: linear_cka(np.ones((10, 3)), _rng(1).normal(size=(10, 3))), "zero variance"),
    (lambda: rbf_cka(_rng(0).normal(size=(10, 3)), _rng(1).normal(size=(10, 3)), sigma_frac=0), "sigma_frac"),
    (lambda: minibatch_cka([_rng(0).normal(size=(8, 3))] * 2, [_rng(1).normal(size=(8, 3))]), "equal numbers"),
    (lambda: minibatch_cka([_rng(0).normal(size=(3, 3))], [_rng(1).normal(size=(3, 3))]), "n >= 4"),
    (lambda: cka_matrix({}, {"a": np.ones((4, 2))}), "non-empty dict"),
])
def test_bad_input_is_one_line_laberror(call, word):
    with pytest.raises(LabError) as e:
        call()
    msg = str(e.value)
    assert word in msg and "\n" not in msg
