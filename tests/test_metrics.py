"""Sample metrics: sliced Wasserstein, MMD, energy distance, mode statistics, noise floors, evaluate()."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from lab.data import toy2d
from lab.errors import LabError
from lab.metrics import METRICS, energy_distance, evaluate, low_density_share, mmd, mode_stats, noise_floor, sliced_wasserstein
from lab.metrics.samples import random_projections


def _gauss(n, seed, shift=(0.0, 0.0), scale=1.0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 2, generator=g) * scale + torch.tensor(shift)


# ---------------------------------------------------------------- sliced Wasserstein
def test_swd_of_a_set_with_itself_is_zero_and_order_free():
    x = _gauss(500, 0)
    assert sliced_wasserstein(x, x) == 0.0
    assert sliced_wasserstein(x, x[torch.randperm(500)]) == 0.0
    assert sliced_wasserstein(x.numpy(), x) == 0.0  # numpy input accepted


def test_swd_symmetric_and_seeded():
    x, y = _gauss(400, 1), _gauss(400, 2, shift=(0.5, 0.0))
    assert sliced_wasserstein(x, y) == pytest.approx(sliced_wasserstein(y, x), rel=1e-12)
    assert sliced_wasserstein(x, y) == sliced_wasserstein(x, y)  # fixed projections
    assert sliced_wasserstein(x, y, seed=1) != sliced_wasserstein(x, y, seed=2)


@pytest.mark.parametrize("d", [(1.0, 0.0), (0.0, -2.0), (0.6, 0.8), (-3.0, 1.5)])
def test_swd_of_a_translation(d):
    """Translating by d shifts every sorted projection by theta.d, so SW2 = sqrt(mean (theta.d)^2),
    which is |d| / sqrt(2) for directions uniform on the circle."""
    x = _gauss(300, 3)
    dv = torch.tensor(d)
    sw = sliced_wasserstein(x, x + dv)
    P = random_projections(2, 256, 0)
    exact = float(torch.sqrt(((dv.double() @ P) ** 2).mean()))
    assert sw == pytest.approx(exact, rel=1e-6)
    assert sw == pytest.approx(float(dv.norm()) / math.sqrt(2), rel=0.08)
    assert sliced_wasserstein(x, x + dv, n_proj=4096) == pytest.approx(float(dv.norm()) / math.sqrt(2), rel=0.03)


def test_swd_unequal_sizes_and_dimension_mismatch():
    x, y = _gauss(300, 4), _gauss(700, 5)
    v = sliced_wasserstein(x, y)
    assert 0 < v < 0.3
    assert sliced_wasserstein(x, y + torch.tensor([2.0, 0.0])) > 1.0
    with pytest.raises(LabError, match="dimensions differ"):
        sliced_wasserstein(x, torch.zeros(10, 3))


# ---------------------------------------------------------------- MMD and energy
def test_mmd_near_zero_for_same_distribution_and_larger_for_different():
    same = mmd(_gauss(800, 6), _gauss(800, 7))
    diff = mmd(_gauss(800, 6), _gauss(800, 8, shift=(1.0, 0.0)))
    wider = mmd(_gauss(800, 6), _gauss(800, 9, scale=2.0))
    assert abs(same) < 0.01
    assert diff > 0.1 and wider > 0.05
    assert diff > 20 * abs(same)


def test_energy_distance_symmetric_positive_and_zero_on_itself():
    x, y = _gauss(600, 10), _gauss(600, 11, shift=(0.0, 1.5))
    e_xy, e_yx = energy_distance(x, y), energy_distance(y, x)
    assert e_xy == pytest.approx(e_yx, rel=1e-10)
    assert e_xy > 0.3
    assert energy_distance(x, x) == pytest.approx(0.0, abs=1e-12)
    assert 0 <= energy_distance(x, _gauss(600, 12)) < 0.05


# ---------------------------------------------------------------- modes
def test_mode_stats_on_exact_gmm_samples():
    src = toy2d.get("8gaussians")
    x = src.sample(8000, 0)
    st = mode_stats(x, src.gmm)
    # within 3 std of an isotropic 2D Gaussian: 1 - exp(-9/2) = 0.9889
    assert st["high_quality"] == pytest.approx(1 - math.exp(-4.5), abs=0.006)
    assert st["modes_covered"] == 8 and st["n_modes"] == 8
    assert low_density_share(x, src.gmm) == pytest.approx(1 - st["high_quality"])


def test_mode_stats_on_half_the_modes():
    src = toy2d.get("8gaussians")
    x, k = src.gmm.sample(8000, torch.Generator().manual_seed(1))
    half = x[k < 4]
    st = mode_stats(half, src.gmm)
    assert st["modes_covered"] == 4
    assert st["high_quality"] > 0.97
    # samples far from every mode are not "high quality"
    far = torch.full((100, 2), 10.0)
    st_far = mode_stats(far, src.gmm)
    assert st_far["high_quality"] == 0.0 and st_far["modes_covered"] == 0


def test_mode_stats_25gaussians():
    src = toy2d.get("25gaussians")
    st = mode_stats(src.sample(10000, 2), src.gmm)
    assert st["modes_covered"] == 25 and st["high_quality"] > 0.97


# ---------------------------------------------------------------- noise floor and evaluate
def test_noise_floor_small_positive_and_decreasing():
    src = toy2d.get("8gaussians")
    small, large = noise_floor(src, 200), noise_floor(src, 4000)
    assert 0 < large < small < 0.6
    assert large < 0.6 * small
    # a perfect generator (fresh data) scores at the floor; a shifted one far above it
    x = src.sample(4000, 77)
    assert sliced_wasserstein(x, src.sample(4000, 78)) < 2 * large
    assert sliced_wasserstein(x + 0.5, src.sample(4000, 78)) > 5 * large
    e_small, e_large = noise_floor(src, 200, "energy"), noise_floor(src, 1000, "energy")
    assert 0 < e_large < e_small
    with pytest.raises(LabError, match="allowed"):
        noise_floor(src, 100, "kl")


def test_evaluate_keys_and_values():
    src = toy2d.get("8gaussians")
    x = src.sample(1000, 5)
    out = evaluate(x, src)
    assert set(out) == {"swd", "mmd", "energy", "high_quality", "modes_covered", "n_modes"}
    assert all(np.isfinite(v) for v in out.values())
    assert out["modes_covered"] == 8
    moons = toy2d.get("moons")
    out2 = evaluate(moons.sample(500, 1), moons, metrics=("swd",))
    assert set(out2) == {"swd"}
    out3 = evaluate(moons.sample(500, 1), moons, n_ref=800)
    assert set(out3) == set(METRICS)
    with pytest.raises(LabError, match="allowed"):
        evaluate(x, src, metrics=("fid",))
