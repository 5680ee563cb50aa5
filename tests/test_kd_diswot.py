"""DisWOT training-free student search: input validation, the score's properties, and the ranking claim."""
from __future__ import annotations

import pytest
import torch

from lab.errors import LabError
from lab.kd import diswot, get_task


@pytest.fixture(scope="module")
def batch():
    tk = get_task("digits")
    return tk.x_train[:64], tk.y_train[:64]


MLP = {"type": "clf_mlp", "in_dim": 64, "hidden": [16], "n_classes": 10}
TEACHER = {"type": "clf_cnn", "in_channels": 1, "size": 8, "channels": [32, 64], "n_classes": 10}


def test_score_is_seeded_and_bounded(batch):
    x, y = batch
    a = diswot.score(TEACHER, MLP, x, y, seed=0)
    b = diswot.score(TEACHER, MLP, x, y, seed=0)
    c = diswot.score(TEACHER, MLP, x, y, seed=1)
    assert a == b and a != c
    assert set(a) == {"semantic", "relation", "total"}
    assert a["semantic"] <= 0 and a["relation"] <= 0 and a["total"] == pytest.approx(a["semantic"] + a["relation"])


def test_a_network_scored_against_itself_is_perfectly_similar(batch):
    x, y = batch
    from lab.nets.classifiers import build_classifier

    net = build_classifier(MLP)
    s = diswot.score(net, net, x, y)
    assert s["semantic"] == pytest.approx(0, abs=1e-12) and s["relation"] == pytest.approx(0, abs=1e-12)
    # a different candidate is less similar to it than itself
    other = diswot.score(net, {**MLP, "hidden": [4]}, x, y)
    assert other["total"] < s["total"]


def test_semantic_gradient_is_the_cross_entropy_gradient_of_the_head_and_frozen_teachers_work(batch):
    import torch.nn.functional as F

    from lab.kd import load_teacher
    from lab.nets.classifiers import build_classifier

    x, y = batch
    torch.manual_seed(0)
    net = build_classifier(TEACHER)
    g, f = diswot.probe(net, x, y, "teacher")
    F.cross_entropy(net(x), y).backward()
    assert torch.allclose(g, net.head.weight.grad, atol=1e-6) and f.shape == (64, net.head.in_features)
    trained = load_teacher("kd/digits/teacher")  # frozen (requires_grad False)
    s = diswot.score(trained, MLP, x, y)
    assert s["total"] < 0 and s["total"] != diswot.score(TEACHER, MLP, x, y)["total"]


@pytest.mark.parametrize("bad, match", [
    (dict(student_spec={"hidden": [8]}), "student_spec"),
    (dict(student_spec="mlp"), "student_spec"),
    (dict(teacher=42), "teacher"),
    (dict(student_spec={**MLP, "n_classes": 3}), "classes"),
    (dict(y_batch=torch.zeros(5, dtype=torch.long)), "y_batch"),
    (dict(y_batch=torch.zeros(64)), "y_batch"),
    (dict(x_batch=torch.zeros(1, 64)), "x_batch"),
    (dict(x_batch=[[0.0] * 64]), "x_batch"),
    (dict(repeats=0), "repeats"),
])
def test_score_refuses_bad_inputs_with_one_line(batch, bad, match):
    x, y = batch
    kw = dict(teacher=TEACHER, student_spec=MLP, x_batch=x, y_batch=y, seed=0, **{})
    kw.update(bad)
    with pytest.raises(LabError, match=match) as e:
        diswot.score(**kw)
    assert "\n" not in str(e.value) and "allowed" in str(e.value)


def test_search_and_kendall_tau_validate_their_inputs():
    with pytest.raises(LabError, match="candidates"):
        diswot.search({}, "digits")
    with pytest.raises(LabError, match="task"):
        diswot.search({"a": MLP}, "language")
    with pytest.raises(LabError, match="batch"):
        diswot.search({"a": MLP}, "digits", batch=1)
    with pytest.raises(LabError, match="train_steps"):
        diswot.search({"a": MLP}, "digits", train_steps=-1)
    with pytest.raises(LabError, match="allowed"):
        diswot.kendall_tau([1, 2, 3], [1, 2])
    assert diswot.kendall_tau([1, 2, 3], [10, 20, 30])[0] == pytest.approx(1.0)


def test_search_ranks_by_total_without_training():
    df = diswot.search({"small": {**MLP, "hidden": [4]}, "wide": {**MLP, "hidden": [64]}}, "digits", batch=32)
    assert list(df["rank"]) == [1, 2] and df["total"].is_monotonic_decreasing
    assert {"name", "params", "semantic", "relation", "total", "spec"} <= set(df.columns)
    assert "acc" not in df.columns


def test_candidate_pool_extends_the_defaults_and_ranking_study_validates_its_inputs():
    pool = diswot.candidate_pool("digits")
    assert len(pool) == 16 and diswot.default_candidates("digits").items() <= pool.items()
    assert len({str(v) for v in pool.values()}) == 16
    with pytest.raises(LabError, match="baseline_steps"):
        diswot.ranking_study({"a": MLP}, train_steps=10, baseline_steps=10)
    with pytest.raises(LabError, match="search_seeds"):
        diswot.ranking_study({"a": MLP}, search_seeds=())
    with pytest.raises(LabError, match="image"):
        diswot.candidate_pool("hard")


@pytest.mark.claim
def test_diswot_ranks_candidates_better_than_chance_but_worse_than_parameter_count_and_a_10_step_loss():
    """The paper's claim: the training-free similarity of randomly initialised teacher/candidate pairs ranks the
    candidates like their accuracy after distillation, better than other cheap proxies. Sixteen digits candidates
    (:func:`lab.kd.diswot.candidate_pool`, MLPs and CNNs of 210-9,610 parameters), each distilled with ``kd`` for 200
    steps in this test; DisWOT scored on three minibatches / initialisation sets (search seeds 1-3, three inits
    each); two baselines measured on the same candidates: the parameter count, and the kd training loss after 10
    of the same steps.

    What holds: DisWOT's Kendall tau is positive for every search seed and its mean exceeds one standard deviation
    of tau under the null of a random ranking. What does not (asserted as measured, a MISS of the paper's claim):
    both baselines rank the candidates better. DisWOT scores the CNN candidates as most similar to the CNN teacher,
    but they distil slowest; the parameter count is a strong proxy on this toy space (also at 1000 training
    steps: tau 0.81 vs DisWOT's 0.34, seed 0)."""
    df = diswot.ranking_study(diswot.candidate_pool("digits"), "digits", train_steps=200, search_seeds=(1, 2, 3),
                              repeats=3, baseline_steps=10)
    tau, n = df.attrs["tau"], len(df)
    null_sd = (2 * (2 * n + 5) / (9 * n * (n - 1))) ** 0.5
    print(df.drop(columns=["spec"]).to_string(), "\ntau", tau, "p", df.attrs["p"], "null sd", null_sd)
    assert n == 16 and all(t > 0 for t in tau["diswot_per_seed"]), tau
    assert tau["diswot"] > null_sd, tau
    assert tau["params"] > tau["diswot"] and tau["early_loss"] > tau["diswot"], tau
