"""Online and self-distillation (dml, born_again) and function matching: config validation, the born-again
generations and their resume, and the papers' claims at toy scale (each claim measured against its baseline
inside the same test, same seeds, same steps and batch)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import lab
from lab.errors import LabError
from lab.io import load_state, save_state
from lab.kd import get


def _run(name, task, cfg, seed, teacher=None):
    m = get(name)(teacher, task, cfg, seed=seed)
    for _ in lab.train(m):
        pass
    return m


# ------------------------------------------------------------------ config validation
@pytest.mark.parametrize("n", [1, 0, 2.0, True, "2"])
def test_dml_refuses_bad_n_peers(n):
    with pytest.raises(LabError, match="n_peers") as e:
        get("dml").Config(n_peers=n)
    assert "allowed" in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("g, steps", [(1, 100), (0, 100), (2.5, 100), (5, 4), (True, 100)])
def test_born_again_refuses_bad_generations(g, steps):
    with pytest.raises(LabError, match="generations") as e:
        get("born_again").Config(generations=g, steps=steps)
    assert "allowed" in str(e.value) and "\n" not in str(e.value)


def test_function_matching_refuses_bad_switches_and_the_language_task():
    with pytest.raises(LabError, match="mixup"):
        get("function_matching").Config(mixup="yes")
    with pytest.raises(LabError, match="consistent"):
        get("function_matching").Config(consistent=1)
    with pytest.raises(LabError, match="not lm"):
        get("function_matching")("kd/language/teacher", "language", {"steps": 2})


# ------------------------------------------------------------------ mechanisms
def test_dml_peers_differ_and_each_gets_only_its_own_gradient():
    m = get("dml")(None, "digits", {"steps": 4, "batch": 16, "n_peers": 3}, seed=0)
    assert len(m.peers) == 3 and m.peers[0] is m.student and set(m.optimizers) == {"student", "peer1", "peer2"}
    x = m.task.x_train[:16]
    zs = m.peer_logits(x)
    assert not torch.allclose(zs[0], zs[1])  # different initialisations
    loss, terms = m.compute({"x": x, "y": m.task.y_train[:16]}, 0)
    loss.backward()
    # peer 0's gradient equals the gradient of its own loss alone (the others detached)
    g_all = [p.grad.clone() for p in m.student.parameters()]
    m.student.zero_grad()
    from lab.losses import forward_kl

    z = [m.student(x)] + [p(x).detach() for p in m.peers[1:]]
    own = m.ce(z[0], m.task.y_train[:16]) + sum(forward_kl(z[0], zl) for zl in z[1:]) / 2
    own.backward()
    for a, p in zip(g_all, m.student.parameters()):
        assert torch.allclose(a, p.grad, atol=1e-6)
    tg = m.targets({"x": x, "y": m.task.y_train[:16]})
    assert torch.allclose(tg.target.sum(-1), torch.ones(16))


def test_born_again_generations_resume_across_a_boundary(tmp_path):
    """A run stopped before a generation boundary and resumed from a checkpoint on disk (safetensors + JSON)
    crosses the boundary exactly as an uninterrupted run: same generations, same weights, same history."""
    cfg = {"steps": 30, "batch": 32, "generations": 3}
    straight = _run("born_again", "digits", cfg, seed=3)
    assert straight.generation == 2 and straight.boundaries() == [10, 20]
    assert [h["gen"] for h in straight.history] == [0, 0, 0, 1, 1, 1, 2, 2, 2, 2]  # eval every 3 steps
    first = get("born_again")(None, "digits", cfg, seed=3)
    for _ in lab.train(first, steps=15):  # inside generation 1
        pass
    save_state(tmp_path / "ckpt", first.state_dict())
    second = get("born_again")(None, "digits", cfg, seed=3)
    second.load_state_dict(load_state(tmp_path / "ckpt"))
    assert second.generation == 1 and "gen0" in second.nets()
    for _ in lab.train(second):  # crosses the boundary at step 20
        pass
    assert second.generation == 2 and set(second.nets()) == {"student", "gen0", "gen1"}
    for name, net in straight.nets().items():
        for k, v in net.state_dict().items():
            assert torch.equal(v, second.nets()[name].state_dict()[k]), (name, k)
    assert second.history == straight.history
    x = straight.task.x_test[:20]
    assert torch.equal(straight.ensemble_logits(x), second.ensemble_logits(x))
    # the ensemble is the mean of the generations' distributions
    probs = torch.stack([torch.softmax(straight.task.logits(n, x), -1) for n in straight.generations_nets()]).mean(0)
    assert torch.allclose(straight.ensemble_logits(x).exp(), probs, atol=1e-6)
    # frozen generations do not train; a new generation starts from a fresh network
    assert all(not p.requires_grad for p in straight.nets()["gen0"].parameters())
    assert not torch.equal(straight.nets()["gen0"].head.weight, straight.nets()["gen1"].head.weight)


def test_function_matching_feeds_teacher_and_student_the_same_mixed_input():
    m = get("function_matching")("kd/digits/teacher", "digits", {"steps": 2, "batch": 16}, seed=0)
    seen = {}
    m.teacher.register_forward_pre_hook(lambda mod, a: seen.__setitem__("t", a[0].clone()))
    m.student.register_forward_pre_hook(lambda mod, a: seen.__setitem__("s", a[0].clone()))
    batch = m.sample_batch(0)
    loss, terms = m.compute(batch, 0)
    assert torch.equal(seen["t"], seen["s"]) and not torch.equal(seen["s"], batch["x"])  # mixed, identical
    assert set(terms) == {"kd"}  # no labels
    m2 = get("function_matching")("kd/digits/teacher", "digits", {"steps": 2, "batch": 16, "consistent": False},
                                  seed=0)
    m2.teacher.register_forward_pre_hook(lambda mod, a: seen.__setitem__("t", a[0].clone()))
    m2.student.register_forward_pre_hook(lambda mod, a: seen.__setitem__("s", a[0].clone()))
    m2.compute(m2.sample_batch(0), 0)
    assert not torch.equal(seen["t"], seen["s"])


# ------------------------------------------------------------------ claims
@pytest.mark.claim
def test_dml_peer_beats_scratch_by_more_than_the_seed_spread_with_1000_examples():
    """Deep mutual learning: peer 0 of a 2-peer cohort ends with a higher test accuracy than the same student
    trained alone (scratch), same steps / batch / seeds / training examples, on the ``hard`` task with 1,000 of its
    training examples (a narrow MLP[16] student, 2000 steps, no teacher used; dml's bench config). The gain exceeds
    the larger seed-std of the two runs and the std of the per-seed gains (paired: same seed, same initial student,
    same batches), on seeds 40-47 (the setting was chosen on seeds 30-35; see lab/kd/online/dml.py).

    Not asserted (inside the seed spread): with all 4,000 examples at 1000 steps the gain is about +0.002 to +0.007."""
    cfg = {**lab.kd.get("dml").bench_config, "batch": 64}
    assert cfg["n_train"] == 1000
    dml = [_run("dml", "hard", cfg, s).evaluate()["acc"] for s in SEEDS]
    scratch = [_run("scratch", "hard", cfg, s).evaluate()["acc"] for s in SEEDS]
    gain = np.subtract(dml, scratch)
    print("dml", np.mean(dml), dml, "scratch", np.mean(scratch), scratch, "gain", gain.mean(), gain.std(ddof=1))
    assert gain.mean() > max(np.std(dml, ddof=1), np.std(scratch, ddof=1)), (dml, scratch)
    assert gain.mean() > gain.std(ddof=1), gain


SEEDS = range(40, 48)


@pytest.mark.claim
def test_function_matching_is_patient_where_fixed_view_kd_overfits():
    """'A good teacher is patient and consistent': with 200 training digits and a long schedule, fixed-view
    ``kd`` peaks early and then overfits (its last evaluation below its best), while function matching
    (identical shifted + mixed-up views for teacher and student, KL only, no labels) keeps improving to the end
    of the run and ends above kd. Same steps, batch, lr, seed and training images."""
    cfg = {"steps": FM_STEPS, "batch": 64, "lr": 3e-3, "n_train": 200, "eval_every": FM_STEPS // 10}
    fm = _run("function_matching", "digits", cfg, 0, teacher="kd/digits/teacher")
    kd = _run("kd", "digits", cfg, 0, teacher="kd/digits/teacher")
    f, k = fm.summary(), kd.summary()
    curve = lambda m: [round(h["acc"], 3) for h in m.history]  # noqa: E731
    print("function_matching", curve(fm), "\nkd", curve(kd))
    assert f["last/acc"] > k["last/acc"]                       # consistent + patient beats fixed-view KD
    assert k["best/acc"] - k["last/acc"] > 0.01                # kd overfits the 200 images
    assert f["best/acc"] - f["last/acc"] < k["best/acc"] - k["last/acc"]
    half = len(fm.history) // 2 - 1
    gain = lambda m: m.history[-1]["acc"] - m.history[half]["acc"]  # noqa: E731  second-half progress
    assert gain(fm) > 0.01 and gain(fm) > gain(kd) + 0.01      # patience pays for function matching only


FM_STEPS = 2000


@pytest.mark.claim
def test_born_again_later_generations_beat_their_teacher_generation():
    """Born-again networks: each student generation, distilled from the previous one (same architecture, same
    per-generation budget), ends above its teacher generation; the final generation and the ensemble beat
    generation 0, which is exactly ``scratch`` at steps / generations (same seed, same init, same batches).
    Measured on ``hard`` (MLP[16]), 3 generations x 1000 steps, mean over 3 seeds.

    Not asserted (does not hold here): beating scratch at equal TOTAL steps -- on ``hard`` scratch keeps
    improving for 3000 steps (0.70 vs the final generation's 0.61); on digits with 200 labels the ensemble and
    scratch tie within noise (0.848 vs 0.846)."""
    cfg = {"steps": BAN_STEPS, "generations": 3, "eval_every": BAN_STEPS // 3}
    ends, ens, scratch = [], [], []
    for s in range(3):
        m = _run("born_again", "hard", cfg, s)
        assert [h["gen"] for h in m.history] == [0, 1, 2]  # one evaluation at the end of each generation
        ends.append([h["acc"] for h in m.history])
        ens.append(m.evaluate_ensemble()["acc"])
        sc = _run("scratch", "hard", {"steps": BAN_STEPS // 3}, s)
        scratch.append(sc.evaluate()["acc"])
    ends = np.array(ends)
    print("generation ends", ends.mean(0), "ensemble", np.mean(ens), "scratch at steps/3", np.mean(scratch))
    assert np.allclose(ends[:, 0], scratch)                    # generation 0 is scratch at the same budget
    assert ends[:, 1].mean() > ends[:, 0].mean()                # the born-again student beats its teacher
    assert ends[:, 2].mean() > ends[:, 0].mean() + 0.005
    assert np.mean(ens) > ends[:, 0].mean() + 0.005


BAN_STEPS = 3000
