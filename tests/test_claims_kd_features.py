"""Claims of the feature/relation KD methods at toy scale, each against ``scratch`` (the same student,
steps, batch and seeds, cross-entropy only) and, where the paper claims to beat Hinton KD (V_kD, FitNets), against
plain ``kd`` too, all measured in the same test.

Where a paper's claim does not hold here the test asserts what does (matching kd, a CKA property of the distilled
layer) and is named for it. Margins: a gap counts only when it exceeds the larger standard deviation across seeds of
the two runs compared (``sd``)."""
from __future__ import annotations

import functools
import statistics

import pytest

import lab
from lab.kd.base import SCARCE_LABELS
from lab.kd.feature.base import feature_cka

pytestmark = pytest.mark.claim

DIGITS = "kd/digits/teacher"
#: seeds no feature-KD setting was tuned on (vkd's and fitnets' weights were chosen on seeds 0-2 and 10-17)
FRESH = (20, 21, 22)


def trained(name, cfg, seeds, task="digits"):
    out = []
    for s in seeds:
        m = lab.kd.get(name)(None if name == "scratch" else f"kd/{task}/teacher", task, cfg, seed=s)
        for _ in lab.train(m):
            pass
        out.append(m)
    return out


def mean_last(ms, metric="acc"):
    return statistics.mean(m.history[-1][metric] for m in ms)


def vs_scratch(name, seeds, task="digits", cfg=None):
    cls = lab.kd.get(name)
    cfg = {**cls.bench_config, **(cfg or {})}
    base = {k: v for k, v in cfg.items() if k in ("steps", "batch", "n_train", "student", "lr", "augment")}
    return trained(name, cfg, seeds, task), trained("scratch", base, seeds, task)


def accs(ms):
    return [m.history[-1]["acc"] for m in ms]


def sd(*runs):
    """The larger standard deviation across seeds of the runs' last test accuracies."""
    return max(statistics.stdev(accs(ms)) for ms in runs)


@functools.lru_cache(maxsize=None)
def references():
    """(kd, scratch) on the scarce-label setting both vkd and fitnets use (200 labelled digits, 1000 steps, the
    MLP[32] student), seeds FRESH: measured once for the two tests below."""
    assert lab.kd.get("vkd").bench_config == SCARCE_LABELS
    return tuple(trained(name, dict(SCARCE_LABELS), FRESH) for name in ("kd", "scratch"))


def test_vkd_matches_kd_and_beats_scratch_with_200_labels():
    """V_kD claims to beat KD. Here its orthogonal-projection feature term adds nothing measurable to its own KD head:
    vkd is within one seed-standard-deviation of plain kd (same student, steps, data, seeds), and beats scratch by
    more than one. (Tuned: feat_weight 0 / 0.3 / 1 / 3 / 10 gave 0.869 / 0.870 / 0.868 / 0.868 / 0.865 against kd's
    0.869 on seeds 10-17; see lab/kd/feature/vkd.py.)"""
    kd, scratch = references()
    m = trained("vkd", dict(lab.kd.get("vkd").bench_config), FRESH)
    v, k, s = mean_last(m), mean_last(kd), mean_last(scratch)
    print("vkd", accs(m), "kd", accs(kd), "scratch", accs(scratch))
    assert abs(v - k) < sd(m, kd), (v, k, sd(m, kd))
    assert v - s > sd(m, scratch), (v, s, sd(m, scratch))


def test_fitnets_one_stage_matches_kd_and_beats_scratch_with_200_labels():
    """FitNets claims the hint makes the student beat KD. One-stage FitNets (hint + KD from the first step, the
    bench's hint_weight 1, the best of 1 / 3 / 10 / 30 on seeds 10-17) is within one seed-standard-deviation of plain
    kd and beats scratch by more than one: the hint adds nothing measurable (larger hint weights lower accuracy)."""
    kd, scratch = references()
    cfg = dict(lab.kd.get("fitnets").bench_config)
    assert {k: cfg[k] for k in SCARCE_LABELS} == SCARCE_LABELS
    m = trained("fitnets", cfg, FRESH)
    assert m[0].config.stages == "one"
    f, k, s = mean_last(m), mean_last(kd), mean_last(scratch)
    print("fitnets", accs(m), "kd", accs(kd), "scratch", accs(scratch))
    assert abs(f - k) < sd(m, kd), (f, k, sd(m, kd))
    assert f - s > sd(m, scratch), (f, s, sd(m, scratch))


def test_fitnets_hint_stage_makes_the_guided_layer_more_cka_similar_to_the_hint_layer():
    """Two-stage FitNets does not beat scratch here (see the module docstring of lab.kd.feature.fitnets); what
    its hint stage does measurably: after it, the student's guided layer (fc1) is closer in linear CKA to
    the teacher's hint layer (pool) on the test digits than the same layer of a scratch student."""
    seeds = [0, 1]
    fit = trained("fitnets", {"steps": 301, "n_train": 200, "teacher_layer": "pool", "stages": "two",
                              "hint_steps": 300}, seeds)
    scr = trained("scratch", {"steps": 300, "n_train": 200}, seeds)
    task = lab.kd.get_task("digits")
    teacher = fit[0].teacher
    c_fit = statistics.mean(feature_cka(m.student, teacher, task.x_test, "fc1", "pool") for m in fit)
    c_scr = statistics.mean(feature_cka(m.student, teacher, task.x_test, "fc1", "pool") for m in scr)
    assert c_fit > c_scr + 0.01, (c_fit, c_scr)


def cka(ms, s_layer, t_layer):
    task = lab.kd.get_task("digits")
    teacher = lab.kd.load_teacher(DIGITS)
    return statistics.mean(feature_cka(m.student, teacher, task.x_test, s_layer, t_layer) for m in ms)


def test_ofa_cnn_to_vit_beats_scratch_with_200_labels():
    """The heterogeneous pair: CNN teacher -> TinyViT student (dim 16, depth 2)."""
    m, s = vs_scratch("ofa", [0, 1])
    assert m[0].student.spec()["type"] == "clf_vit" and m[0].teacher.spec()["type"] == "clf_cnn"
    assert mean_last(m) > mean_last(s) + 0.01, (mean_last(m), mean_last(s))


def test_at_makes_the_cnn_student_conv_features_more_cka_similar_to_the_teacher():
    """AT does not reliably beat scratch in accuracy here (CNN[4, 8] student, 200 labels: about +0.01 with
    a seed spread of 0.15); what it does measurably: the student's conv maps are closer in linear CKA to
    the teacher's paired conv maps on the test digits than a scratch student's."""
    m, s = vs_scratch("at", [0, 1])
    for layer in ("conv1", "conv2"):
        assert cka(m, layer, layer) > cka(s, layer, layer) + 0.03, layer


def test_rkd_makes_the_student_embedding_more_cka_similar_to_the_teacher():
    """RKD (CE + distance + angle) does not beat scratch in accuracy with 200 labels (0.825 vs 0.844);
    the relational losses do make the student's penultimate embedding (fc1) closer in linear CKA to the
    teacher's (pool) on the test digits."""
    m, s = vs_scratch("rkd", [0, 1], cfg={"steps": 500})
    assert cka(m, "fc1", "pool") > cka(s, "fc1", "pool") + 0.05


def test_minilm_lowers_kl_to_the_true_language_below_scratch():
    m, s = vs_scratch("minilm", [0, 1], task="language")
    assert mean_last(m, "kl_truth") < mean_last(s, "kl_truth") - 0.005, (mean_last(m, "kl_truth"),
                                                                          mean_last(s, "kl_truth"))
