"""Property tests for the logit divergences in lab.losses.logits (seeded random logits, several shapes)."""
import math

import pytest
import torch
import torch.nn.functional as F

from lab.errors import LabError
from lab.losses.logits import (DIVERGENCES, forward_kl, generalized_jsd, reverse_kl, skew_forward_kl,
                               skew_reverse_kl, tvd)

SEEDS = (0, 1, 2, 3)
SHAPES = ((10,), (5, 3), (4, 6, 11), (2, 3, 4, 7))  # 1-D single row, batch, batch x seq, more dims
SCALES = (0.5, 1.0, 3.0)


def pairs():
    """(student, teacher) logits over seeds, shapes and logit scales, drawn from seeded CPU generators."""
    for seed in SEEDS:
        g = torch.Generator().manual_seed(seed)
        for shape in SHAPES:
            for scale in SCALES:
                yield torch.randn(shape, generator=g) * scale, torch.randn(shape, generator=g) * scale


# every divergence with a few parameter settings; all take (student, teacher, **kw)
SETTINGS = [
    (forward_kl, {}), (forward_kl, {"temperature": 4.0}),
    (reverse_kl, {}), (reverse_kl, {"temperature": 2.0}),
    (generalized_jsd, {"beta": 0.5}), (generalized_jsd, {"beta": 0.0}), (generalized_jsd, {"beta": 1.0}),
    (generalized_jsd, {"beta": 1e-6}), (generalized_jsd, {"beta": 0.9, "temperature": 2.0}),
    (generalized_jsd, {"beta": 0.3, "normalized": False}),
    (skew_forward_kl, {}), (skew_forward_kl, {"alpha": 0.5, "temperature": 3.0}),
    (skew_reverse_kl, {}), (skew_reverse_kl, {"alpha": 0.5, "temperature": 3.0}),
    (tvd, {}), (tvd, {"temperature": 2.0}),
]
IDS = [f"{f.__name__}-{kw}" for f, kw in SETTINGS]


def kl_explicit(a_logits, b_logits, T):
    """KL(softmax(a/T) || softmax(b/T)) per row in float64, from probabilities (no log_softmax tricks)."""
    a = torch.softmax(a_logits.double() / T, -1)
    b = torch.softmax(b_logits.double() / T, -1)
    return (a * (a / b).log()).sum(-1)


@pytest.mark.parametrize("fn,kw", SETTINGS, ids=IDS)
def test_identical_inputs_give_zero(fn, kw):
    for s, _ in pairs():
        assert fn(s, s.clone(), reduction="none", **kw).abs().max().item() < 1e-6
        assert abs(fn(s, s.clone(), **kw).item()) < 1e-6


@pytest.mark.parametrize("fn,kw", SETTINGS, ids=IDS)
def test_non_negative_and_positive_when_different(fn, kw):
    for s, t in pairs():
        rows = fn(s, t, reduction="none", **kw)
        assert rows.shape == s.shape[:-1]
        assert rows.min().item() >= -1e-6
        assert rows.max().item() > 1e-4  # different distributions are told apart


@pytest.mark.parametrize("fn,kw", SETTINGS, ids=IDS)
def test_reductions_consistent(fn, kw):
    for s, t in pairs():
        none = fn(s, t, reduction="none", **kw)
        total = fn(s, t, reduction="sum", **kw)
        mean = fn(s, t, reduction="batchmean", **kw)
        rows = s.numel() // s.shape[-1]
        assert total.ndim == 0 and mean.ndim == 0
        assert torch.allclose(none.sum(), total, rtol=1e-5, atol=1e-6)
        assert torch.allclose(mean, total / rows, rtol=1e-5, atol=1e-6)
        assert torch.allclose(fn(s, t, **kw), mean)  # batchmean is the default


def test_forward_and_reverse_kl_against_explicit_computation_with_t_squared():
    T = 4.0
    for s, t in pairs():
        fwd = forward_kl(s, t, temperature=T, reduction="none").double()
        rev = reverse_kl(s, t, temperature=T, reduction="none").double()
        assert torch.allclose(fwd, T * T * kl_explicit(t, s, T), rtol=1e-4, atol=1e-6)
        assert torch.allclose(rev, T * T * kl_explicit(s, t, T), rtol=1e-4, atol=1e-6)
        # and not without the factor: the plain KL is 16 times smaller
        plain = kl_explicit(t, s, T)
        assert torch.allclose(fwd / plain, torch.full_like(plain, 16.0), rtol=1e-3)


