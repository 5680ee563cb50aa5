"""Claims of the logit-distillation papers at toy scale: Hinton KD with scarce labels, reverse KL is
mode-seeking and forward KL mode-covering (MiniLLM, GKD), GKD's JSD_beta moves from one to the other with
beta. Every number is measured in the test against a baseline measured in the same test."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import lab
from lab.kd import get
from lab.probes.divergence import explore

SEEDS = (0, 1, 2)


def _train(name, task, cfg, seed):
    m = get(name)(None if name == "scratch" else f"kd/{task}/teacher", task, cfg, seed=seed)
    for _ in lab.train(m):
        pass
    return m


def _entropy(m) -> float:
    """Mean predictive entropy (nats, T = 1) of the student on the task's test split."""
    z = m.task.logits(m.student, m.task.x_test)
    z = z.reshape(-1, z.shape[-1]).double()
    return float(-(torch.softmax(z, -1) * torch.log_softmax(z, -1)).sum(-1).mean())


@pytest.mark.claim
def test_kd_beats_scratch_on_digits_with_200_labels():
    """Hinton et al.: soft targets carry what a few hard labels do not. 200 labelled digits, MLP[32] student,
    equal steps / batch / seeds; KD's mean test accuracy over 3 seeds beats scratch's."""
    cfg = {"steps": 400, "n_train": 200, "eval_every": 400}
    acc = {name: [_train(name, "digits", cfg, s).history[-1]["acc"] for s in SEEDS] for name in ("scratch", "kd")}
    assert np.mean(acc["kd"]) > np.mean(acc["scratch"]) + 0.005, acc


@pytest.mark.claim
@pytest.mark.parametrize("kind", ["categorical", "gaussian"])
def test_reverse_kl_is_mode_seeking_and_forward_kl_mode_covering(kind):
    """On the explorer's two-mode teacher, the one-mode student (or single Gaussian) fitted by reverse KL sits on
    one mode with that mode's std; fitted by forward KL it splits its mass over both with the whole teacher's
    std."""
    df = explore(["forward_kl", "reverse_kl"], kind=kind, steps=400, lr=0.1).set_index("divergence")
    fwd, rev = df.loc["forward_kl"], df.loc["reverse_kl"]
    assert rev["dominant_share"] > 0.95 and bool(rev["mode_seeking"]), rev.to_dict()
    assert abs(rev["std"] / rev["mode_std"] - 1) < 0.2, rev.to_dict()
    assert fwd["dominant_share"] < 0.6 and not bool(fwd["mode_seeking"]), fwd.to_dict()
    assert abs(fwd["std"] / fwd["teacher_std"] - 1) < 0.1, fwd.to_dict()


@pytest.mark.claim
def test_rkl_student_is_less_entropic_than_kd_student_under_a_capacity_gap():
    """The classifier-level signal: on the "hard" task (wide teacher about 0.67 acc, MLP[16] student that cannot
    match it), the rkl student's predictive entropy is lower than the kd student's (T = 1, equal steps, batch,
    seeds; mean over 3 seeds). rkl's accuracy there is lower (not asserted; see the report)."""
    cfg = {"steps": 300, "eval_every": 300, "temperature": 1.0}
    ent = {name: [_entropy(_train(name, "hard", cfg, s)) for s in SEEDS] for name in ("kd", "rkl")}
    assert np.mean(ent["rkl"]) < np.mean(ent["kd"]) - 0.1, ent


@pytest.mark.claim
@pytest.mark.parametrize("kind", ["categorical", "gaussian"])
def test_jsd_moves_from_forward_kl_to_reverse_kl_as_beta_goes_from_0_to_1(kind):
    """GKD's JSD_beta: near beta = 0 the fit is forward KL's (covering), near 1 reverse KL's (one mode); the mass
    on one mode never falls as beta rises."""
    betas = [0.05, 0.3, 0.5, 0.7, 0.95]
    divs = ["forward_kl", "reverse_kl"] + [("jsd", {"beta": b}) for b in betas]
    df = explore(divs, kind=kind, steps=400, lr=0.1).set_index("divergence")
    fwd, rev = df.loc["forward_kl"], df.loc["reverse_kl"]
    lo, hi = df.loc["jsd beta=0.05"], df.loc["jsd beta=0.95"]
    assert abs(lo["std"] - fwd["std"]) < 0.05 * fwd["std"] and abs(lo["dominant_share"] - fwd["dominant_share"]) < 0.05
    assert abs(hi["std"] - rev["std"]) < 0.05 * rev["std"] and abs(hi["dominant_share"] - rev["dominant_share"]) < 0.05
    share = [df.loc[f"jsd beta={b:g}", "dominant_share"] for b in betas]
    assert all(b >= a - 1e-3 for a, b in zip(share, share[1:])), share
    assert share[0] < 0.6 < 0.95 < share[-1], share
