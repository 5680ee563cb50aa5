"""Calibration probes (ECE, reliability, agreement, entropy, temperature sweep) and their figures."""
import numpy as np
import pytest
import torch

from lab.errors import LabError
from lab.probes.calibration import (agreement, ece, entropy_per_class, reliability, soft_labels,
                                    temperature_sweep)
from lab.viz.calibration import reliability_figure, temperature_sweep_figure


def _calibrated(n=200_000, k=10, scale=2.0, seed=0):
    """Logits with labels drawn from their own softmax: calibrated by construction."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, k, generator=g, dtype=torch.float64) * scale
    y = torch.multinomial(torch.softmax(z, 1), 1, generator=g).squeeze(1)
    return z, y


def _exactly_calibrated(n_per_level=20):
    """Binary probabilities at confidence levels c (bin centres) where exactly c * n_per_level rows are right."""
    probs, labels = [], []
    for c in (0.55, 0.65, 0.75, 0.85, 0.95):
        n_right = round(c * n_per_level)
        for i in range(n_per_level):
            probs.append([c, 1 - c])
            labels.append(0 if i < n_right else 1)
    return np.array(probs), np.array(labels)


def test_ece_zero_when_accuracy_equals_confidence_in_every_bin():
    p, y = _exactly_calibrated()
    assert ece(p, y, n_bins=10, logits=False) == pytest.approx(0.0, abs=1e-12)
    # the same predictions with every label flipped are wrong: ECE = mean over levels of |(1 - c) - c|
    flipped = ece(p, 1 - y, n_bins=10, logits=False)
    acc = np.array([1 - c for c in (0.55, 0.65, 0.75, 0.85, 0.95)])
    expected = float(np.mean(np.abs(acc - np.array([0.55, 0.65, 0.75, 0.85, 0.95]))))
    assert flipped == pytest.approx(expected, abs=1e-12)


def test_ece_by_hand_on_one_bin():
    # every row has confidence 0.9 and half are right: |0.5 - 0.9| = 0.4
    p = np.tile([[0.9, 0.05, 0.05]], (10, 1))
    y = np.array([0] * 5 + [1] * 5)
    assert ece(p, y, logits=False) == pytest.approx(0.4, abs=1e-12)


def test_ece_small_for_sampled_labels_and_larger_when_overconfident():
    z, y = _calibrated()
    calibrated = ece(z, y)
    over = ece(z * 5, y)
    assert calibrated < 0.02
    assert over > calibrated + 0.1
    # probabilities and logits give the same ECE
    assert ece(torch.softmax(z, 1), y, logits=False) == pytest.approx(calibrated, abs=1e-12)


def test_reliability_table():
    z, y = _calibrated(n=5000)
    df = reliability(z, y, n_bins=15)
    assert list(df.columns) == ["bin", "lower", "upper", "confidence", "accuracy", "count"]
    assert len(df) == 15 and int(df["count"].sum()) == 5000
    full = df[df["count"] > 0]
    assert ((full.confidence > full.lower) & (full.confidence <= full.upper)).all()
    assert df[df["count"] == 0].accuracy.isna().all()
    # accuracy matches a direct count over the rows of one bin
    conf, pred = torch.softmax(z, 1).max(1)
    b = int(full.sort_values("count").iloc[-1].bin)
    rows = (conf > df.lower[b]) & (conf <= df.upper[b])
    assert df.accuracy[b] == pytest.approx(float((pred[rows] == y[rows]).double().mean()), abs=1e-12)


def test_agreement():
    g = torch.Generator().manual_seed(1)
    t = torch.randn(1000, 10, generator=g)
    assert agreement(t, t) == 1.0
    assert agreement(t.numpy(), t * 3 + 1) == 1.0  # argmax unchanged by positive scaling and shifts
    s = torch.randn(1000, 10, generator=g)
    independent = agreement(s, t)
    assert abs(independent - 0.1) < 0.05  # independent logits agree at chance level 1/K
    # flip exactly 250 rows to a different class
    s2 = t.clone()
    s2[:250] = -t[:250]
    assert agreement(s2, t) == pytest.approx(0.75)


def test_temperature_sweep_entropy_increases():
    z, _ = _calibrated(n=2000, scale=3.0)
    df = temperature_sweep(z, temperatures=(0.5, 1, 2, 4, 8))
    assert list(df.temperature) == [0.5, 1, 2, 4, 8]
    assert np.all(np.diff(df.entropy) > 0)
    assert np.all(np.diff(df.top1_prob) < 0)
    assert np.all(np.diff(df.non_argmax_mass) > 0)
    assert np.allclose(df.top1_prob + df.non_argmax_mass, 1)
    assert (df.entropy < np.log(10)).all() and df.normalized_entropy.iloc[-1] > 0.9
    p = soft_labels(z, 4.0)
    assert torch.is_tensor(p) and torch.allclose(p.sum(1), torch.ones(2000, dtype=p.dtype))
    h = -(p * p.log()).sum(1).mean()
    assert float(h) == pytest.approx(df.entropy[3], rel=1e-9)
    assert isinstance(soft_labels(z.numpy(), 2), np.ndarray)


def test_entropy_per_class():
    # class 0 rows are confident (one large logit), class 1 rows uniform: entropy ~0 vs log K
    k = 5
    z = torch.zeros(20, k)
    z[:10, 0] = 50.0
    y = torch.tensor([0] * 10 + [1] * 10)
    df = entropy_per_class(z, y)
    assert list(df["class"]) == list(range(k)) and list(df["count"]) == [10, 10, 0, 0, 0]
    assert df.entropy[0] < 1e-6 and df.entropy[1] == pytest.approx(np.log(k))
    assert df.entropy[2:].isna().all()
    # a higher temperature raises the confident class's entropy
    assert entropy_per_class(z, y, temperature=20).entropy[0] > 0.5


def test_errors_are_one_line_lab_errors():
    z, y = _calibrated(n=100)
    bad = [lambda: ece(z, y, n_bins=0), lambda: ece(z, y[:50]), lambda: ece(z[:, :1], y[:100]),
           lambda: ece(z[0], y), lambda: ece(z, y + 10), lambda: ece(z, y, logits=False),
           lambda: agreement(z, z[:, :5]), lambda: temperature_sweep(z, (1, 0)),
           lambda: temperature_sweep(z, (-1,)), lambda: temperature_sweep(z, ()),
           lambda: soft_labels(z, 0), lambda: entropy_per_class(z, y, temperature=-2)]
    for f in bad:
        with pytest.raises(LabError) as e:
            f()
        assert "\n" not in str(e.value) and "allowed" in str(e.value)


def test_figures_have_expected_traces():
    z, y = _calibrated(n=5000)
    cal, over = reliability(z, y, n_bins=10), reliability(z * 5, y, n_bins=10)
    fig = reliability_figure({"calibrated": cal, "over-confident": over})
    kinds = [t.type for t in fig.data]
    assert kinds == ["bar", "bar", "scatter"]
    assert list(fig.data[2].x) == [0, 1] and list(fig.data[2].y) == [0, 1]
    assert len(fig.data[0].x) == int((cal["count"] > 0).sum())
    assert f"{ece(z, y, n_bins=10):.3f}" in fig.data[0].name
    assert len(reliability_figure(cal).data) == 2
    sweep = temperature_sweep(z)
    fig2 = temperature_sweep_figure(sweep)
    assert [t.name for t in fig2.data] == ["entropy", "top-1 probability", "non-argmax mass (dark knowledge)"]
    assert list(fig2.data[0].y) == list(sweep.entropy)