def test_forward_kl_matches_torch_kl_div():
    T = 2.0
    for s, t in pairs():
        s2, t2 = s.reshape(-1, s.shape[-1]), t.reshape(-1, t.shape[-1])
        ref = F.kl_div(F.log_softmax(s2 / T, -1), F.softmax(t2 / T, -1), reduction="batchmean") * T * T
        assert torch.allclose(forward_kl(s, t, temperature=T), ref, rtol=1e-5, atol=1e-7)
        ref_sum = F.kl_div(F.log_softmax(s2 / T, -1), F.softmax(t2 / T, -1), reduction="sum") * T * T
        assert torch.allclose(forward_kl(s, t, temperature=T, reduction="sum"), ref_sum, rtol=1e-5, atol=1e-6)
        # the direction bug: swapping the arguments of kl_div gives a different number
    s, t = torch.randn(8, 10, generator=torch.Generator().manual_seed(9)) * 2, torch.zeros(8, 10)
    t[:, 0] = 5.0
    assert not torch.allclose(forward_kl(s, t), reverse_kl(s, t), rtol=1e-2)


def test_generalized_jsd_endpoints_and_continuity():
    for T in (1.0, 2.0):
        for s, t in pairs():
            fwd = forward_kl(s, t, temperature=T, reduction="none") / T**2
            rev = reverse_kl(s, t, temperature=T, reduction="none") / T**2
            at0 = generalized_jsd(s, t, beta=0.0, temperature=T, reduction="none")
            at1 = generalized_jsd(s, t, beta=1.0, temperature=T, reduction="none")
            assert torch.allclose(at0, fwd, rtol=1e-6, atol=1e-7)
            assert torch.allclose(at1, rev, rtol=1e-6, atol=1e-7)
            near0 = generalized_jsd(s, t, beta=1e-6, temperature=T, reduction="none")
            near1 = generalized_jsd(s, t, beta=1 - 1e-6, temperature=T, reduction="none")
            # the limit converges like beta * chi^2, large where q << p: compare at moderate logits
            if s.abs().max() < 4 and t.abs().max() < 4:
                assert torch.allclose(near0, at0, rtol=1e-3, atol=1e-5)
                assert torch.allclose(near1, at1, rtol=1e-3, atol=1e-5)
    # far from the endpoints the value differs (for close p, q every beta agrees with KL to
    # second order, so use peaked logits): the checks above can fail
    g = torch.Generator().manual_seed(3)
    s, t = torch.randn(6, 9, generator=g) * 4, torch.randn(6, 9, generator=g) * 4
    mid, at0 = generalized_jsd(s, t, beta=0.5), generalized_jsd(s, t, beta=0.0)
    assert (mid - at0).abs() > 0.05 * at0


def test_generalized_jsd_limit_converges_in_float64_for_peaked_logits():
    g = torch.Generator().manual_seed(5)
    s, t = (torch.randn(6, 9, generator=g, dtype=torch.float64) * 4 for _ in range(2))
    fwd, rev = forward_kl(s, t, reduction="none"), reverse_kl(s, t, reduction="none")
    errs0 = [(generalized_jsd(s, t, beta=b, reduction="none") - fwd).abs().max().item() for b in (1e-3, 1e-5, 1e-8)]
    errs1 = [(generalized_jsd(s, t, beta=1 - b, reduction="none") - rev).abs().max().item() for b in (1e-3, 1e-5, 1e-8)]
    for errs in (errs0, errs1):
        assert errs[0] > errs[1] > errs[2]
        assert errs[2] < 1e-3 and errs[2] < 1e-2 * errs[0]  # error shrinks like beta


def test_generalized_jsd_unnormalized_is_trl_formula_and_jumps_at_endpoints():
    for s, t in pairs():
        for beta in (0.1, 0.5, 0.9):
            p = torch.softmax(t.double(), -1)
            q = torch.softmax(s.double(), -1)
            m = beta * p + (1 - beta) * q
            ref = beta * (p * (p / m).log()).sum(-1) + (1 - beta) * (q * (q / m).log()).sum(-1)
            got = generalized_jsd(s, t, beta=beta, reduction="none", normalized=False)
            assert torch.allclose(got.double(), ref, rtol=1e-4, atol=1e-6)
            norm = generalized_jsd(s, t, beta=beta, reduction="none")
            assert torch.allclose(norm, got / (beta * (1 - beta)), rtol=1e-4, atol=1e-6)
    s, t = next(pairs())
    fwd = forward_kl(s, t)
    # TRL's value near beta = 0 is about beta * KL, while at beta = 0 it is KL itself
    assert generalized_jsd(s, t, beta=1e-6, normalized=False).item() < 1e-4 * fwd.item()
    assert torch.allclose(generalized_jsd(s, t, beta=0.0, normalized=False), fwd)


