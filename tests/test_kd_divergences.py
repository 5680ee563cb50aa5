"""Divergence KD methods (rkl, jsd, skew_kl, tvd) and the divergence explorer: wiring, validation, limits."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import lab
from lab.errors import LabError
from lab.kd import get
from lab.losses import forward_kl, reverse_kl
from lab.probes.divergence import explore, fit_categorical, fit_gaussian, two_gaussians, two_mode_teacher

METHODS = [("rkl", {}), ("jsd", {}), ("jsd", {"beta": 0.0}), ("jsd", {"beta": 1.0}),
           ("skew_kl", {}), ("skew_kl", {"direction": "reverse"}), ("tvd", {})]


def _method(name, cfg=None, task="digits"):
    return get(name)(f"kd/{task}/teacher", task, {"steps": 4, "batch": 16, **(cfg or {})}, seed=0)


# -- configs --------------------------------------------------------------------------------
@pytest.mark.parametrize("name,cfg,field", [("jsd", {"beta": 1.5}, "beta"), ("jsd", {"beta": "half"}, "beta"),
                                            ("skew_kl", {"alpha": 1.0}, "alpha"),
                                            ("skew_kl", {"alpha": -0.1}, "alpha")])
def test_bad_config_values_are_refused_in_one_line(name, cfg, field):
    with pytest.raises(LabError) as e:
        get(name).Config(**cfg)
    msg = str(e.value)
    assert "\n" not in msg and f"invalid {field}=" in msg and "allowed" in msg


def test_skew_direction_refusal_names_the_directions():
    with pytest.raises(LabError, match=r"invalid direction='sideways'; allowed: forward, reverse$"):
        get("skew_kl").Config(direction="sideways")


# -- losses ----------------------------------------------------------------------------------
@pytest.mark.parametrize("name,cfg", METHODS)
def test_divergence_is_zero_with_zero_gradient_at_the_teacher_and_positive_elsewhere(name, cfg):
    m = _method(name, cfg)
    t = torch.randn(32, 10, generator=torch.Generator().manual_seed(0)) * 3
    s = t.clone().requires_grad_(True)
    d = m.divergence(s, t)
    d.backward()
    assert abs(float(d.detach())) < 1e-6 and float(s.grad.abs().max()) < 1e-6
    s2 = (t + torch.randn(32, 10, generator=torch.Generator().manual_seed(1))).requires_grad_(True)
    d2 = m.divergence(s2, t)
    d2.backward()
    assert float(d2) > 1e-3
    with torch.no_grad():  # a small step against the gradient lowers the divergence
        assert float(m.divergence(s2 - 1e-2 * s2.grad / s2.grad.norm(), t)) < float(d2)


def test_rkl_is_forward_kl_with_the_arguments_swapped_and_jsd_ends_are_the_kls():
    g = torch.Generator().manual_seed(2)
    s, t = torch.randn(16, 10, generator=g), torch.randn(16, 10, generator=g) * 2
    T = 4.0
    assert torch.allclose(_method("rkl").divergence(s, t), forward_kl(t, s, temperature=T), atol=1e-6)
    # TRL's special cases: beta 0 is forward KL, beta 1 reverse KL, without the T^2 factor
    assert torch.allclose(_method("jsd", {"beta": 0.0}).divergence(s, t), forward_kl(s, t, temperature=T) / T ** 2,
                          atol=1e-6)
    assert torch.allclose(_method("jsd", {"beta": 1.0, "temperature": 1.0}).divergence(s, t), reverse_kl(s, t),
                          atol=1e-6)
    mid = float(_method("jsd", {"beta": 0.5}).divergence(s, t))
    assert 0 < mid <= np.log(2) + 1e-6  # JSD_0.5 is bounded by log 2


@pytest.mark.parametrize("name", ["rkl", "jsd", "skew_kl", "tvd"])
def test_total_loss_is_weighted_ce_plus_divergence(name):
    m = _method(name, {"ce_weight": 0.3, "kd_weight": 0.7})
    g = torch.Generator().manual_seed(3)
    s, t, y = torch.randn(8, 10, generator=g), torch.randn(8, 10, generator=g), torch.randint(0, 10, (8,), generator=g)
    loss, terms = m.loss(s, t, y, {}, 0)
    ce = torch.nn.functional.cross_entropy(s, y)
    assert torch.allclose(loss, 0.3 * ce + 0.7 * m.divergence(s, t), atol=1e-6)
    assert set(terms) == {"ce", name}


def test_skew_targets_are_the_mixture_of_its_direction():
    for direction in ("forward", "reverse"):
        m = _method("skew_kl", {"direction": direction, "alpha": 0.3})
        batch = m.sample_batch(0)
        tg = m.targets(batch)
        with torch.no_grad():
            q = torch.softmax(m.student(batch["x"]) / m.config.temperature, -1)
        if direction == "reverse":
            assert torch.allclose(tg.target, 0.7 * tg.teacher + 0.3 * q, atol=1e-6)
            assert torch.allclose(tg.student, q, atol=1e-6)
        else:
            assert torch.allclose(tg.target, tg.teacher)
            assert torch.allclose(tg.student, 0.3 * tg.teacher + 0.7 * q, atol=1e-6)
        assert tg.info["direction"] == direction and tg.info["alpha"] == 0.3 and "mixture" in tg.info


def test_methods_run_on_the_language_task():
    for name in ("rkl", "jsd", "skew_kl", "tvd"):
        m = _method(name, {"batch": 4}, task="language")
        outs = [s.out for s in lab.train(m)]
        assert all(np.isfinite(v) for o in outs for v in o.losses.values()) and "kl_truth" in m.history[-1]


# -- the explorer ----------------------------------------------------------------------------
@pytest.mark.parametrize("call,match", [
    (lambda: fit_categorical(np.ones((2, 3)) / 6, "forward_kl"), "teacher_probs has shape"),
    (lambda: fit_categorical([0.5, 0.6, -0.1], "forward_kl"), "negative"),
    (lambda: fit_categorical([0.2, 0.2, 0.2], "forward_kl"), "sums to"),
    (lambda: fit_categorical(two_mode_teacher(), "kl"), "unknown divergence 'kl'; allowed: forward_kl"),
    (lambda: fit_categorical(two_mode_teacher(), ("jsd", {"beta": 2})), "invalid jsd beta=2"),
    (lambda: fit_categorical(two_mode_teacher(), ("reverse_kl", {"beta": 0.5})), "allowed: none"),
    (lambda: fit_categorical(two_mode_teacher(), "tvd", steps=0), "invalid steps=0"),
    (lambda: fit_categorical(two_mode_teacher(), "tvd", family="mixture"), "allowed: one_mode, free"),
    (lambda: fit_categorical([0.1, 0.2, 0.3, 0.4], "tvd"), "single mode"),
    (lambda: fit_gaussian({"means": (1, 1), "stds": (1, 1), "weights": (1, 1)}), "two different means"),
    (lambda: fit_gaussian({"means": (0, 1)}), "invalid mixture"),
    (lambda: two_mode_teacher(K=10, separation=12), "invalid separation"),
    (lambda: two_gaussians(weights=(1, 0)), "invalid weights"),
    (lambda: explore(kind="poisson"), "unknown kind 'poisson'; allowed: categorical, gaussian"),
    (lambda: explore(["tvd", "tvd"]), "duplicate"),
])
def test_explorer_refuses_bad_inputs_in_one_line(call, match):
    with pytest.raises(LabError, match=match) as e:
        call()
    assert "\n" not in str(e.value)


def test_free_student_reaches_the_teacher_under_every_divergence():
    p = two_mode_teacher(K=12, separation=6, weights=(0.3, 0.7))
    for div in ("forward_kl", "reverse_kl", ("jsd", {"beta": 0.5}), ("skew_reverse_kl", {"alpha": 0.1})):
        f = fit_categorical(p, div, family="free", steps=300, lr=0.2)
        assert f["overlap"] > 0.98, (div, f["overlap"])
        assert f["trace"][-1] < 0.05 * f["trace"][0]


def test_explorer_is_seeded_and_reports_the_teacher():
    a = fit_gaussian(divergence="reverse_kl", steps=150, seed=3)
    b = fit_gaussian(divergence="reverse_kl", steps=150, seed=3)
    assert a["student_mean"] == b["student_mean"] and np.array_equal(a["trace"], b["trace"])
    assert abs(a["teacher_std"] - np.sqrt(0.5 ** 2 + 2.0 ** 2)) < 1e-9  # mixture of N(±2, 0.5²)
    assert abs(a["mode_std"] - 0.5) < 1e-3  # the within-mode std measured on the grid


def test_explorer_figure_draws_the_fits():
    from lab.viz.divergence import explorer_figure, landing_figure

    df, fits = explore(["forward_kl", "reverse_kl"], kind="gaussian", steps=100, return_fits=True)
    fig = explorer_figure((df, fits))
    students = [tr for tr in fig.data if tr.name == "student"]
    assert len(students) == 2
    assert np.allclose(students[1].y, fits["reverse_kl"]["student"])
    assert len(landing_figure(df).data) == 4
    with pytest.raises(LabError, match="allowed: fit_categorical"):
        explorer_figure({"a": 1})
    with pytest.raises(LabError, match="allowed: fit_categorical"):
        explorer_figure({"a": {"divergence": "tvd"}})
