"""Claim tests of TAID, BD-KD and DKD (each compares methods measured in the same test, same seeds,
equal steps, batch and student).

Seeds: each test runs on seeds its method's settings were NOT tuned on (TAID's on seeds 0-4, BD-KD's on 0-3 and
30-35, DKD's on 0-3 and 10-17). Margins: a gap counts only when it exceeds one standard deviation across seeds (the
larger of the two runs compared, unless the docstring says paired)."""
from __future__ import annotations

import statistics

import numpy as np
import pytest

import lab
from lab.kd.base import KDMethod, flat
from lab.losses import reverse_kl


class _ReverseKL(KDMethod):
    """The reverse-KL baseline of the TAID claim: T=1 KL(q_S || p_T) alone (not registered)."""

    name = "reverse-kl-baseline"

    def loss(self, student_logits, teacher_logits, y, batch, it):
        r = reverse_kl(flat(student_logits), flat(teacher_logits), temperature=1.0)
        return r, {"rkl": r}


def _last(cls, task, cfg, seed):
    m = cls(f"kd/{task}/teacher" if cls.needs_teacher else None, task, cfg, seed=seed)
    for _ in lab.train(m):
        pass
    return m.history[-1]


def _sd(*runs):
    return max(statistics.stdev(r) for r in runs)


@pytest.mark.claim
def test_taid_student_is_closer_to_the_true_language_than_forward_and_reverse_kl():
    """Capacity gap (TinyLM dim 8 student, dim 64 teacher): at equal steps, batch and lr TAID's student has a lower
    KL to the TRUE next-token distributions than the forward-KL and the reverse-KL students, by more than one
    seed-standard-deviation, on seeds 10-14 (TAID's t_start / lr were chosen on seeds 0-4).

    Not asserted: at lr 3e-2, better for every method here, the gap to forward KL shrinks to about one std (seeds
    10-17: 0.0467±0.0016 vs 0.0479±0.0011; see lab/kd/logit/taid.py)."""
    taid = lab.kd.get("taid")
    base = {k: v for k, v in taid.bench_config.items() if k in ("steps", "batch", "lr")}
    base["eval_every"] = base["steps"]
    seeds = (10, 11, 12, 13, 14)
    res = {"taid": [], "fkl": [], "rkl": []}
    for seed in seeds:
        res["taid"].append(_last(taid, "language", {**base, **taid.bench_config}, seed)["kl_truth"])
        res["fkl"].append(_last(lab.kd.get("kd"), "language",
                                {**base, "ce_weight": 0.0, "kd_weight": 1.0, "temperature": 1.0}, seed)["kl_truth"])
        res["rkl"].append(_last(_ReverseKL, "language", base, seed)["kl_truth"])
    mean = {k: statistics.mean(v) for k, v in res.items()}
    print("kl_truth", {k: round(v, 4) for k, v in mean.items()}, res)
    assert mean["fkl"] - mean["taid"] > _sd(res["taid"], res["fkl"]), (mean, res)
    assert mean["rkl"] - mean["taid"] > _sd(res["taid"], res["rkl"]), (mean, res)


@pytest.mark.claim
def test_bdkd_is_more_accurate_than_kd_and_lowers_its_ece_at_t1_on_the_hard_task():
    """BD-KD claims a more accurate and better calibrated student than KD. On ``hard`` (MLP[16] student, 0.67-accuracy
    teacher, 1000 steps) at T = 1 for both (the bench setting; equal CE/KD weights 0.1/0.9, seeds 40-47, tuned on
    30-35): bdkd's test accuracy beats kd's by more than one seed-std; its test ECE is lower by more than the std of
    the per-seed (paired: same seed, same initial student and batches) ECE differences -- but not by more than the
    seeds' ECE spread itself (about 0.015), and (not asserted) it stays above kd's ECE at kd's default T = 4 (0.085).

    At the former setting, T = 4, neither holds on unseen seeds (ECE 0.081 vs kd 0.080, seeds 10-17)."""
    cfg = dict(lab.kd.get("bdkd").bench_config)
    assert cfg["temperature"] == 1.0
    seeds = range(40, 48)
    rows = {name: [_last(lab.kd.get(name), "hard", cfg, s) for s in seeds] for name in ("kd", "bdkd")}
    acc = {k: [r["acc"] for r in v] for k, v in rows.items()}
    ece = {k: [r["ece"] for r in v] for k, v in rows.items()}
    d_ece = np.subtract(ece["bdkd"], ece["kd"])
    print("acc", acc, "\nece", ece, "\npaired ece diff", d_ece.mean(), d_ece.std(ddof=1))
    assert statistics.mean(acc["bdkd"]) - statistics.mean(acc["kd"]) > _sd(acc["bdkd"], acc["kd"]), acc
    assert -d_ece.mean() > d_ece.std(ddof=1), ece


@pytest.mark.claim
def test_dkd_matches_kd_and_beats_scratch_with_scarce_labels_on_digits():
    """DKD claims to beat KD. Scarce labels (200 digits, 1000 steps, MLP[32] student; DKD with the bench's beta 2),
    seeds 20-23: DKD is within one seed-std of plain kd (same student, steps, data, seeds) and beats scratch by more
    than one. Tuned on seeds 10-17 (beta 1 / 2 / 4, T 2 / 4 / 8, alpha 0.5 / 2), the best DKD led kd by about 0.009
    at T = 4, inside the seed spread; against kd at the same T = 8 by 0.006 (seeds 10-17) and 0.000 (seeds 20-27): a
    MISS of the paper's claim at toy scale (see lab/kd/logit/dkd.py)."""
    cfg = dict(lab.kd.get("dkd").bench_config)
    plain = {k: v for k, v in cfg.items() if k in ("steps", "n_train")}
    seeds = (20, 21, 22, 23)
    acc = {name: [_last(lab.kd.get(name), "digits", cfg if name == "dkd" else plain, s)["acc"] for s in seeds]
           for name in ("scratch", "kd", "dkd")}
    mean = {k: statistics.mean(v) for k, v in acc.items()}
    print("acc", mean, acc)
    assert abs(mean["dkd"] - mean["kd"]) < _sd(acc["dkd"], acc["kd"]), acc
    assert mean["dkd"] - mean["scratch"] > _sd(acc["dkd"], acc["scratch"]), acc
