"""Classification data and the synthetic language with known conditionals (issue 5, section 1)."""
import itertools
import warnings

import numpy as np
import pytest
import torch

from lab.data.classification import digits_classification, hard_classification, toy2d_classification
from lab.data.language import SyntheticLanguage, kl_to_truth
from lab.errors import LabError


# -- classification -----------------------------------------------------------------------
def test_digits_classification_matches_the_digits_split():
    from lab.data.images import Digits

    x, y = digits_classification("train")
    assert x.shape == (1437, 1, 8, 8) and x.dtype == torch.float32 and y.dtype == torch.long
    assert torch.equal(x, Digits("train").x) and torch.equal(y, Digits("train").y)
    xf, yf = digits_classification("test", flatten=True)
    assert xf.shape == (360, 64) and yf.shape == (360,)
    assert xf.min() >= -1 and xf.max() <= 1 and set(yf.tolist()) == set(range(10))


def test_toy2d_classification_seeded():
    x, y = toy2d_classification("spirals", n=500, seed=3)
    x2, y2 = toy2d_classification("spirals", n=500, seed=3)
    x3, _ = toy2d_classification("spirals", n=500, seed=4)
    assert x.shape == (500, 2) and y.dtype == torch.long and set(y.tolist()) == {0, 1}
    assert torch.equal(x, x2) and torch.equal(y, y2) and not torch.equal(x, x3)


def test_hard_classification_determinism_and_splits():
    x, y = hard_classification(n=300, seed=1)
    x2, y2 = hard_classification(n=300, seed=1)
    xt, yt = hard_classification(n=300, seed=1, split="test")
    assert x.shape == (300, 32) and x.dtype == torch.float32 and y.dtype == torch.long
    assert torch.equal(x, x2) and torch.equal(y, y2)
    assert not torch.allclose(x[:10], xt[:10])  # independent inputs per split
    assert int(y.min()) >= 0 and int(y.max()) < 10


def test_hard_classification_has_a_capacity_gap():
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import MLPClassifier

    xtr, ytr = hard_classification(n=4000, seed=0)
    xte, yte = hard_classification(n=2000, seed=0, split="test")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning: trained briefly on purpose
        lin = LogisticRegression(max_iter=300).fit(xtr.numpy(), ytr.numpy()).score(xte.numpy(), yte.numpy())
        mlp = MLPClassifier((256, 256), max_iter=20, random_state=0).fit(xtr.numpy(), ytr.numpy()) \
            .score(xte.numpy(), yte.numpy())
    majority = np.bincount(yte.numpy()).max() / len(yte)
    assert lin > majority + 0.1  # the linear model learns something ...
    assert mlp >= lin + 0.1, (lin, mlp)  # ... but a big MLP does clearly better


@pytest.mark.parametrize("call, allowed", [
    (lambda: digits_classification("val"), "train, test"),
    (lambda: toy2d_classification("nope"), "moons"),
    (lambda: hard_classification(split="valid"), "train, test"),
    (lambda: hard_classification(n_classes=1), ">= 2"),
    (lambda: SyntheticLanguage(vocab=2), ">= 4"),
])
def test_bad_arguments_name_allowed_values(call, allowed):
    with pytest.raises(LabError, match=allowed) as e:
        call()
    assert "\n" not in str(e.value)


# -- synthetic language --------------------------------------------------------------------
@pytest.fixture(scope="module")
def lang():
    return SyntheticLanguage(vocab=16, n_states=8, seq_len=32, seed=0)


@pytest.fixture(scope="module")
def samples(lang):
    return lang.sample(20000, seed=0)


def test_language_sampling_shapes_and_determinism(lang, samples):
    assert samples.shape == (20000, 32) and samples.dtype == torch.long
    assert (samples[:, 0] == lang.bos).all() and lang.bos == 16 and lang.model_vocab == 17
    assert int(samples[:, 1:].max()) < 16 and int(samples[:, 1:].min()) >= 0
    assert torch.equal(lang.sample(50, seed=0), lang.sample(50, seed=0))
    assert not torch.equal(lang.sample(50, seed=1), lang.sample(50, seed=0))
    other = SyntheticLanguage(seed=1)
    assert not torch.allclose(other.emission, lang.emission)
    assert torch.equal(SyntheticLanguage(seed=0).emission, lang.emission)