def test_skew_kl_endpoints():
    for T in (1.0, 3.0):
        for s, t in pairs():
            kw = dict(temperature=T, reduction="none")
            assert torch.allclose(skew_forward_kl(s, t, alpha=0.0, **kw), forward_kl(s, t, **kw), rtol=1e-5, atol=1e-6)
            assert torch.allclose(skew_reverse_kl(s, t, alpha=0.0, **kw), reverse_kl(s, t, **kw), rtol=1e-5, atol=1e-6)
            assert skew_forward_kl(s, t, alpha=1.0, **kw).abs().max() < 1e-6
            assert skew_reverse_kl(s, t, alpha=1.0, **kw).abs().max() < 1e-6


def test_skew_kl_against_explicit_mixture_and_bound():
    alpha = 0.1
    for s, t in pairs():
        p, q = torch.softmax(t.double(), -1), torch.softmax(s.double(), -1)
        sk = (p * (p / (alpha * p + (1 - alpha) * q)).log()).sum(-1)
        srk = (q * (q / (alpha * q + (1 - alpha) * p)).log()).sum(-1)
        assert torch.allclose(skew_forward_kl(s, t, alpha=alpha, reduction="none").double(), sk, rtol=1e-4, atol=1e-6)
        assert torch.allclose(skew_reverse_kl(s, t, alpha=alpha, reduction="none").double(), srk, rtol=1e-4, atol=1e-6)
        assert skew_forward_kl(s, t, alpha=alpha, reduction="none").max() <= math.log(1 / alpha) + 1e-5


def test_tvd_symmetric_bounded_and_explicit():
    for s, t in pairs():
        a = tvd(s, t, reduction="none")
        assert torch.allclose(a, tvd(t, s, reduction="none"), atol=1e-7)
        assert a.min() >= 0 and a.max() <= 1 + 1e-6
        p, q = torch.softmax(t.double(), -1), torch.softmax(s.double(), -1)
        assert torch.allclose(a.double(), 0.5 * (p - q).abs().sum(-1), atol=1e-6)
    # disjoint one-hot-like distributions are at distance 1
    s, t = torch.full((3, 5), -1e4), torch.full((3, 5), -1e4)
    s[:, 0], t[:, 1] = 0.0, 0.0
    assert torch.allclose(tvd(s, t), torch.tensor(1.0))


@pytest.mark.parametrize("fn,kw", SETTINGS, ids=IDS)
def test_gradients_finite_for_extreme_logits(fn, kw):
    g = torch.Generator().manual_seed(7)
    s = (torch.rand(4, 6, generator=g) * 2e4 - 1e4).requires_grad_(True)  # spread 1e4 either side
    t = (torch.rand(4, 6, generator=g) * 2e4 - 1e4).requires_grad_(True)
    loss = fn(s, t, **kw)
    loss.backward()
    assert torch.isfinite(loss)
    assert torch.isfinite(s.grad).all() and torch.isfinite(t.grad).all()
    assert s.grad.abs().sum() > 0  # the student does get a signal


def test_half_precision_inputs_are_computed_in_float32():
    s, t = next(pairs())
    ref = forward_kl(s.half().float(), t.half().float())
    got = forward_kl(s.half(), t.half())
    assert got.dtype == torch.float32
    assert torch.allclose(got, ref, rtol=1e-5)


def test_registry_names():
    assert set(DIVERGENCES) == {"forward_kl", "reverse_kl", "generalized_jsd", "skew_forward_kl",
                                "skew_reverse_kl", "tvd"}


@pytest.mark.parametrize("call,needle", [
    (lambda s, t: forward_kl(s, t, reduction="mean"), "batchmean, sum, none"),
    (lambda s, t: reverse_kl(s, t, temperature=0.0), "temperature"),
    (lambda s, t: tvd(s, t, temperature=-1.0), "temperature"),
    (lambda s, t: generalized_jsd(s, t, beta=1.5), "[0, 1]"),
    (lambda s, t: generalized_jsd(s, t, beta=-0.1), "[0, 1]"),
    (lambda s, t: skew_forward_kl(s, t, alpha=2.0), "[0, 1]"),
    (lambda s, t: skew_reverse_kl(s, t, alpha=-1e-3), "[0, 1]"),
    (lambda s, t: forward_kl(s, t[:, :-1]), "shape"),
    (lambda s, t: forward_kl(s, torch.tensor(1.0)), "class dimension"),
])
def test_bad_input_raises_one_line_lab_error(call, needle):
    s, t = torch.randn(3, 5), torch.randn(3, 5)
    with pytest.raises(LabError) as e:
        call(s, t)
    msg = str(e.value)
    assert "\n" not in msg and needle in msg
