"""Image metrics on digits: every number is compared with a baseline measured in the same test."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lab.data.images import Digits
from lab.errors import LabError
from lab.metrics import images as M
from lab.nets import digits_eval as E


@pytest.fixture(scope="module")
def train():
    return Digits("train")


@pytest.fixture(scope="module")
def test_split():
    return Digits("test")


@pytest.fixture(scope="module")
def floor():
    return M.noise_floor("digits")


def _bad_sets(train):
    x, y = train.x, train.y
    g = torch.Generator().manual_seed(0)
    return {
        "noise": torch.randn(x.shape, generator=g).clamp(-1, 1),
        "blurred": F.avg_pool2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), 3, stride=1),
        "mean_image": x.mean(0, keepdim=True).expand_as(x) + 0.05 * torch.randn(x.shape, generator=g),
        "one_digit": x[:1].expand_as(x).clone(),
    }


def test_fd_floor_far_below_broken_samples(train, floor):
    assert set(M.KEYS) <= set(floor)
    for name, x in _bad_sets(train).items():
        fd = M.image_metrics(x, data="digits")["fd"]
        assert fd > 10 * floor["fd"], (name, fd, floor["fd"])


def test_kid_orders_sets_like_fd(train, floor):
    sets = _bad_sets(train)
    res = {name: M.image_metrics(x) for name, x in sets.items()}
    res["train"] = floor
    by_fd = sorted(res, key=lambda k: res[k]["fd"])
    by_kid = sorted(res, key=lambda k: res[k]["kid"])
    assert by_fd[0] == by_kid[0] == "train"
    # the three clearly broken sets (noise, mean image, one digit) keep their order; blurred is second under both
    assert by_fd[1] == by_kid[1] == "blurred"
    assert res["train"]["kid"] < 0.05 * min(r["kid"] for k, r in res.items() if k != "train")


def test_fd_is_zero_for_identical_and_shift_squared_for_shifted_gaussians():
    rng = np.random.default_rng(0)
    f = rng.normal(size=(2000, 8))
    assert M.frechet_distance(f, f) == pytest.approx(0.0, abs=1e-6)
    shift = np.full(8, 0.5)
    assert M.frechet_distance(f, f + shift) == pytest.approx((shift ** 2).sum(), rel=1e-6)
    # a scaled copy: |mu - s mu|^2 + Tr(C + s^2 C - 2 s C) = (1 - s)^2 (|mu|^2 + Tr(C))
    c = np.trace(np.cov(f, rowvar=False)) + (f.mean(0) ** 2).sum()
    assert M.frechet_distance(f, 2 * f) == pytest.approx(c, rel=1e-6)
    same = M.kid(f[:1000], f[1000:], subsets=20, subset_size=500)
    moved = M.kid(f[:1000], f[1000:] + shift, subsets=20, subset_size=500)
    assert abs(same) < 0.1 * moved


def test_precision_recall_mode_collapse_vs_train(train, floor):
    one = train.x[train.y == 3]
    pr = M.image_metrics(one, train.y[train.y == 3])
    assert floor["precision"] > 0.8 and floor["recall"] > 0.8
    assert pr["precision"] > 0.8 * floor["precision"]
    assert pr["recall"] < 0.3 and pr["recall"] < floor["recall"] / 3
    noise = M.image_metrics(_bad_sets(train)["noise"])
    assert noise["precision"] < 0.25 * floor["precision"]


def test_classifier_accuracy_and_label_permutation(test_split):
    x, y = test_split.x, test_split.y
    acc = M.class_accuracy(x, y)
    assert acc >= 0.95
    g = torch.Generator().manual_seed(0)
    perm = M.class_accuracy(x, y[torch.randperm(len(y), generator=g)])
    assert perm < 0.3
    # the judge is a different network from the feature extractor
    assert type(M.default_net("classifier", "cpu")) is not type(M.default_net("features", "cpu"))


def test_diversity_collapsed_below_real(train, test_split, floor):
    x, y = train.x, train.y
    # every class collapsed onto its first 3 images (repeated)
    keep = torch.cat([torch.nonzero(y == c)[:3, 0] for c in range(10)])
    idx = keep[torch.arange(300) % len(keep)]
    collapsed = M.diversity(x[idx], y[idx])
    real = M.diversity(test_split.x, test_split.y)
    assert collapsed < 0.7 * real
    assert real == pytest.approx(floor["diversity_ref"], rel=1e-9)
    assert M.diversity(x[:1].expand(50, -1, -1, -1), torch.zeros(50, dtype=torch.long)) == pytest.approx(0, abs=1e-6)


def test_deterministic_and_16x16(train):
    x = _bad_sets(train)["blurred"][:400]
    a, b = M.image_metrics(x, seed=3), M.image_metrics(x, seed=3)
    assert a == b
    x16 = Digits("train", 16).x
    f8, f16 = M.features(F.avg_pool2d(x16, 2)), M.features(x16)
    np.testing.assert_allclose(f8, f16, rtol=1e-5, atol=1e-5)
    fl16 = M.noise_floor("digits16")
    noise16 = M.image_metrics(torch.randn(x16.shape, generator=torch.Generator().manual_seed(0)).clamp(-1, 1),
                              data="digits16")
    assert noise16["fd"] > 10 * fl16["fd"]


def test_fd_bias_with_sample_size(floor):
    # FD shrinks with more samples of the same distribution: compare generators at the same n
    small = M.noise_floor("digits", n=200)
    assert small["n"] == 200 and small["fd"] > floor["fd"]


@pytest.mark.parametrize("bad", [torch.zeros(10, 3, 8, 8), torch.zeros(10, 1, 7, 7), torch.zeros(10, 64)])
def test_bad_shapes_raise(bad):
    with pytest.raises(LabError, match=r"\(N, 1, 8, 8\) or \(N, 1, 16, 16\)"):
        M.image_metrics(bad)
    with pytest.raises(LabError, match=r"\(N, 1, 8, 8\) or \(N, 1, 16, 16\)"):
        M.features(bad)


def test_bad_names_raise(test_split):
    with pytest.raises(LabError, match="allowed: digits, digits16"):
        M.image_metrics(test_split.x, data="mnist")
    with pytest.raises(LabError, match="allowed: digits, digits16"):
        M.noise_floor("cifar")
    with pytest.raises(LabError, match="allowed: features, classifier"):
        E.train_eval_net("judge")
    with pytest.raises(LabError, match="allowed: features, classifier"):
        E.find_eval_net("judge")
    with pytest.raises(LabError, match=r"labels must have shape \(360,\)"):
        M.class_accuracy(test_split.x, test_split.y[:10])


def test_shipped_folders_load_without_training(monkeypatch, test_split):
    def no_training(*a, **k):
        raise AssertionError("trained although the weights are shipped")

    monkeypatch.setattr(E, "train_eval_net", no_training)
    for kind in E.KINDS:
        net = E.load_eval_net(kind)
        assert net.folder == E.ASSETS / kind
        size = sum(p.stat().st_size for p in net.folder.iterdir())
        assert size < 1_000_000
        # the card's accuracy is what the loaded weights score now
        assert E.test_accuracy(net) == pytest.approx(net.card["test_accuracy"], abs=1e-4)
        assert net.card["test_accuracy"] >= 0.97


def test_missing_weights_are_trained_into_the_cache_once(monkeypatch, tmp_path):
    monkeypatch.setattr(E, "ASSETS", tmp_path / "no_assets")
    monkeypatch.setenv("LAB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setitem(E.RECIPES, "classifier", dict(E.RECIPES["classifier"], steps=60))
    calls = []
    real_train = E.train_eval_net
    monkeypatch.setattr(E, "train_eval_net", lambda *a, **k: calls.append(1) or real_train(*a, **k))
    net = E.load_eval_net("classifier", progress=False)
    assert net.folder == tmp_path / "cache" / "zoo" / "digits" / "classifier" and calls == [1]
    again = E.load_eval_net("classifier", progress=False)
    assert calls == [1] and again.folder == net.folder
    # same seed -> same weights
    other = real_train("classifier", steps=60)
    for (k, a), (_, b) in zip(net.state_dict().items(), other.state_dict().items()):
        assert torch.equal(a, b), k
    # a short-trained judge is already far better than chance, but worse than the shipped one
    assert 0.3 < net.card["test_accuracy"]