def test_true_conditionals_are_distributions_and_multimodal(lang, samples):
    p = lang.true_next_token_probs(samples[:2000])
    assert p.shape == (2000, 32, 16) and p.dtype == torch.float32
    assert torch.allclose(p.sum(-1), torch.ones(2000, 32), atol=1e-5) and (p >= 0).all()
    assert (p > 0.15).sum(-1).float().mean() >= 2


def test_first_token_frequencies_match_truth(lang, samples):
    n = samples.shape[0]
    p0 = lang.true_next_token_probs(samples[:1])[0, 0].double()
    freq = torch.bincount(samples[:, 1], minlength=16).double() / n
    sigma = torch.sqrt(p0 * (1 - p0) / n)
    assert ((freq - p0).abs() <= 3 * sigma + 1e-4).all(), (freq, p0)


def test_exact_likelihood_against_brute_force_enumeration():
    # small language: enumerate every sequence and every hidden path independently of the forward algorithm
    lang = SyntheticLanguage(vocab=4, n_states=3, seq_len=5, seed=2)
    seqs = torch.tensor([[4, *s] for s in itertools.product(range(4), repeat=4)])
    logp = -lang.nll(seqs).double().sum(1)
    assert abs(float(logp.exp().sum()) - 1.0) < 1e-5
    E, T, pi = lang.emission, lang.transition, lang.initial
    for row in (0, 37, 255):
        toks = seqs[row, 1:].tolist()
        total = 0.0
        for path in itertools.product(range(3), repeat=4):
            pr = float(pi[path[0]])
            for i, (s, v) in enumerate(zip(path, toks)):
                pr *= float(E[s, v])
                if i + 1 < len(path):
                    pr *= float(T[s, v, path[i + 1]])
            total += pr
        assert abs(float(logp[row]) - np.log(total)) < 1e-4


def test_empirical_nll_matches_the_expected_nll(lang, samples):
    x = samples[:4000]
    nll = lang.nll(x).double()  # (n, 31)
    assert nll.shape == (4000, 31)
    expected = lang.entropy(x).double()[:, :-1]  # E[-log p(x_{i+1}|prefix)] given each prefix
    per_seq = (nll - expected).mean(1)
    se = per_seq.std() / np.sqrt(len(per_seq))
    assert abs(float(per_seq.mean())) < 3 * float(se), (float(nll.mean()), float(expected.mean()))


def test_kl_to_truth(lang, samples):
    x = samples[:1000]
    p = lang.true_next_token_probs(x)
    assert kl_to_truth(torch.log(p), x, lang) < 1e-6
    # a model with a BOS column that puts (almost) no mass on BOS: still ~0
    with_bos = torch.cat([torch.log(p), torch.full((1000, 32, 1), -30.0)], -1)
    assert lang.kl_to_truth(with_bos, x) < 1e-6
    uniform = kl_to_truth(torch.zeros(1000, 32, 16), x, lang)
    assert uniform > 0.1
    # the KL of a uniform model equals log V minus the mean true entropy
    assert abs(uniform - (np.log(16) - float(lang.entropy(x).mean()))) < 1e-4
    # a model for only the first 31 positions (trained on tokens[:, :-1]) is accepted
    assert kl_to_truth(torch.log(p[:, :31]), x, lang) < 1e-6
    with pytest.raises(LabError, match="allowed: 16 or 17"):
        kl_to_truth(torch.zeros(1000, 32, 5), x, lang)


def test_bad_tokens_raise(lang):
    with pytest.raises(LabError, match="BOS id 16"):
        lang.true_next_token_probs(torch.zeros(2, 5, dtype=torch.long))
    bad = torch.tensor([[16, 3, 99]])
    with pytest.raises(LabError, match="allowed: 0..15"):
        lang.nll(bad)
    with pytest.raises(LabError, match=">= 1"):
        lang.sample(0)
