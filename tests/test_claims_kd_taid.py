"""Claim tests of TAID, BD-KD and DKD (each compares methods measured in the same test, same seeds,
equal steps, batch and student)."""
from __future__ import annotations

import statistics

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
    m = cls(f"kd/{task}/teacher", task, cfg, seed=seed)
    for _ in lab.train(m):
        pass
    return m.history[-1]


@pytest.mark.claim
def test_taid_student_is_closer_to_the_true_language_than_forward_and_reverse_kl():
    """Capacity gap (TinyLM dim 8 student, dim 64 teacher): at equal steps TAID's student has a lower
    KL to the TRUE next-token distributions than the forward-KL and the reverse-KL students."""
    taid = lab.kd.get("taid")
    base = {k: v for k, v in taid.bench_config.items() if k in ("steps", "batch", "lr")}
    base["eval_every"] = base["steps"]
    seeds = (0, 1)
    res = {"taid": [], "fkl": [], "rkl": []}
    for seed in seeds:
        res["taid"].append(_last(taid, "language", {**base, **taid.bench_config}, seed)["kl_truth"])
        res["fkl"].append(_last(lab.kd.get("kd"), "language",
                                {**base, "ce_weight": 0.0, "kd_weight": 1.0, "temperature": 1.0}, seed)["kl_truth"])
        res["rkl"].append(_last(_ReverseKL, "language", base, seed)["kl_truth"])
    mean = {k: statistics.mean(v) for k, v in res.items()}
    print("kl_truth", {k: round(v, 4) for k, v in mean.items()}, res)
    assert mean["taid"] < mean["fkl"], mean
    assert mean["taid"] < mean["rkl"], mean


@pytest.mark.claim
def test_bdkd_has_lower_test_ece_than_kd_on_the_hard_task_at_1000_steps():
    """Calibration (hard task, MLP[16] student, 0.67-accuracy teacher, 1000 steps, where KD students end
    over-confident): the entropy-balanced forward/reverse KL student has a lower test ECE than Hinton KD at
    equal steps (mean over seeds); accuracy is reported, not asserted (it is equal within noise)."""
    cfg = dict(lab.kd.get("bdkd").bench_config)
    seeds = (0, 1, 2, 3)
    rows = {name: [_last(lab.kd.get(name), "hard", cfg, s) for s in seeds] for name in ("kd", "bdkd")}
    ece = {k: statistics.mean(r["ece"] for r in v) for k, v in rows.items()}
    acc = {k: statistics.mean(r["acc"] for r in v) for k, v in rows.items()}
    print("ece", ece, "acc", acc)
    assert ece["bdkd"] < ece["kd"], (ece, acc)


@pytest.mark.claim
def test_dkd_beats_scratch_with_scarce_labels_on_digits():
    """Scarce labels (200 digits, 1000 steps): DKD (beta 2) is more accurate than the same student trained from
    scratch at equal steps (mean over seeds). DKD vs kd is within 0.6 points and not asserted (see dkd.py)."""
    cfg = dict(lab.kd.get("dkd").bench_config)
    plain = {k: v for k, v in cfg.items() if k in ("steps", "n_train")}
    seeds = (0, 1)
    acc = {name: statistics.mean(_last(lab.kd.get(name), "digits", cfg if name == "dkd" else plain, s)["acc"]
                                 for s in seeds)
           for name in ("scratch", "dkd")}
    print("acc", acc)
    assert acc["dkd"] > acc["scratch"], acc
